"""Scoring predicted customer revenue against actual revenue over a holdout window (pure numpy/pandas).

Used to compare CLV models honestly on a backtest: fit on data up to a cut-off date, predict each
customer's revenue over the following window, then score the predictions against what they really spent.

Conventions, stated once:
- Inputs are 1-D array-likes of equal, non-zero length, one entry per customer (lists, numpy arrays and
  pandas Series are accepted; a Series' index is ignored, so align them before calling). ``actual`` and
  ``predicted`` must be finite: a NaN is a bug upstream, and silently dropping it would flatter a model.
  Interval bounds may be infinite (an unbounded side) but not NaN.
- *Ties in the predictions never help a model.* Ranking metrics (:func:`normalized_gini`,
  :func:`top_decile_capture`) by default give customers with the same prediction their group's mean actual
  value, which is exactly the expected score over all orderings of the tied customers. A constant
  predictor therefore scores a Gini of 0 and captures exactly 10% of revenue in its "top decile", whatever
  the row order. ``ties="pessimistic"`` instead puts the smallest actual values first within each tie.
- Deciles (:func:`decile_table`, :func:`decile_mape`) are by prediction, 10 = highest, from the customer's
  average rank: ``decile = ceil(10 * rank / n)``. With distinct predictions and ``n`` a multiple of 10 every
  decile holds ``n / 10`` customers; customers with the same prediction always share a decile (no arbitrary
  split of a tie), so deciles can be unequal and some can be empty. Empty deciles have no row.
- Undefined results are ``nan``, not an exception: e.g. R² or the normalized Gini when all actual values
  are equal, a revenue share when total actual revenue is not positive.

No Spark and no Dagster here; scipy is not needed, and matplotlib is imported only inside
:func:`lift_chart_png`, so importing this module stays cheap.
"""

from __future__ import annotations

import math
from os import PathLike
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

Ties = Literal["average", "pessimistic"]

DECILE_COLUMNS = ["decile", "customers", "mean_predicted", "mean_actual", "total_predicted", "total_actual"]


# ----------------------------------------------------------------------------------------------- helpers


def _vector(values, name: str, *, allow_inf: bool = False) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-dimensional, got shape {arr.shape}.")
    if arr.size == 0:
        raise ValueError(f"{name} is empty: there is nothing to score.")
    bad = np.isnan(arr) if allow_inf else ~np.isfinite(arr)
    if bad.any():
        what = "NaN" if allow_inf else "NaN or infinite"
        raise ValueError(f"{name} has {int(bad.sum())} {what} value(s) (first at position {int(np.argmax(bad))}).")
    return arr


def _pair(actual, predicted) -> tuple[np.ndarray, np.ndarray]:
    a = _vector(actual, "actual")
    p = _vector(predicted, "predicted")
    if a.shape != p.shape:
        raise ValueError(f"actual and predicted differ in length: {a.size} vs {p.size}.")
    return a, p


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks, ascending; tied values get the mean of the ranks they span."""
    order = np.argsort(x, kind="stable")
    _, first, counts = np.unique(x[order], return_index=True, return_counts=True)
    ranks = np.empty(x.size, dtype=float)
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)
    return ranks


def _actual_by_prediction_desc(a: np.ndarray, p: np.ndarray, ties: Ties) -> np.ndarray:
    """Actual values ordered from highest to lowest prediction, with ties resolved as documented."""
    if ties == "pessimistic":
        # np.lexsort sorts by the last key first: prediction descending, then actual ascending (worst first).
        return a[np.lexsort((a, -p))]
    if ties != "average":
        raise ValueError(f"ties must be 'average' or 'pessimistic', got {ties!r}.")
    order = np.argsort(-p, kind="stable")
    _, inverse, counts = np.unique(-p[order], return_inverse=True, return_counts=True)
    group_means = np.bincount(inverse, weights=a[order]) / counts
    return group_means[inverse]


def _share(part: float, total: float) -> float:
    return float(part / total) if total > 0 else math.nan


# ----------------------------------------------------------------------------------- error and fit metrics


def rmse(actual, predicted) -> float:
    """Root mean squared error, in revenue units."""
    a, p = _pair(actual, predicted)
    return float(np.sqrt(np.mean((a - p) ** 2)))


def mae(actual, predicted) -> float:
    """Mean absolute error, in revenue units."""
    a, p = _pair(actual, predicted)
    return float(np.mean(np.abs(a - p)))


def r2(actual, predicted) -> float:
    """Coefficient of determination ``1 - SS_res / SS_tot`` of the predictions as given (no refitting).

    Negative when the predictions do worse than predicting the mean actual value; ``nan`` when all actual
    values are equal (``SS_tot = 0``).
    """
    a, p = _pair(actual, predicted)
    ss_tot = float(np.sum((a - a.mean()) ** 2))
    if ss_tot == 0.0:
        return math.nan
    return 1.0 - float(np.sum((a - p) ** 2)) / ss_tot


def spearman(actual, predicted) -> float:
    """Spearman rank correlation: the Pearson correlation of average ranks (ties share their mean rank).

    ``nan`` when either input is constant (its ranks have no variance).
    """
    a, p = _pair(actual, predicted)
    ra, rp = _average_ranks(a), _average_ranks(p)
    ra -= ra.mean()
    rp -= rp.mean()
    denom = math.sqrt(float(ra @ ra) * float(rp @ rp))
    if denom == 0.0:
        return math.nan
    return float(np.clip((ra @ rp) / denom, -1.0, 1.0))


# ---------------------------------------------------------------------------------------- ranking quality


def normalized_gini(actual, predicted, *, ties: Ties = "average") -> float:
    """Normalized Gini: the Gini of actual values ordered by prediction over the Gini of the perfect order.

    The (Kaggle) Gini of an ordering is the area between the cumulative share of actual revenue, customers
    taken from highest to lowest prediction, and the diagonal of a random ordering. Dividing by the Gini of
    ordering by the actual values themselves gives 1 for a perfect ranking, about 0 for a random one and
    -1 for the exact reverse. It depends only on the order of the predictions, so any strictly increasing
    transform of them leaves it unchanged.

    Computed as ``sum(a_sorted_by_prediction * w) / sum(a_sorted_by_actual * w)`` with position weights
    ``w_i = (n + 1) / 2 - i``, which is the Kaggle ratio with the total revenue cancelled: it stays defined
    when refunds make the total zero or negative, and the denominator is zero only when all actual values
    are equal, in which case the result is ``nan``.

    Ties in ``predicted``: see the module docstring (``"average"`` = expected value over tie orderings, the
    default; ``"pessimistic"`` = worst ordering).
    """
    a, p = _pair(actual, predicted)
    if np.ptp(a) == 0.0:
        return math.nan
    n = a.size
    w = (n + 1) / 2.0 - np.arange(1, n + 1)
    model = float(_actual_by_prediction_desc(a, p, ties) @ w)
    perfect = float(np.sort(a)[::-1] @ w)
    return model / perfect


def top_decile_capture(actual, predicted, *, fraction: float = 0.1, ties: Ties = "average") -> float:
    """Share of total actual revenue spent by the ``fraction`` (default 10%) of customers predicted highest.

    Exactly ``fraction * n`` customers are taken: when that is not a whole number, the customer straddling
    the cut counts with the fractional weight. A random ranking captures about ``fraction``, a perfect one
    the largest share possible. ``nan`` when total actual revenue is zero or negative (a share of it means
    nothing). Ties in ``predicted``: see the module docstring.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}.")
    a, p = _pair(actual, predicted)
    ordered = _actual_by_prediction_desc(a, p, ties)
    k = fraction * a.size
    if abs(k - round(k)) < 1e-9:
        k = float(round(k))
    whole = int(math.floor(k))
    captured = float(ordered[:whole].sum())
    if whole < a.size:
        captured += (k - whole) * float(ordered[whole])
    return _share(captured, float(a.sum()))


def _deciles(p: np.ndarray) -> np.ndarray:
    return np.clip(np.ceil(10.0 * _average_ranks(p) / p.size - 1e-9), 1, 10).astype(int)


def decile_table(actual, predicted) -> pd.DataFrame:
    """One row per prediction decile (1 = lowest predicted, 10 = highest), in increasing decile order.

    Columns: ``decile``, ``customers``, ``mean_predicted``, ``mean_actual``, ``total_predicted``,
    ``total_actual``. The totals add up to the overall totals. Deciles come from average ranks of the
    prediction (see the module docstring), so tied customers share a decile and empty deciles have no row.
    """
    a, p = _pair(actual, predicted)
    frame = pd.DataFrame({"decile": _deciles(p), "predicted": p, "actual": a})
    table = frame.groupby("decile", sort=True).agg(
        customers=("actual", "size"),
        mean_predicted=("predicted", "mean"),
        mean_actual=("actual", "mean"),
        total_predicted=("predicted", "sum"),
        total_actual=("actual", "sum"),
    )
    return table.reset_index()[DECILE_COLUMNS]


def decile_mape(actual, predicted) -> float:
    """Mean absolute percentage error of predicted vs actual revenue totals per prediction decile.

    ``mean(|total_predicted - total_actual| / |total_actual|)`` over the deciles of :func:`decile_table`,
    as a fraction (0.25 = 25%). Deciles whose actual total is exactly zero have no percentage error and are
    left out of the mean; ``nan`` if no decile is left.
    """
    table = decile_table(actual, predicted)
    table = table[table["total_actual"] != 0]
    if table.empty:
        return math.nan
    errors = (table["total_predicted"] - table["total_actual"]).abs() / table["total_actual"].abs()
    return float(errors.mean())


# ----------------------------------------------------------------------------------------------- intervals


def _bounds(lower, upper, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    lo = _vector(lower, "lower", allow_inf=True)
    hi = _vector(upper, "upper", allow_inf=True)
    if lo.shape != hi.shape or (n is not None and lo.size != n):
        raise ValueError(f"Interval bounds must match the data in length: lower {lo.size}, upper {hi.size}, data {n}.")
    if (lo > hi).any():
        raise ValueError(f"lower exceeds upper for {int((lo > hi).sum())} customer(s).")
    return lo, hi


def interval_coverage(actual, lower, upper) -> float:
    """Share of actual values inside their closed interval ``[lower, upper]`` (bounds included)."""
    a = _vector(actual, "actual")
    lo, hi = _bounds(lower, upper, a.size)
    return float(np.mean((a >= lo) & (a <= hi)))


def _merge_small_bins(edges: np.ndarray, bins_of: np.ndarray, min_size: int) -> np.ndarray:
    """Drop inner edges until every bin holds at least ``min_size`` calibration points (or one bin is left)."""
    edges = list(edges)
    while edges:
        counts = np.bincount(np.searchsorted(edges, bins_of, side="right"), minlength=len(edges) + 1)
        smallest = int(np.argmin(counts))
        if counts[smallest] >= min_size:
            break
        # Merge the smallest bin into its smaller neighbour by removing the edge between them.
        if smallest == 0:
            edges.pop(0)
        elif smallest == len(edges) or counts[smallest - 1] <= counts[smallest + 1]:
            edges.pop(smallest - 1)
        else:
            edges.pop(smallest)
    return np.asarray(edges, dtype=float)


def conformal_interval(pred_calib, actual_calib, pred_new, coverage: float = 0.8, *, bins: int = 10,
                       min_bin_size: int = 200, scale_offset: float | None = None,
                       clip_at_zero: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Split-conformal prediction intervals for skewed, non-negative revenue, calibrated per prediction level.

    Method: Mondrian (group-conditional) split conformal on normalized residuals, two one-sided quantiles.

    1. Calibration customers must not have been used to fit the model. They are grouped into up to ``bins``
       equal-count bins by predicted value (bins with fewer than ``min_bin_size`` customers, e.g. from many
       tied predictions, are merged with a neighbour; too small a calibration set gives one bin). A new
       customer uses the bin its prediction falls in. Calibrating each bin on its own is what makes coverage
       hold at every prediction level, not only on average: one pooled quantile over-covers the many
       small customers and under-covers the big ones, whose revenue is often zero *or* far above the
       prediction.
    2. Scores are residuals relative to the prediction, ``r = (y - p) / s(p)`` with
       ``s(p) = scale_offset + max(p, 0)``, because the spread of revenue grows with its level (this also
       keeps intervals proportionate within the widest, top bin). Default offset: the median of the
       positive calibration predictions (1.0 if none), so the result does not depend on the currency unit.
    3. In a bin of ``m`` customers, with ``alpha = 1 - coverage``, the lower score quantile ``q_lo`` is the
       ``floor((m + 1) * alpha / 2)``-th smallest score and ``q_hi`` the ``ceil((m + 1) * (1 - alpha / 2))``-th
       smallest (the finite-sample correction; a rank outside ``1..m`` gives an infinite bound). Each side
       then misses at most ``alpha / 2`` of exchangeable new customers in that bin, so the interval covers
       at least ``coverage`` of them (up to the bin edges being estimated from the calibration predictions).
    4. Interval ``[p + q_lo * s(p), p + q_hi * s(p)]``, both ends clipped at 0 when ``clip_at_zero``
       (revenue cannot be negative; pass ``False`` for net revenue, which can).

    ``bins=1`` gives plain normalized split conformal (marginal coverage only). Returns ``(lower, upper)``
    arrays aligned with ``pred_new``.
    """
    if not 0.0 < coverage < 1.0:
        raise ValueError(f"coverage must be strictly between 0 and 1, got {coverage}.")
    if bins < 1 or min_bin_size < 1:
        raise ValueError(f"bins and min_bin_size must be at least 1, got {bins} and {min_bin_size}.")
    y, p = _pair(actual_calib, pred_calib)
    new = _vector(pred_new, "pred_new")
    if scale_offset is None:
        positive = p[p > 0]
        scale_offset = float(np.median(positive)) if positive.size else 1.0
    if not (scale_offset > 0 and math.isfinite(scale_offset)):
        raise ValueError(f"scale_offset must be positive and finite, got {scale_offset}.")

    edges = np.unique(np.quantile(p, np.linspace(0.0, 1.0, bins + 1)[1:-1])) if bins > 1 else np.empty(0)
    edges = _merge_small_bins(edges, p, min_bin_size)
    calib_bin = np.searchsorted(edges, p, side="right")
    new_bin = np.searchsorted(edges, new, side="right")

    scores = (y - p) / (scale_offset + np.maximum(p, 0.0))
    alpha = 1.0 - coverage
    q_lo = np.empty(edges.size + 1)
    q_hi = np.empty(edges.size + 1)
    for b in range(edges.size + 1):
        s = np.sort(scores[calib_bin == b])
        m = s.size
        lo_rank = math.floor((m + 1) * alpha / 2 + 1e-9)
        hi_rank = math.ceil((m + 1) * (1 - alpha / 2) - 1e-9)
        q_lo[b] = s[lo_rank - 1] if lo_rank >= 1 else -math.inf
        q_hi[b] = s[hi_rank - 1] if hi_rank <= m else math.inf

    scale = scale_offset + np.maximum(new, 0.0)  # > 0, so an infinite quantile gives an infinite bound, not nan
    lower = new + q_lo[new_bin] * scale
    upper = new + q_hi[new_bin] * scale
    if clip_at_zero:
        lower = np.maximum(lower, 0.0)
        upper = np.maximum(upper, 0.0)
    return lower, upper


# ------------------------------------------------------------------------------------------------- summary


def score_predictions(actual, predicted, lower=None, upper=None) -> dict[str, float]:
    """All scalar metrics in one dict (plain floats, ``nan`` where undefined).

    Keys: ``rmse``, ``mae``, ``r2``, ``spearman``, ``normalized_gini``, ``top_decile_capture``,
    ``decile_mape``, ``total_predicted``, ``total_actual``, ``total_ratio`` (predicted / actual; ``nan`` if
    the actual total is 0). With both ``lower`` and ``upper``, also ``coverage`` and
    ``mean_interval_width`` (coverage alone rewards uselessly wide intervals).
    """
    a, p = _pair(actual, predicted)
    total_actual, total_predicted = float(a.sum()), float(p.sum())
    scores = {
        "rmse": rmse(a, p),
        "mae": mae(a, p),
        "r2": r2(a, p),
        "spearman": spearman(a, p),
        "normalized_gini": normalized_gini(a, p),
        "top_decile_capture": top_decile_capture(a, p),
        "decile_mape": decile_mape(a, p),
        "total_predicted": total_predicted,
        "total_actual": total_actual,
        "total_ratio": total_predicted / total_actual if total_actual != 0 else math.nan,
    }
    if (lower is None) != (upper is None):
        raise ValueError("Give both lower and upper interval bounds, or neither.")
    if lower is not None:
        lo, hi = _bounds(lower, upper, a.size)
        scores["coverage"] = interval_coverage(a, lo, hi)
        scores["mean_interval_width"] = float(np.mean(hi - lo))
    return scores


# --------------------------------------------------------------------------------------------------- chart


def lift_chart_png(tables: dict[str, pd.DataFrame], path: str | PathLike[str], *, title: str | None = None) -> Path:
    """Lift chart: mean predicted revenue per decile for each model, against mean actual revenue; as PNG.

    ``tables`` maps a model name to its :func:`decile_table`. Each model gets a solid line of its mean
    prediction per decile. Actual revenue gets one black dashed line when every table has the same actual
    means per decile (deciles from a shared ranking), otherwise one dashed line per model in the model's
    colour (each model sorts customers into different deciles). Written with matplotlib's Agg canvas without
    touching pyplot's global state; parent folders are created. Returns the path written.
    """
    if not tables:
        raise ValueError("No decile tables to chart.")
    for name, table in tables.items():
        missing = {"decile", "mean_predicted", "mean_actual"} - set(table.columns)
        if missing:
            raise ValueError(f"Decile table for {name!r} lacks column(s) {sorted(missing)}: use decile_table().")

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    first = next(iter(tables.values()))
    shared_actual = all(
        len(t) == len(first)
        and np.array_equal(t["decile"].to_numpy(), first["decile"].to_numpy())
        and np.allclose(t["mean_actual"].to_numpy(), first["mean_actual"].to_numpy())
        for t in tables.values()
    )
    for i, (name, table) in enumerate(tables.items()):
        color = f"C{i}"
        ax.plot(table["decile"], table["mean_predicted"], marker="o", color=color, label=f"{name} (predicted)")
        if not shared_actual:
            ax.plot(table["decile"], table["mean_actual"], marker="x", linestyle="--", color=color,
                    label=f"{name} (actual)")
    if shared_actual:
        ax.plot(first["decile"], first["mean_actual"], marker="s", linestyle="--", color="black", label="actual")
    ax.set_xticks(range(1, 11))
    ax.set_xlabel("Prediction decile (10 = highest predicted)")
    ax.set_ylabel("Mean revenue per customer")
    ax.set_title(title or "Lift chart: predicted vs actual revenue by decile")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out
