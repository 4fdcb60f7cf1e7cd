// Checks, in a real headless browser, that the charts in the materialization metadata render in the Dagster UI:
// the retention heatmap of `cohort_retention` and the CLV distribution chart of `clv_summary`.
//
// With the UI running (scripts/demo.sh) and playwright-core plus a Chromium installed:
//   npm install --prefix /tmp/ui playwright-core && apt-get install -y chromium
//   NODE_PATH=/tmp/ui/node_modules node scripts/check_ui_charts.js [http://127.0.0.1:3000] [screenshot folder]
//
// For each chart: opens the asset's page, opens the metadata entry when the UI folds it behind a button, and
// requires an <img> with a PNG data URI that the browser decoded (natural size > 0). Saves a screenshot of
// each page and prints PASS/FAIL; exits 1 on any failure.
const { chromium } = require("playwright-core");

const base = process.argv[2] || "http://127.0.0.1:3000";
const shots = process.argv[3] || "/tmp";
const CHARTS = [
  { asset: "cohort_retention", entry: "retention_heatmap" },
  { asset: "clv_summary", entry: "clv_distribution" },
];

async function decodedImages(page) {
  return page.$$eval('img[src^="data:image/png"]', (imgs) =>
    imgs.filter((i) => i.complete && i.naturalWidth > 0).map((i) => `${i.naturalWidth}x${i.naturalHeight}`));
}

async function openEntry(page, entry) {
  // Markdown metadata is shown inline or behind a "Show/View Markdown" button in the entry's row.
  const row = page.locator("tr", { hasText: entry }).first();
  const button = row.getByRole("button").or(row.getByText(/markdown/i)).first();
  if (await button.count()) await button.click();
}

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
  let failed = 0;
  for (const { asset, entry } of CHARTS) {
    const page = await browser.newPage({ viewport: { width: 1600, height: 1200 } });
    try {
      await page.goto(`${base}/assets/${asset}`, { waitUntil: "networkidle", timeout: 120000 });
      const skip = page.getByRole("button", { name: /skip/i });
      if (await skip.count()) await skip.first().click();  // first-visit onboarding dialog
      await page.getByText(entry).first().waitFor({ timeout: 60000 });
      let images = await decodedImages(page);
      if (!images.length) {
        await openEntry(page, entry);
        await page.waitForSelector('img[src^="data:image/png"]', { timeout: 30000 }).catch(() => {});
        await page.waitForTimeout(1000);
        images = await decodedImages(page);
      }
      await page.screenshot({ path: `${shots}/ui_${asset}.png` });
      if (images.length) console.log(`PASS  ${asset}: ${entry} rendered as an image (${images.join(", ")} px)`);
      else { failed++; console.log(`FAIL  ${asset}: no decoded PNG image for ${entry}`); }
    } catch (err) {
      failed++;
      await page.screenshot({ path: `${shots}/ui_${asset}.png` }).catch(() => {});
      console.log(`FAIL  ${asset}: ${err.message.split("\n")[0]}`);
    }
    await page.close();
  }
  await browser.close();
  process.exit(failed ? 1 : 0);
})();
