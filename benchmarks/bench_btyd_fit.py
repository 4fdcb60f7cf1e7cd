"""Benchmark: fit BG/NBD and Gamma-Gamma on 1,000,000 simulated customers' grouped statistics.

Run:  .venv/bin/python benchmarks/bench_btyd_fit.py [--customers 1000000] [--seed 0] [--repeat 3]

Simulates customers acquired uniformly over a year (first purchase on a day), observed up to 52 weeks
after the cohort start, from the BG/NBD generative process (clv_assets.btyd.simulate_bgnbd) plus
Gamma-Gamma spends; groups identical (x, t_x, T) rows the way the Spark job does (here with pandas);
then times the fits and the predictions. Two time resolutions are grouped: days (what the pipeline
uses; more distinct rows) and whole weeks (coarser, fewer rows). Each step is run ``--repeat`` times;
the best and the first (cold) time are printed. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any, Callable

import numpy as np
import pandas as pd

from clv_assets.btyd import (
    BetaGeoParams,
    GammaGammaParams,
    bgnbd_expected_purchases,
    bgnbd_probability_alive,
    fit_bgnbd,
    fit_gamma_gamma,
    gamma_gamma_expected_spend,
    simulate_bgnbd,
)

TRUE_BG = BetaGeoParams(r=0.25, alpha=4.0, a=0.8, b=2.5)  # time unit: weeks
TRUE_GG = GammaGammaParams(p=6.0, q=4.0, v=15.0)
REPEAT = 3


def timed(label: str, fn: Callable[[], Any]) -> Any:
    times = []
    for _ in range(REPEAT):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    print(f"  {label:<60s} best {min(times):7.3f} s   first {times[0]:7.3f} s")
    return out


def simulate(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    T_days = rng.integers(1, 365, size=n)  # days between first purchase and the end of the window
    x, tx, _ = simulate_bgnbd(TRUE_BG, T_days / 7.0, rng=rng)
    tx_days = np.minimum(np.round(tx * 7.0), T_days)  # purchases happen on days
    nu = rng.gamma(TRUE_GG.q, 1.0 / TRUE_GG.v, size=n)
    rep = x > 0
    m = np.full(n, np.nan)
    m[rep] = np.round(rng.gamma(TRUE_GG.p * x[rep], 1.0 / (nu[rep] * x[rep])), 2)  # mean spend, in cents
    return pd.DataFrame({"x": x, "tx_days": tx_days, "T_days": T_days.astype(float), "m": m})


def group(df: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    return df.groupby(cols, sort=False).size().reset_index(name="n")


def show_fit(label: str, fit) -> None:
    p = ", ".join(f"{k}={v:.4f}" for k, v in fit.params.to_dict().items())
    print(f"      {label}: {p}  (rows={fit.n_rows:,}, customers={fit.n_customers:,.0f}, converged={fit.converged})")


def main() -> None:
    global REPEAT
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=REPEAT)
    args = ap.parse_args()
    REPEAT = max(1, args.repeat)
    n = args.customers
    print(f"BG/NBD + Gamma-Gamma benchmark: {n:,} customers, {os.cpu_count()} CPUs, numpy {np.__version__}")
    print(f"  true BG/NBD {TRUE_BG.to_dict()}  true Gamma-Gamma {TRUE_GG.to_dict()}")

    t0 = time.perf_counter()
    df = simulate(n, args.seed)
    print(f"  simulated in {time.perf_counter() - t0:.3f} s: {(df['x'] > 0).sum():,} repeat buyers, "
          f"{df['x'].sum():,.0f} repeat purchases")

    # --- resolution: days (recency and T in days, fitted in weeks)
    df["tx"] = df["tx_days"] / 7.0
    df["T"] = df["T_days"] / 7.0
    g = timed("group (x, t_x, T) at day resolution [pandas]", lambda: group(df, ["x", "tx", "T"]))
    fit = timed(f"fit BG/NBD on {len(g):,} grouped rows (days)", lambda: fit_bgnbd(g["x"], g["tx"], g["T"], weights=g["n"]))
    show_fit("grouped  ", fit)

    # --- resolution: whole weeks (a coarser approximation: the estimates shift a little; customers
    # younger than half a week with repeat purchases would get T = 0 and are left out)
    weeks = pd.DataFrame({"x": df["x"], "tx": np.round(df["tx_days"] / 7.0), "T": np.round(df["T_days"] / 7.0)})
    weeks = weeks[(weeks["T"] > 0) | (weeks["x"] == 0)]
    gw = timed("group (x, t_x, T) at week resolution [pandas]", lambda: group(weeks, ["x", "tx", "T"]))
    fit_w = timed(f"fit BG/NBD on {len(gw):,} grouped rows (weeks)", lambda: fit_bgnbd(gw["x"], gw["tx"], gw["T"], weights=gw["n"]))
    show_fit("weekly   ", fit_w)

    fit_u = timed(f"fit BG/NBD ungrouped ({n:,} rows, for comparison)", lambda: fit_bgnbd(df["x"], df["tx"], df["T"]))
    show_fit("ungrouped", fit_u)
    worst = max(abs(getattr(fit_u.params, k) / v - 1) for k, v in fit.params.to_dict().items())
    print(f"      max relative difference grouped vs ungrouped: {worst:.1e}")

    # --- predictions for every customer
    x, tx, T = df["x"].to_numpy(), df["tx"].to_numpy(), df["T"].to_numpy()
    e39 = timed(f"expected purchases, next 39 weeks, {n:,} customers", lambda: bgnbd_expected_purchases(fit.params, 39.0, x, tx, T))
    alive = timed(f"P(alive), {n:,} customers", lambda: bgnbd_probability_alive(fit.params, x, tx, T))
    e39_g = timed(
        f"expected purchases on the {len(g):,} grouped rows only",
        lambda: bgnbd_expected_purchases(fit.params, 39.0, g["x"], g["tx"], g["T"]),
    )
    print(
        f"      total expected purchases (39 wk): {e39.sum():,.0f} (from grouped rows: {(e39_g * g['n']).sum():,.0f}); "
        f"mean P(alive) {alive.mean():.3f}"
    )

    # --- Gamma-Gamma on repeat buyers
    rep = df[df["x"] > 0]
    gg_rows = timed("group (x, m) of repeat buyers [pandas]", lambda: group(rep, ["x", "m"]))
    gg = timed(f"fit Gamma-Gamma on {len(gg_rows):,} grouped rows", lambda: fit_gamma_gamma(gg_rows["x"], gg_rows["m"], weights=gg_rows["n"]))
    show_fit("gamma-gamma", gg)
    spend = timed(f"expected spend, {n:,} customers", lambda: gamma_gamma_expected_spend(gg.params, df["x"], df["m"]))
    print(f"      expected 39-week revenue (undiscounted): {(e39 * spend).sum():,.0f}")


if __name__ == "__main__":
    main()
