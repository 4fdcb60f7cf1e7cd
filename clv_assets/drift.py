"""Has the customer base moved away from what the served model was trained on? (pure functions)

When ``clv_model`` trains, it records a *reference profile* of its training features (per feature: decile
cut points, the share of customers in each bin, the mean); the first ``clv_predictions`` made with that
model add the profile of predicted CLV. ``clv_drift`` then compares the current tables with the reference:

- **Population stability index** per feature and for predicted CLV, on the reference bins:
  ``PSI = sum((current share - reference share) x ln(current share / reference share))`` (empty bins count
  as a share of 0.0001). Usual reading: < 0.1 stable, 0.1-0.25 moderate, > 0.25 a significant shift.
- **Mean shift of predicted CLV**: ``(current mean - reference mean) / |reference mean|``.

Drift is declared when the absolute mean shift of predicted CLV reaches ``CLV_DRIFT_MEAN_SHIFT`` (default
0.10, i.e. 10%) or any feature's PSI reaches ``CLV_DRIFT_MAX_PSI`` (default 0.25).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

#: The behavioural features compared (BG/NBD's frequency, recency and age, spend, orders, net revenue).
DRIFT_FEATURES = ("frequency", "recency", "T", "monetary", "n_orders", "net_revenue")
PREDICTION = "predicted_clv"
BINS = 10
EMPTY_SHARE = 1e-4


@dataclass(frozen=True)
class DriftThresholds:
    mean_shift: float = 0.10
    max_psi: float = 0.25

    @classmethod
    def from_env(cls) -> DriftThresholds:
        return cls(float(os.environ.get("CLV_DRIFT_MEAN_SHIFT", cls.mean_shift)),
                   float(os.environ.get("CLV_DRIFT_MAX_PSI", cls.max_psi)))


def _bucket(column: str, edges: list[float]) -> F.Column:
    """Bin index 0..len(edges): the number of cut points strictly below the value ((e_i, e_i+1] bins)."""
    col = F.col(column)
    return sum((F.when(col > F.lit(e), 1).otherwise(0) for e in edges), F.lit(0))


def _shares(df: DataFrame, columns: dict[str, list[float]]) -> dict[str, tuple[list[float], float | None]]:
    """For each column: the share of non-null rows in each bin of its cut points, and its mean (one pass)."""
    aggs = []
    for i, (column, edges) in enumerate(columns.items()):
        bucket = _bucket(column, edges)
        aggs.append(F.count(column).alias(f"n{i}"))
        aggs.append(F.avg(column).alias(f"m{i}"))
        aggs += [F.count_if(F.col(column).isNotNull() & (bucket == b)).alias(f"b{i}_{b}") for b in range(len(edges) + 1)]
    row = df.agg(*aggs).first().asDict()
    out = {}
    for i, (column, edges) in enumerate(columns.items()):
        n = row[f"n{i}"] or 0
        out[column] = ([row[f"b{i}_{b}"] / n if n else 0.0 for b in range(len(edges) + 1)], row[f"m{i}"])
    return out


def profile(df: DataFrame, columns: list[str], bins: int = BINS) -> dict[str, dict]:
    """The reference profile of ``columns``: distinct decile cut points, the share in each bin and the mean."""
    columns = [c for c in columns if c in df.columns]
    if not columns:
        return {}
    probs = [i / bins for i in range(1, bins)]
    quantiles = df.approxQuantile(columns, probs, 0.001)
    edges = {c: sorted(set(float(v) for v in q)) for c, q in zip(columns, quantiles)}
    return {c: {"edges": edges[c], "shares": s, "mean": m} for c, (s, m) in _shares(df, edges).items()}


def profile_values(values, bins: int = BINS) -> dict:
    """:func:`profile` of one column already on the driver (numpy), with exact deciles (the smallest value at or
    above each share of the sorted values) where Spark's are approximate. NaN counts as missing."""
    import numpy as np

    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if not v.size:
        return {"edges": [], "shares": [0.0], "mean": None}
    edges = sorted({float(q) for q in np.quantile(v, [i / bins for i in range(1, bins)], method="inverted_cdf")})
    counts = np.bincount(np.searchsorted(np.asarray(edges), v, side="left"), minlength=len(edges) + 1)  # edges < value
    return {"edges": edges, "shares": [float(c) / v.size for c in counts], "mean": float(v.mean())}


def psi(reference: list[float], current: list[float]) -> float:
    """Population stability index of two bin-share vectors of the same bins."""
    total = 0.0
    for r, c in zip(reference, current):
        r, c = max(r, EMPTY_SHARE), max(c, EMPTY_SHARE)
        total += (c - r) * math.log(c / r)
    return total


def relative_shift(reference: float | None, current: float | None) -> float | None:
    if reference is None or current is None or reference == 0:
        return None
    return (current - reference) / abs(reference)


def compare(reference: dict[str, dict], current: DataFrame) -> list[dict]:
    """One row per profiled column of ``current``: PSI against the reference bins and the shift of the mean."""
    present = {c: p["edges"] for c, p in reference.items() if c in current.columns}
    if not present:
        return []
    now = _shares(current, present)
    return [
        {"measure": c, "psi": psi(reference[c]["shares"], now[c][0]), "reference_mean": reference[c]["mean"],
         "current_mean": now[c][1], "relative_mean_shift": relative_shift(reference[c]["mean"], now[c][1])}
        for c in present
    ]


def verdict(rows: list[dict], thresholds: DriftThresholds) -> tuple[bool, list[str]]:
    """Drifted or not, and why (each crossed threshold, named with its figure)."""
    reasons = []
    for row in rows:
        if row["measure"] == PREDICTION:
            shift = row["relative_mean_shift"]
            if shift is not None and abs(shift) >= thresholds.mean_shift:
                reasons.append(f"mean predicted CLV moved {shift:+.1%} (threshold {thresholds.mean_shift:.0%})")
        elif row["psi"] >= thresholds.max_psi:
            reasons.append(f"{row['measure']} PSI {row['psi']:.3f} (threshold {thresholds.max_psi:g})")
    return bool(reasons), reasons


def summary(rows: list[dict]) -> dict[str, float | None]:
    """The figures the drift sensor reads: the largest feature PSI and predicted CLV's PSI and mean shift."""
    features = [r for r in rows if r["measure"] != PREDICTION]
    prediction = next((r for r in rows if r["measure"] == PREDICTION), None)
    return {
        "max_feature_psi": max((r["psi"] for r in features), default=None),
        "max_psi_feature": max(features, key=lambda r: r["psi"])["measure"] if features else None,
        "predicted_clv_psi": prediction["psi"] if prediction else None,
        "predicted_clv_mean_shift": prediction["relative_mean_shift"] if prediction else None,
    }


def drifted_from_figures(figures: dict, thresholds: DriftThresholds) -> tuple[bool, list[str]]:
    """The verdict from recorded figures (what the sensor sees in the ``clv_drift`` metadata)."""
    rows = []
    if figures.get("max_feature_psi") is not None:
        rows.append({"measure": figures.get("max_psi_feature") or "feature", "psi": figures["max_feature_psi"]})
    if figures.get("predicted_clv_mean_shift") is not None:
        rows.append({"measure": PREDICTION, "psi": figures.get("predicted_clv_psi") or 0.0,
                     "relative_mean_shift": figures["predicted_clv_mean_shift"]})
    return verdict(rows, thresholds)
