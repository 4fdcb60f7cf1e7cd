"""Backtest scoring of predicted vs actual revenue, against hand-computed values and independent formulas."""

import itertools
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from clv_assets import evaluation as ev


def kaggle_gini(actual, predicted):
    """The Kaggle reference Gini (index tie-break), written independently of the module's weighted form."""
    actual, predicted = np.asarray(actual, float), np.asarray(predicted, float)
    order = np.lexsort((np.arange(len(actual)), -predicted))
    ordered = actual[order]
    return (ordered.cumsum().sum() / ordered.sum() - (len(actual) + 1) / 2.0) / len(actual)


def kaggle_normalized(actual, predicted):
    return kaggle_gini(actual, predicted) / kaggle_gini(actual, actual)


def simulate_revenue(rng, n):
    """Zero-inflated, gamma-distributed holdout revenue with a noisy but roughly unbiased predictor."""
    level = rng.lognormal(mean=4.0, sigma=1.0, size=n)  # latent spend level: heavily skewed
    p_return = 0.1 + 0.8 / (1.0 + np.exp(-(np.log(level) - 4.0)))  # bigger spenders come back more often
    returned = rng.random(n) < p_return
    actual = np.where(returned, rng.gamma(2.0, level / 2.0), 0.0)
    predicted = p_return * level * rng.lognormal(-0.125, 0.5, size=n)
    return actual, predicted


# ------------------------------------------------------------------------------------- error and fit metrics


def test_rmse_mae_r2_by_hand():
    actual, predicted = [1.0, 2.0, 3.0, 4.0], [2.0, 2.0, 2.0, 6.0]
    # errors -1, 0, 1, -2: squares 1, 0, 1, 4 (sum 6); mean actual 2.5, SS_tot = 2.25 + 0.25 + 0.25 + 2.25 = 5
    assert ev.rmse(actual, predicted) == pytest.approx(math.sqrt(6 / 4))
    assert ev.mae(actual, predicted) == pytest.approx(4 / 4)
    assert ev.r2(actual, predicted) == pytest.approx(1 - 6 / 5)  # worse than the mean: negative

    actual, predicted = [0.0, 10.0, 20.0], [5.0, 10.0, 15.0]
    # errors -5, 0, 5 (SS_res 50); mean 10, SS_tot 100 + 0 + 100 = 200
    assert ev.rmse(actual, predicted) == pytest.approx(math.sqrt(50 / 3))
    assert ev.mae(actual, predicted) == pytest.approx(10 / 3)
    assert ev.r2(actual, predicted) == pytest.approx(0.75)

    assert ev.r2(actual, actual) == 1.0
    assert ev.r2(actual, [10.0, 10.0, 10.0]) == 0.0  # predicting the mean


def test_r2_matches_squared_correlation_of_a_least_squares_fit():
    rng = np.random.default_rng(7)
    x = rng.gamma(2.0, 10.0, 500)
    actual = 3.0 * x + rng.normal(0, 15.0, 500)
    slope, intercept = np.polyfit(x, actual, 1)
    # For an OLS fit with intercept, R^2 equals the squared Pearson correlation: an independent formula.
    assert ev.r2(actual, intercept + slope * x) == pytest.approx(np.corrcoef(actual, x)[0, 1] ** 2, rel=1e-9)


def test_spearman_by_hand_and_against_pandas_with_ties():
    # No ties: 1 - 6 * sum(d^2) / (n (n^2 - 1)); ranks 1..5 vs 2, 1, 4, 3, 5 -> d^2 sums to 4
    assert ev.spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(1 - 6 * 4 / (5 * 24))
    assert ev.spearman([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)

    rng = np.random.default_rng(3)
    actual = rng.integers(0, 6, 400).astype(float)  # many ties on both sides
    predicted = actual + rng.integers(0, 4, 400)
    expected = pd.Series(actual).corr(pd.Series(predicted), method="spearman")  # average ranks, in pandas
    assert ev.spearman(actual, predicted) == pytest.approx(expected, rel=1e-12)
    assert ev.spearman(actual, np.exp(predicted)) == pytest.approx(expected, rel=1e-12)  # rank-based

    assert math.isnan(ev.spearman([1.0, 2.0, 3.0], [4.0, 4.0, 4.0]))


# -------------------------------------------------------------------------------------------- ranking quality


def test_normalized_gini_by_hand_and_against_kaggle_reference():
    # by prediction (3, 2, 1): actual 1, 3, 2; weights (n + 1) / 2 - i = 1, 0, -1 -> 1 - 2 = -1;
    # perfect order 3, 2, 1 -> 3 - 1 = 2; normalized -1 / 2
    assert ev.normalized_gini([1.0, 2.0, 3.0], [3.0, 1.0, 2.0]) == pytest.approx(-0.5)
    assert kaggle_normalized([1.0, 2.0, 3.0], [3.0, 1.0, 2.0]) == pytest.approx(-0.5)

    rng = np.random.default_rng(11)
    actual = np.where(rng.random(300) < 0.4, 0.0, rng.gamma(0.7, 80.0, 300))
    predicted = actual * rng.lognormal(0, 1.0, 300) + rng.random(300)  # distinct predictions
    assert ev.normalized_gini(actual, predicted) == pytest.approx(kaggle_normalized(actual, predicted), rel=1e-9)


def test_normalized_gini_perfect_reversed_and_random():
    rng = np.random.default_rng(5)
    actual = rng.gamma(0.5, 100.0, 1000)
    assert ev.normalized_gini(actual, actual) == pytest.approx(1.0)
    assert ev.normalized_gini(actual, 2 * actual + 3) == pytest.approx(1.0)
    assert ev.normalized_gini(actual, -actual) == pytest.approx(-1.0)

    n = 50_000
    actual = np.where(rng.random(n) < 0.5, 0.0, rng.gamma(0.5, 100.0, n))
    random_gini = ev.normalized_gini(actual, rng.random(n))
    assert abs(random_gini) < 0.03  # standard deviation about 0.007 at this n


def test_normalized_gini_is_invariant_to_monotone_transforms():
    rng = np.random.default_rng(8)
    actual = rng.gamma(0.8, 50.0, 2000)
    predicted = np.round(actual * rng.lognormal(0, 0.8, 2000), 0)  # rounded: plenty of tied predictions
    base = ev.normalized_gini(actual, predicted)
    assert 0.3 < base < 1.0
    for transformed in (np.log1p(predicted), predicted**3, 5 * predicted - 7, np.sqrt(predicted)):
        assert ev.normalized_gini(actual, transformed) == pytest.approx(base, rel=1e-12)
    # Shuffling rows changes nothing either (ties are not broken by row order).
    perm = rng.permutation(2000)
    assert ev.normalized_gini(actual[perm], predicted[perm]) == pytest.approx(base, rel=1e-12)


def test_normalized_gini_ties_are_averaged_not_optimistic():
    actual, predicted = [10.0, 0.0, 5.0, 1.0], [1.0, 1.0, 0.0, 0.0]
    # average: tied groups get their mean actual, (5, 5) then (3, 3); weights 1.5, 0.5, -0.5, -1.5 -> 4;
    # perfect 10, 5, 1, 0 -> 15 + 2.5 - 0.5 - 0 = 17
    assert ev.normalized_gini(actual, predicted) == pytest.approx(4 / 17)
    # ... which is the mean Gini over every ordering of the tied customers (independent brute force).
    orderings = [
        [*first, *second]
        for first in itertools.permutations([10.0, 0.0])
        for second in itertools.permutations([5.0, 1.0])
    ]
    brute = np.mean([kaggle_normalized(o, [4.0, 3.0, 2.0, 1.0]) for o in orderings])
    assert brute == pytest.approx(4 / 17)
    # pessimistic: smallest actual first within a tie: 0, 10, 1, 5 -> 0 + 5 - 0.5 - 7.5 = -3
    assert ev.normalized_gini(actual, predicted, ties="pessimistic") == pytest.approx(-3 / 17)
    # The index tie-break of the Kaggle code flatters this row order: 10, 0, 5, 1 -> 15 + 0 - 2.5 - 1.5 = 11
    assert kaggle_normalized(actual, predicted) == pytest.approx(11 / 17)

    rng = np.random.default_rng(2)
    skewed = rng.gamma(0.5, 100.0, 1001)
    assert ev.normalized_gini(skewed, np.ones(1001)) == pytest.approx(0.0, abs=1e-12)
    assert ev.normalized_gini(np.sort(skewed)[::-1], np.ones(1001)) == pytest.approx(0.0, abs=1e-12)
    assert ev.normalized_gini(skewed, np.ones(1001), ties="pessimistic") == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="ties"):
        ev.normalized_gini(skewed, skewed, ties="optimistic")


def test_normalized_gini_edge_cases():
    assert math.isnan(ev.normalized_gini([7.0, 7.0, 7.0], [1.0, 2.0, 3.0]))
    # Refunds can make the total zero: the ratio is still defined.
    assert ev.normalized_gini([-5.0, 5.0, 0.0], [0.0, 2.0, 1.0]) == pytest.approx(1.0)
    assert ev.normalized_gini([-5.0, 5.0, 0.0], [2.0, 0.0, 1.0]) == pytest.approx(-1.0)


def test_top_decile_capture_by_hand_on_20_customers():
    # 20 customers, total actual 200; top 10% = the 2 highest predictions, who spent 50 and 0.
    actual = np.array([50.0, 0.0, 40.0, 30.0] + [5.0] * 16)
    predicted = np.array([100.0, 90.0, 80.0, 1.0] + list(np.linspace(2.0, 60.0, 16)))
    assert actual.sum() == 200.0
    assert ev.top_decile_capture(actual, predicted) == pytest.approx((50 + 0) / 200)
    assert ev.top_decile_capture(actual, predicted, fraction=0.15) == pytest.approx((50 + 0 + 40) / 200)
    assert ev.top_decile_capture(actual, actual) == pytest.approx((50 + 40) / 200)  # the best possible
    # Constant prediction: exactly 10%, whatever the row order (ties averaged).
    assert ev.top_decile_capture(actual, np.zeros(20)) == pytest.approx(0.1)
    # pessimistic: the two smallest actual values, 0 and 5
    assert ev.top_decile_capture(actual, np.zeros(20), ties="pessimistic") == pytest.approx(5 / 200)


def test_top_decile_capture_fractional_cut_and_edge_cases():
    # 15 customers: the top 1.5 customers, i.e. all of the first and half of the second.
    actual = np.array([30.0, 20.0] + [10.0] * 13)  # total 180
    predicted = np.arange(15, 0, -1, dtype=float)
    assert ev.top_decile_capture(actual, predicted) == pytest.approx((30 + 0.5 * 20) / 180)
    assert math.isnan(ev.top_decile_capture([0.0, 0.0, 0.0], [1.0, 2.0, 3.0]))
    assert math.isnan(ev.top_decile_capture([-5.0, 2.0], [1.0, 2.0]))  # net refunds: no share of it


# ------------------------------------------------------------------------------------------------ deciles


def test_decile_table_on_20_customers():
    actual = np.arange(20, dtype=float)  # 0 .. 19
    predicted = np.arange(20, dtype=float)[::-1] * 2  # 38 .. 0: highest prediction for actual 0
    table = ev.decile_table(actual, predicted)
    assert list(table.columns) == ["decile", "customers", "mean_predicted", "mean_actual", "total_predicted", "total_actual"]
    assert table["decile"].tolist() == list(range(1, 11))
    assert table["customers"].tolist() == [2] * 10
    top = table.set_index("decile").loc[10]
    assert (top["total_predicted"], top["total_actual"]) == (38 + 36, 0 + 1)
    assert (top["mean_predicted"], top["mean_actual"]) == (37.0, 0.5)
    assert table["total_actual"].sum() == actual.sum() and table["total_predicted"].sum() == predicted.sum()


def test_decile_table_totals_and_ties_on_skewed_data():
    rng = np.random.default_rng(4)
    actual, predicted = simulate_revenue(rng, 5003)
    predicted = np.round(predicted, -1)  # ties, including many zero predictions
    table = ev.decile_table(actual, predicted)
    assert table["customers"].sum() == 5003
    assert table["total_actual"].sum() == pytest.approx(actual.sum(), rel=1e-12)
    assert table["total_predicted"].sum() == pytest.approx(predicted.sum(), rel=1e-12)
    assert table["decile"].is_monotonic_increasing and table["decile"].iloc[-1] == 10
    # A tied prediction is never split across deciles: decile ranges of predictions do not overlap.
    deciles = pd.DataFrame({"d": ev._deciles(predicted), "p": predicted}).groupby("d")["p"].agg(["min", "max"])
    assert (deciles["max"].to_numpy()[:-1] < deciles["min"].to_numpy()[1:]).all()
    # Higher predicted deciles spend more, for this informative predictor.
    assert table["mean_actual"].is_monotonic_increasing


def test_decile_mape_by_hand():
    actual = np.arange(1, 21, dtype=float)
    assert ev.decile_mape(actual, 1.1 * actual) == pytest.approx(0.10)  # every decile 10% over
    # Decile 10 (actual 19 + 20 = 39) predicted 78 (100% over); the rest exact: mean error 1.0 / 10
    predicted = actual.copy()
    predicted[-2:] *= 2
    assert ev.decile_mape(actual, predicted) == pytest.approx(0.1)
    # A decile with zero actual revenue has no percentage error and is left out of the mean.
    actual = np.array([0.0, 0.0] + [10.0] * 18)
    predicted = np.array([1.0, 1.0] + [11.0] * 18)
    # (tiny increments make the predictions distinct; tied ones would share one decile)
    assert ev.decile_mape(actual, predicted + np.arange(20) * 1e-9) == pytest.approx(0.1, rel=1e-6)
    assert len(ev.decile_table(actual, predicted)) == 2  # the 18 tied predictions all land in one decile


# ---------------------------------------------------------------------------------------------- intervals


def test_interval_coverage_by_hand():
    actual = [1.0, 2.0, 3.0, 4.0, 5.0]
    lower = [0.0, 2.0, 4.0, 0.0, 6.0]
    upper = [1.0, 3.0, 5.0, 3.0, 7.0]
    # 1 in [0, 1] (bound included), 2 in [2, 3]; 3, 4 and 5 are outside
    assert ev.interval_coverage(actual, lower, upper) == pytest.approx(2 / 5)
    assert ev.interval_coverage(actual, [-np.inf] * 5, [np.inf] * 5) == 1.0
    with pytest.raises(ValueError, match="lower exceeds upper"):
        ev.interval_coverage(actual, upper, lower)


def test_conformal_interval_ranks_by_hand():
    # One bin (9 < min_bin_size), scale 1 + max(p, 0) = 1 at p = 0, so the scores are the actual values 1..9.
    # coverage 0.8, alpha / 2 = 0.1: lower rank floor(10 * 0.1) = 1 -> 1; upper rank ceil(10 * 0.9) = 9 -> 9
    calib_actual = np.arange(1.0, 10.0)
    lower, upper = ev.conformal_interval(np.zeros(9), calib_actual, [0.0, 1.0], coverage=0.8, scale_offset=1.0)
    assert lower.tolist() == [1.0, 1.0 + 1 * 2.0]  # at p = 1 the scale is 2
    assert upper.tolist() == [9.0, 1.0 + 9 * 2.0]
    # Too few calibration customers for 80%: upper rank ceil(6 * 0.9) = 6 > 5 gives an unbounded upper end,
    # lower rank floor(6 * 0.1) = 0 an unbounded lower end, clipped at 0.
    lower, upper = ev.conformal_interval(np.ones(5), np.arange(5.0), [3.0], coverage=0.8)
    assert lower.tolist() == [0.0] and upper.tolist() == [np.inf]


def test_conformal_interval_reaches_80_percent_on_fresh_skewed_data():
    rng = np.random.default_rng(20240611)
    calib_actual, calib_pred = simulate_revenue(rng, 20_000)
    test_actual, test_pred = simulate_revenue(rng, 20_000)
    assert (calib_actual == 0).mean() > 0.4 and calib_actual.mean() > 10 * np.median(calib_actual)  # skewed

    lower, upper = ev.conformal_interval(calib_pred, calib_actual, test_pred, coverage=0.8)
    assert (lower >= 0).all() and (lower <= upper).all() and np.isfinite(upper).all()
    coverage = ev.interval_coverage(test_actual, lower, upper)
    print(f"conformal coverage on fresh data: {coverage:.4f}")
    assert 0.77 <= coverage <= 0.83

    # ... and it holds at every prediction level, not only on average.
    inside = (test_actual >= lower) & (test_actual <= upper)
    by_decile = pd.Series(inside).groupby(ev._deciles(test_pred)).mean()
    print("coverage by prediction decile:", by_decile.round(3).tolist())
    assert by_decile.between(0.73, 0.87).all()

    # One pooled quantile (bins=1) keeps the average but fails the big customers: what the bins are for.
    lower1, upper1 = ev.conformal_interval(calib_pred, calib_actual, test_pred, coverage=0.8, bins=1)
    assert 0.77 <= ev.interval_coverage(test_actual, lower1, upper1) <= 0.83
    pooled = pd.Series((test_actual >= lower1) & (test_actual <= upper1)).groupby(ev._deciles(test_pred)).mean()
    assert pooled.min() < 0.7 and pooled.max() > 0.95

    # Unit-free: the same intervals (scaled) when revenue is in thousands.
    lower_k, upper_k = ev.conformal_interval(calib_pred / 1000, calib_actual / 1000, test_pred / 1000)
    np.testing.assert_allclose(upper_k * 1000, upper, rtol=1e-9)


def test_conformal_interval_validation():
    with pytest.raises(ValueError, match="coverage"):
        ev.conformal_interval([1.0, 2.0], [1.0, 2.0], [1.0], coverage=1.0)
    with pytest.raises(ValueError, match="differ in length"):
        ev.conformal_interval([1.0, 2.0], [1.0], [1.0])


# ------------------------------------------------------------------------------------------ summary, chart


def test_score_predictions_collects_everything():
    rng = np.random.default_rng(9)
    actual, predicted = simulate_revenue(rng, 1000)
    scores = ev.score_predictions(actual, predicted)
    assert set(scores) == {
        "rmse", "mae", "r2", "spearman", "normalized_gini", "top_decile_capture", "decile_mape",
        "total_predicted", "total_actual", "total_ratio",
    }
    assert all(isinstance(v, float) for v in scores.values())
    assert scores["rmse"] == ev.rmse(actual, predicted) and scores["normalized_gini"] == ev.normalized_gini(actual, predicted)
    assert scores["total_ratio"] == pytest.approx(predicted.sum() / actual.sum())

    lower, upper = np.maximum(predicted - 20, 0), predicted + 20
    with_intervals = ev.score_predictions(pd.Series(actual), pd.Series(predicted), lower, upper)
    assert with_intervals["coverage"] == ev.interval_coverage(actual, lower, upper)
    assert with_intervals["mean_interval_width"] == pytest.approx(np.mean(upper - lower))
    with pytest.raises(ValueError, match="both"):
        ev.score_predictions(actual, predicted, lower=lower)


def test_constant_actual_edge_case():
    actual, predicted = np.full(20, 4.0), np.linspace(0.0, 8.0, 20)
    scores = ev.score_predictions(actual, predicted)
    assert math.isnan(scores["r2"]) and math.isnan(scores["spearman"]) and math.isnan(scores["normalized_gini"])
    assert scores["top_decile_capture"] == pytest.approx(0.1)  # every customer spent the same
    assert scores["total_ratio"] == pytest.approx(predicted.sum() / 80.0)
    assert scores["mae"] == pytest.approx(np.mean(np.abs(predicted - 4.0)))
    zeros = ev.score_predictions(np.zeros(20), predicted)
    assert math.isnan(zeros["top_decile_capture"]) and math.isnan(zeros["total_ratio"]) and math.isnan(zeros["decile_mape"])


def test_inputs_are_validated():
    with pytest.raises(ValueError, match="NaN"):
        ev.rmse([1.0, np.nan], [1.0, 2.0])
    with pytest.raises(ValueError, match="differ in length"):
        ev.mae([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="empty"):
        ev.normalized_gini([], [])
    with pytest.raises(ValueError, match="1-dimensional"):
        ev.r2([[1.0, 2.0]], [[1.0, 2.0]])


def test_lift_chart_png_is_written(tmp_path):
    rng = np.random.default_rng(1)
    actual, predicted = simulate_revenue(rng, 2000)
    tables = {
        "noisy": ev.decile_table(actual, predicted),
        "oracle-ish": ev.decile_table(actual, actual + rng.random(2000)),
    }
    path = ev.lift_chart_png(tables, tmp_path / "charts" / "lift.png")
    assert path == tmp_path / "charts" / "lift.png"
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000

    shared = ev.lift_chart_png({"a": tables["noisy"], "b": tables["noisy"]}, str(tmp_path / "shared.png"))
    assert shared.stat().st_size > 5000
    with pytest.raises(ValueError, match="No decile tables"):
        ev.lift_chart_png({}, tmp_path / "none.png")


def test_module_import_stays_light():
    code = "import sys, clv_assets.evaluation; print(sorted(m for m in ('matplotlib', 'scipy', 'pyspark', 'dagster') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
