"""Realistic, reproducible sample transactions of an online shop, with the truth that generated them.

The simulated world is the one the CLV models assume (a "Buy-Till-You-Die" world), plus the details a real
order export has:

* **Acquisition.** Customers arrive over the whole history window, more of them later (the shop grows) and
  more in November/December (holiday shoppers). Each customer places a first order on the acquisition day.
* **Channels.** Every customer comes through one acquisition channel (organic, paid_search, social, email,
  referral). The channel mix shifts over time, and channels differ in how often their customers buy, how
  soon they leave and how much they spend.
* **Purchasing (BG/NBD).** While "alive", a customer places repeat orders as a Poisson process with a personal
  rate ``lambda`` drawn from a gamma distribution. After each repeat order the customer leaves for good with a
  personal probability ``p`` drawn from a beta distribution.
* **Seasonality.** The purchase rate rises in November/December and dips in summer (applied by thinning: the
  Poisson process runs at the peak rate and each candidate order is kept with probability season/peak).
* **Spend (Gamma-Gamma).** Each customer has a personal mean order value drawn from the Gamma-Gamma prior;
  single order values scatter around it (gamma), scaled by the price level of the product category.
* **Categories.** Each customer has personal category preferences (Dirichlet around overall popularity).
* **Refunds and repeat orders.** About 3% of orders are refunded (all or part of the value) 1-30 days later,
  as a separate negative row; about 2% of purchase days get a second, same-day order.

``simulate`` returns the transactions and a per-customer ground truth table (true rates, dropout, spend,
counts), so models fitted on the transactions can be checked against what really happened. ``write_sample``
writes the transactions as monthly landing files, the way an upstream system would deliver them.

Everything is driven by one ``numpy.random.Generator(PCG64(seed))``: the same spec gives the same data, down
to the bytes of the CSV files. The simulation is vectorized over customers (a loop runs over "purchase
rounds", not over customers), so 200,000 customers take seconds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

SIZES = {"small": 1_000, "medium": 20_000, "large": 200_000}
"""Number of customers of the named sample sizes."""

TRANSACTION_COLUMNS = ["transaction_id", "customer_id", "transaction_date", "amount", "category", "channel"]
GROUND_TRUTH_COLUMNS = [
    "customer_id", "acquisition_date", "channel", "lambda_per_day", "p_dropout", "true_mean_spend",
    "dropout_date", "alive_at_end", "n_orders", "n_purchase_days", "n_refunds",
]

# Acquisition channels: share of new customers at the start and at the end of the window (linear in between),
# then multipliers of the purchase rate, of the dropout probability and of the mean order value.
CHANNELS = {
    #               share_start share_end  rate  dropout  spend
    "organic":      (0.35,      0.25,      1.00, 1.00,    1.00),
    "paid_search":  (0.30,      0.24,      0.85, 1.25,    0.95),
    "social":       (0.08,      0.26,      0.70, 1.50,    0.80),
    "email":        (0.15,      0.13,      1.35, 0.80,    1.05),
    "referral":     (0.12,      0.12,      1.20, 0.70,    1.15),
}

# Product categories: overall popularity (share of orders) and relative price level.
CATEGORIES = {
    #                  popularity  price
    "electronics":     (0.12,      2.20),
    "home_garden":     (0.15,      1.30),
    "fashion":         (0.22,      0.90),
    "beauty":          (0.14,      0.60),
    "books_media":     (0.12,      0.45),
    "sports_outdoors": (0.13,      1.10),
    "toys_games":      (0.12,      0.80),
}

# Month-of-year multipliers (January first) of the purchase rate and of the number of new customers.
PURCHASE_SEASON = np.array([0.95, 0.90, 0.95, 1.00, 1.00, 0.85, 0.80, 0.90, 1.00, 1.05, 1.30, 1.40])
ACQUISITION_SEASON = np.array([1.00, 0.95, 1.00, 1.00, 1.00, 0.90, 0.90, 0.95, 1.00, 1.05, 1.45, 1.65])

_LANDING_FILE = re.compile(r"transactions_\d{4}-\d{2}\.(csv|parquet)")


@dataclass(frozen=True)
class SampleSpec:
    """What to simulate: how many customers, over which window, with which seed and model parameters.

    The defaults give about 5 orders per customer on average over the 3-year window (more for early
    customers, fewer for recent ones), about 40% of customers dropped out by the end, and order values mostly
    between 5 and 500 (median about 38).
    """

    n_customers: int
    start: str = "2023-01-01"  # first day of the history window (inclusive)
    end: str = "2025-12-31"  # last day of the history window (inclusive)
    seed: int = 42
    # Acquisition: daily new customers at the end of the window relative to the start.
    acquisition_growth: float = 2.5
    # BG/NBD purchase rate lambda ~ Gamma(shape=r, rate=alpha), in orders per day (mean r / alpha).
    r: float = 0.9
    alpha: float = 48.0
    # BG/NBD dropout probability p ~ Beta(a, b) (mean a / (a + b)).
    a: float = 1.0
    b: float = 5.0
    # Gamma-Gamma spend: order value ~ Gamma(shape=p, rate=nu), nu ~ Gamma(shape=q, rate=gamma);
    # mean order value per customer is p / nu, on average p * gamma / (q - 1).
    spend_p: float = 4.0
    spend_q: float = 5.0
    spend_gamma: float = 55.0
    # Category preferences ~ Dirichlet(concentration * popularity): smaller means more focused customers.
    category_concentration: float = 2.0
    # 0 switches purchase seasonality off, 1 is the PURCHASE_SEASON profile, 2 doubles its swings.
    seasonality_strength: float = 1.0
    refund_rate: float = 0.03  # share of orders that are later refunded (partially or fully)
    # Share of orders followed by an extra order the same day; with the purchase process's own same-day
    # orders, about 2% of purchase days have more than one order.
    same_day_repeat_rate: float = 0.01

    def __post_init__(self) -> None:
        if self.n_customers < 1:
            raise ValueError(f"n_customers must be at least 1, got {self.n_customers}")
        if pd.Timestamp(self.end) < pd.Timestamp(self.start):
            raise ValueError(f"end {self.end} is before start {self.start}")


def simulate(spec: SampleSpec) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Simulate the shop: returns ``(transactions, ground_truth)``.

    ``transactions`` has the columns of ``TRANSACTION_COLUMNS``, one row per order or refund (negative amount),
    sorted by date then id. ``ground_truth`` has one row per customer with the parameters that drove the
    customer's behaviour and what came of them (``GROUND_TRUTH_COLUMNS``).
    """
    rng = np.random.Generator(np.random.PCG64(spec.seed))
    days = pd.date_range(spec.start, spec.end, freq="D")
    month_of_day = days.month.to_numpy() - 1

    customers, rows = _simulate_rows(spec, rng, month_of_day, len(days))
    transactions = _transactions_frame(spec, rng, customers, rows)
    ground_truth = _ground_truth_frame(spec, customers, rows)
    return transactions, ground_truth


def _simulate_rows(spec: SampleSpec, rng: np.random.Generator, month_of_day: np.ndarray, n_days: int) -> tuple[dict, dict]:
    """The customers and their orders then refunds: customer index, day index, amount and category arrays."""
    customers = _draw_customers(spec, rng, month_of_day)
    order_cust, order_day = _purchase_process(spec, rng, customers, month_of_day, n_days)
    order_cust, order_day = _add_same_day_repeats(spec, rng, order_cust, order_day)
    category = _draw_categories(rng, customers["category_pref"], order_cust)
    amount = _draw_order_values(spec, rng, customers["mean_spend"], order_cust, category)
    refunds = _draw_refunds(spec, rng, order_cust, order_day, amount, category, n_days)
    return customers, {
        "cust": np.concatenate([order_cust, refunds["cust"]]),
        "day": np.concatenate([order_day, refunds["day"]]),
        "amount": np.concatenate([amount, refunds["amount"]]),
        "category": np.concatenate([category, refunds["category"]]),
    }


def write_sample(spec: SampleSpec, landing_dir: str | Path, fmt: str = "csv", ground_truth_path: str | Path | None = None) -> list[Path]:
    """Simulate and write one landing file per calendar month (``transactions_YYYY-MM.csv`` or ``.parquet``).

    Previously generated ``transactions_YYYY-MM.*`` files in ``landing_dir`` are removed first, so samples of
    different sizes never mix. The ground truth goes to ``ground_truth_path`` (parquet) when given. Returns the
    written paths: the monthly files in month order, then the ground truth file.
    """
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"fmt must be 'csv' or 'parquet', got {fmt!r}")
    landing = Path(landing_dir)
    landing.mkdir(parents=True, exist_ok=True)
    for old in landing.iterdir():
        if old.is_file() and _LANDING_FILE.fullmatch(old.name):
            old.unlink()

    transactions, ground_truth = simulate(spec)
    months = transactions["transaction_date"].to_numpy().astype("datetime64[M]")
    bounds = np.flatnonzero(np.r_[True, months[1:] != months[:-1], True])  # rows are sorted by date
    written = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        path = landing / f"transactions_{months[lo]}.{fmt}"
        _write_table(transactions.iloc[lo:hi], path, fmt)
        written.append(path)

    if ground_truth_path is not None:
        gt_path = Path(ground_truth_path)
        gt_path.parent.mkdir(parents=True, exist_ok=True)
        ground_truth.to_parquet(gt_path, index=False)
        written.append(gt_path)
    return written


BENCHMARK_SPEC = SampleSpec(n_customers=100_000, alpha=18.0, b=9.0)
"""The spec of the large benchmark data: faster buyers who stay longer than the default sample (about 10
transactions per customer over the 3 years instead of 5); pass its fields with another ``n_customers``."""


def generate_large(spec: SampleSpec, landing_dir: str | Path, chunk_customers: int = 250_000) -> dict[str, int]:
    """Simulate ``spec`` in chunks of customers and write one parquet file per month (``transactions_YYYY-MM.parquet``,
    one row group per chunk), fast enough for tens of millions of transactions in bounded memory.

    Each chunk is an independent draw of the same model as :func:`simulate` (its own stream of the seed, so the
    same spec and chunk size give the same files), over the same window; customer ids are numbered across
    chunks (``C`` + zero-padded number, as in :func:`simulate`), transaction ids in write order. No ground
    truth is kept. Rows are sorted by date within a chunk's part of a month. Previously generated
    ``transactions_YYYY-MM.*`` files in ``landing_dir`` are removed first. Returns the number of ``rows``,
    ``customers``, ``files`` and ``bytes`` written.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    landing = Path(landing_dir)
    landing.mkdir(parents=True, exist_ok=True)
    for old in landing.iterdir():
        if old.is_file() and _LANDING_FILE.fullmatch(old.name):
            old.unlink()
    days = pd.date_range(spec.start, spec.end, freq="D")
    month_of_day = days.month.to_numpy() - 1
    month_index = (days.year.to_numpy() - days[0].year) * 12 + month_of_day  # months since the window's first
    epoch_day = (np.datetime64(spec.start, "D") - np.datetime64("1970-01-01", "D")).astype(np.int64)
    schema = pa.schema([("transaction_id", pa.string()), ("customer_id", pa.string()), ("transaction_date", pa.date32()),
                        ("amount", pa.float64()), ("category", pa.string()), ("channel", pa.string())])
    category_names, channel_names = np.array(list(CATEGORIES), dtype=object), np.array(list(CHANNELS), dtype=object)
    cust_width, tx_width = max(6, len(str(spec.n_customers))), max(8, len(str(spec.n_customers * 100)))
    writers: dict[int, pq.ParquetWriter] = {}
    streams = np.random.SeedSequence(spec.seed).spawn((spec.n_customers + chunk_customers - 1) // chunk_customers)
    rows = 0
    try:
        for chunk, stream in enumerate(streams):
            first = chunk * chunk_customers
            part = replace(spec, n_customers=min(chunk_customers, spec.n_customers - first))
            rng = np.random.Generator(np.random.PCG64(stream))
            customers, drawn = _simulate_rows(part, rng, month_of_day, len(days))
            cust, day, amount, category = drawn["cust"], drawn["day"], drawn["amount"], drawn["category"]
            order = np.argsort(day, kind="stable")
            cust, day, amount, category = cust[order], day[order], amount[order], category[order]
            table = pa.table({
                "transaction_id": _fixed_width_ids("T", np.arange(rows + 1, rows + cust.size + 1), tx_width),
                "customer_id": _fixed_width_ids("C", first + 1 + cust, cust_width),
                "transaction_date": pa.array((day + epoch_day).astype(np.int32), pa.date32()),
                "amount": amount,
                "category": pa.DictionaryArray.from_arrays(category.astype(np.int8), pa.array(category_names, pa.string())),
                "channel": pa.DictionaryArray.from_arrays(customers["channel"][cust].astype(np.int8), pa.array(channel_names, pa.string())),
            }).cast(schema)
            months = month_index[day]
            bounds = np.flatnonzero(np.r_[True, months[1:] != months[:-1], True])
            for lo, hi in zip(bounds[:-1], bounds[1:]):
                m = int(months[lo])
                if m not in writers:
                    stamp = f"{days[0].year + m // 12:04d}-{m % 12 + 1:02d}"
                    writers[m] = pq.ParquetWriter(landing / f"transactions_{stamp}.parquet", schema, compression="zstd")
                writers[m].write_table(table.slice(lo, hi - lo))
            rows += cust.size
    finally:
        for writer in writers.values():
            writer.close()
    files = sorted(landing.glob("transactions_*.parquet"))
    return {"rows": int(rows), "customers": spec.n_customers, "files": len(files), "bytes": sum(f.stat().st_size for f in files)}


def _fixed_width_ids(prefix: str, numbers: np.ndarray, width: int):
    """``prefix`` + each number zero-padded to ``width`` digits, as an Arrow string array (built from bytes:
    tens of millions per second, where Python string formatting manages about one million)."""
    import pyarrow as pa

    numbers = np.asarray(numbers, dtype=np.int64)
    head = np.frombuffer(prefix.encode("ascii"), dtype=np.uint8)
    size = head.size + width
    buf = np.empty((numbers.size, size), dtype=np.uint8)
    buf[:, : head.size] = head
    rest = numbers.copy()
    for k in range(size - 1, head.size - 1, -1):
        np.remainder(rest, 10, out=buf[:, k], casting="unsafe")
        rest //= 10
    buf[:, head.size:] += ord("0")
    large = (numbers.size + 1) * size >= 2**31
    offsets = np.arange(0, (numbers.size + 1) * size, size, dtype=np.int64 if large else np.int32)
    cls = pa.LargeStringArray if large else pa.StringArray
    return cls.from_buffers(numbers.size, pa.py_buffer(offsets), pa.py_buffer(buf))


# ----------------------------------------------------------------------------------------------------------
# Simulation steps


def _draw_customers(spec: SampleSpec, rng: np.random.Generator, month_of_day: np.ndarray) -> dict[str, np.ndarray]:
    """Who the customers are: acquisition day, channel and personal purchase/dropout/spend/category traits."""
    n, n_days = spec.n_customers, len(month_of_day)
    frac = np.arange(n_days) / max(n_days - 1, 1)

    # Acquisitions grow exponentially over the window, with a holiday bump. Customer ids follow arrival order.
    weight = spec.acquisition_growth**frac * ACQUISITION_SEASON[month_of_day]
    acq_day = np.sort(rng.choice(n_days, size=n, p=weight / weight.sum()))

    # Channel mix moves linearly from its start shares to its end shares.
    share = np.array([c[:2] for c in CHANNELS.values()])  # (channels, 2)
    f = frac[acq_day][:, None]
    probs = (1 - f) * share[:, 0] + f * share[:, 1]
    cum = np.cumsum(probs / probs.sum(axis=1, keepdims=True), axis=1)
    channel = np.minimum((rng.random(n)[:, None] > cum).sum(axis=1), len(CHANNELS) - 1)
    rate_mult, dropout_mult, spend_mult = np.array([c[2:] for c in CHANNELS.values()]).T

    lam = rng.gamma(spec.r, 1.0 / spec.alpha, size=n) * rate_mult[channel]
    p_dropout = np.clip(rng.beta(spec.a, spec.b, size=n) * dropout_mult[channel], 0.001, 0.95)
    nu = rng.gamma(spec.spend_q, 1.0 / spec.spend_gamma, size=n)
    mean_spend = spec.spend_p / nu * spend_mult[channel]

    popularity = np.array([c[0] for c in CATEGORIES.values()])
    category_pref = rng.dirichlet(spec.category_concentration * popularity / popularity.sum(), size=n)
    return {
        "acq_day": acq_day, "channel": channel, "lam": lam, "p_dropout": p_dropout,
        "mean_spend": mean_spend, "category_pref": category_pref,
    }


def _purchase_process(
    spec: SampleSpec, rng: np.random.Generator, customers: dict[str, np.ndarray], month_of_day: np.ndarray, n_days: int
) -> tuple[np.ndarray, np.ndarray]:
    """First orders plus BG/NBD repeat orders: (customer index, day index) of every purchase.

    Each round draws the next candidate order of every still-active customer from a Poisson process at the
    peak seasonal rate; a candidate becomes an order with probability season/peak (thinning). After each
    repeat order the customer drops out with probability ``p``. A customer leaves the loop when dropping out
    or when the next candidate falls after the end of the window. Sets ``customers["dropout_day"]`` (-1: alive).
    """
    n = spec.n_customers
    season = 1.0 + spec.seasonality_strength * (PURCHASE_SEASON / PURCHASE_SEASON.mean() - 1.0)
    season = np.clip(season, 0.0, None)[month_of_day]
    peak = season.max()
    lam, p_dropout = customers["lam"], customers["p_dropout"]
    dropout_day = np.full(n, -1)

    cust_parts, day_parts = [np.arange(n)], [customers["acq_day"]]  # first orders on the acquisition day
    clock = customers["acq_day"] + rng.random(n)  # time of day of the first order
    active = np.flatnonzero(lam > 0)
    while active.size:
        clock[active] += rng.exponential(1.0 / (lam[active] * peak))
        active = active[clock[active] < n_days]
        day = clock[active].astype(np.int64)
        bought = rng.random(active.size) * peak < season[day]
        buyers, buy_day = active[bought], day[bought]
        cust_parts.append(buyers)
        day_parts.append(buy_day)
        leaves = rng.random(buyers.size) < p_dropout[buyers]
        dropout_day[buyers[leaves]] = buy_day[leaves]
        stays = np.ones(active.size, dtype=bool)
        stays[np.flatnonzero(bought)[leaves]] = False
        active = active[stays]

    customers["dropout_day"] = dropout_day
    return np.concatenate(cust_parts), np.concatenate(day_parts)


def _add_same_day_repeats(
    spec: SampleSpec, rng: np.random.Generator, cust: np.ndarray, day: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Some orders get a second order on the same day (a forgotten item, a gift).

    These come on top of the purchase process's own same-day orders (two Poisson events on one day).
    """
    extra = rng.random(cust.size) < spec.same_day_repeat_rate
    return np.concatenate([cust, cust[extra]]), np.concatenate([day, day[extra]])


def _draw_categories(rng: np.random.Generator, category_pref: np.ndarray, cust: np.ndarray) -> np.ndarray:
    """The product category of each order, from its customer's preferences (index into CATEGORIES)."""
    cum = np.cumsum(category_pref, axis=1)[cust]
    u = rng.random(cust.size)[:, None] * cum[:, -1:]
    return np.minimum((u > cum).sum(axis=1), len(CATEGORIES) - 1)


def _draw_order_values(
    spec: SampleSpec, rng: np.random.Generator, mean_spend: np.ndarray, cust: np.ndarray, category: np.ndarray
) -> np.ndarray:
    """Order values: gamma around the customer's mean spend, times the category's relative price level.

    Price levels are normalized to a popularity-weighted average of 1, so ``mean_spend`` is the customer's mean
    order value in an average category. Values are in currency units with 2 decimals, at least 1.00.
    """
    popularity, price = np.array(list(CATEGORIES.values())).T
    price = price / np.average(price, weights=popularity)
    value = rng.gamma(spec.spend_p, 1.0 / spec.spend_p, size=cust.size) * mean_spend[cust] * price[category]
    return np.maximum(np.round(value, 2), 1.0)


def _draw_refunds(
    spec: SampleSpec, rng: np.random.Generator, cust: np.ndarray, day: np.ndarray, amount: np.ndarray,
    category: np.ndarray, n_days: int,
) -> dict[str, np.ndarray]:
    """Refund rows: a share of orders is returned 1-30 days later, fully (60%) or partially (10-90%).

    A refund is a negative amount of the same customer and category. Refunds that would fall after the end of
    the window are not generated (they have not happened yet).
    """
    refunded = np.flatnonzero(rng.random(cust.size) < spec.refund_rate)
    refund_day = day[refunded] + rng.integers(1, 31, size=refunded.size)
    share = np.where(rng.random(refunded.size) < 0.6, 1.0, rng.uniform(0.1, 0.9, size=refunded.size))
    value = np.maximum(np.round(amount[refunded] * share, 2), 0.01)
    keep = refund_day < n_days
    return {
        "cust": cust[refunded][keep], "day": refund_day[keep],
        "amount": -value[keep], "category": category[refunded][keep],
    }


# ----------------------------------------------------------------------------------------------------------
# Output tables


def _customer_ids(n: int) -> np.ndarray:
    width = max(6, len(str(n)))
    return np.array([f"C{i:0{width}d}" for i in range(1, n + 1)], dtype=object)


def _to_dates(spec: SampleSpec, day: np.ndarray) -> np.ndarray:
    return (np.datetime64(spec.start, "D") + day).astype("datetime64[ns]")


def _transactions_frame(spec: SampleSpec, rng: np.random.Generator, customers: dict, rows: dict) -> pd.DataFrame:
    """Rows in date order (shuffled within a day, as orders interleave); ids numbered in that order."""
    order = np.lexsort((rng.random(rows["day"].size), rows["day"]))
    cust = rows["cust"][order]
    width = max(8, len(str(order.size)))
    return pd.DataFrame({
        "transaction_id": np.array([f"T{i:0{width}d}" for i in range(1, order.size + 1)], dtype=object),
        "customer_id": _customer_ids(spec.n_customers)[cust],
        "transaction_date": _to_dates(spec, rows["day"][order]),
        "amount": rows["amount"][order],
        "category": np.array(list(CATEGORIES), dtype=object)[rows["category"][order]],
        "channel": np.array(list(CHANNELS), dtype=object)[customers["channel"][cust]],
    })[TRANSACTION_COLUMNS]


def _ground_truth_frame(spec: SampleSpec, customers: dict, rows: dict) -> pd.DataFrame:
    """One row per customer: the true parameters and what the simulation made of them."""
    n = spec.n_customers
    cust, day, is_order = rows["cust"], rows["day"], rows["amount"] > 0
    n_orders = np.bincount(cust[is_order], minlength=n)
    purchase_days = np.unique(cust[is_order].astype(np.int64) * (day.max() + 1) + day[is_order])
    n_purchase_days = np.bincount(purchase_days // (day.max() + 1), minlength=n)
    dropout_day = customers["dropout_day"]
    dropout_date = pd.Series(_to_dates(spec, np.maximum(dropout_day, 0))).where(dropout_day >= 0)
    return pd.DataFrame({
        "customer_id": _customer_ids(n),
        "acquisition_date": _to_dates(spec, customers["acq_day"]),
        "channel": np.array(list(CHANNELS), dtype=object)[customers["channel"]],
        "lambda_per_day": customers["lam"],
        "p_dropout": customers["p_dropout"],
        "true_mean_spend": customers["mean_spend"],
        "dropout_date": dropout_date.to_numpy(),
        "alive_at_end": dropout_day < 0,
        "n_orders": n_orders,
        "n_purchase_days": n_purchase_days,
        "n_refunds": np.bincount(cust[~is_order], minlength=n),
    })[GROUND_TRUTH_COLUMNS]


def _write_table(frame: pd.DataFrame, path: Path, fmt: str) -> None:
    if fmt == "csv":
        frame.to_csv(path, index=False, date_format="%Y-%m-%d", float_format="%.2f", lineterminator="\n", encoding="utf-8")
    else:
        out = frame.reset_index(drop=True)
        out["transaction_date"] = out["transaction_date"].dt.date  # a date column, not a timestamp
        out.to_parquet(path, index=False)
