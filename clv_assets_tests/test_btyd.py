"""BG/NBD and Gamma-Gamma (clv_assets.btyd): published CDNOW estimates, lifetimes cross-check, simulation.

The CDNOW sample (2,357 customers of the 1997-Q1 cohort, Jan 1997 - Jun 1998) and its published
estimates are from Fader, Hardie & Lee (2005) "Counting Your Customers the Easy Way" (BG/NBD) and
Fader & Hardie (2013) "The Gamma-Gamma Model of Monetary Value" (brucehardie.com note 025).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clv_assets.btyd import (
    BetaGeoFit,
    BetaGeoParams,
    GammaGammaParams,
    bgnbd_expected_purchases,
    bgnbd_log_likelihood,
    bgnbd_probability_alive,
    fit_bgnbd,
    fit_gamma_gamma,
    gamma_gamma_expected_spend,
    simulate_bgnbd,
    spend_frequency_correlation,
)

CDNOW = Path(__file__).parent / "data" / "CDNOW_sample.txt"
CALIBRATION_END = pd.Timestamp("1997-09-30")
HOLDOUT_END = pd.Timestamp("1998-06-30")  # 39 weeks after the calibration end
PUBLISHED_BGNBD = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
PUBLISHED_BGNBD_LL = -9582.4
PUBLISHED_GG = {"p": 6.25, "q": 3.74, "v": 15.44}


# ------------------------------------------------------------------------------------------------
# CDNOW summary, computed from the raw file
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    """One row per customer: x, tx, T in weeks over the 39-week calibration; m = mean repeat-day spend;
    holdout = purchase days in the 39-week holdout."""
    raw = pd.read_csv(
        CDNOW, sep=r"\s+", header=None, names=["customer", "sample_id", "date", "cds", "value"], dtype={"date": str}
    )
    raw["date"] = pd.to_datetime(raw["date"], format="%Y%m%d")
    # A purchase is a customer-day: same-day orders are one purchase, with their values summed.
    days = raw.groupby(["customer", "date"], as_index=False)["value"].sum().sort_values(["customer", "date"])
    cal = days[days["date"] <= CALIBRATION_END].copy()
    cal["nth"] = cal.groupby("customer").cumcount()
    g = cal.groupby("customer")
    first, last = g["date"].min(), g["date"].max()
    out = pd.DataFrame(
        {
            "x": (g.size() - 1).astype(float),
            "tx": (last - first).dt.days / 7.0,
            "T": (CALIBRATION_END - first).dt.days / 7.0,
            "m": cal[cal["nth"] > 0].groupby("customer")["value"].mean(),  # NaN for x = 0
        }
    )
    hold = days[(days["date"] > CALIBRATION_END) & (days["date"] <= HOLDOUT_END)]
    out["holdout"] = hold.groupby("customer").size().reindex(out.index, fill_value=0).astype(float)
    return out


def _group(df: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    return df.groupby(cols, as_index=False).size().rename(columns={"size": "n"})


@pytest.fixture(scope="module")
def cdnow_fit(cdnow) -> BetaGeoFit:
    g = _group(cdnow, ["x", "tx", "T"])
    return fit_bgnbd(g["x"], g["tx"], g["T"], weights=g["n"])


@pytest.fixture(scope="module")
def cdnow_gg_fit(cdnow):
    rep = cdnow[cdnow["x"] > 0]
    g = _group(rep, ["x", "m"])
    return fit_gamma_gamma(g["x"], g["m"], weights=g["n"])


def test_cdnow_summary_matches_the_paper(cdnow):
    assert len(cdnow) == 2357
    assert cdnow["x"].sum() == 2457  # calibration-period repeat transactions
    assert (cdnow["x"] > 0).sum() == 946  # repeat buyers (the Gamma-Gamma sample)
    assert cdnow["holdout"].sum() == 1882
    assert (cdnow["tx"] <= cdnow["T"]).all()


def test_cdnow_bgnbd_reproduces_published_estimates(cdnow, cdnow_fit):
    g = _group(cdnow, ["x", "tx", "T"])
    assert cdnow_fit.n_rows == len(g) < len(cdnow)  # grouping really reduced the rows
    assert cdnow_fit.n_customers == 2357
    assert cdnow_fit.converged, cdnow_fit.message
    for name, published in PUBLISHED_BGNBD.items():
        assert getattr(cdnow_fit.params, name) == pytest.approx(published, abs=0.005), name
    assert cdnow_fit.log_likelihood == pytest.approx(PUBLISHED_BGNBD_LL, abs=0.05)


def test_cdnow_bgnbd_grouped_equals_ungrouped(cdnow, cdnow_fit):
    ungrouped = fit_bgnbd(cdnow["x"], cdnow["tx"], cdnow["T"], weights=np.ones(len(cdnow)))
    default = fit_bgnbd(cdnow["x"], cdnow["tx"], cdnow["T"])
    for fit in (ungrouped, default):
        assert fit.converged
        for name, value in cdnow_fit.params.to_dict().items():
            assert getattr(fit.params, name) == pytest.approx(value, rel=1e-6), name
        assert fit.log_likelihood == pytest.approx(cdnow_fit.log_likelihood, rel=1e-10)


def test_cdnow_gamma_gamma_reproduces_published_estimates(cdnow, cdnow_gg_fit):
    fit = cdnow_gg_fit
    assert fit.converged, fit.message
    assert fit.n_customers == 946
    for name, published in PUBLISHED_GG.items():
        assert getattr(fit.params, name) == pytest.approx(published, abs=0.005), name
    rep = cdnow[cdnow["x"] > 0]
    ungrouped = fit_gamma_gamma(rep["x"], rep["m"], weights=np.ones(len(rep)))
    for name, value in fit.params.to_dict().items():
        assert getattr(ungrouped.params, name) == pytest.approx(value, rel=1e-6), name
    # Note 025: the correlation between average spend and repeat frequency is 0.11 (weak: model is usable).
    assert spend_frequency_correlation(cdnow["x"], cdnow["m"]) == pytest.approx(0.11, abs=0.005)
    grouped = _group(rep, ["x", "m"])
    assert spend_frequency_correlation(grouped["x"], grouped["m"], grouped["n"]) == pytest.approx(
        spend_frequency_correlation(rep["x"], rep["m"]), rel=1e-12
    )


def test_cdnow_holdout_forecast(cdnow, cdnow_fit):
    """Sum over customers of the expected purchases in the 39-week holdout vs the 1,882 observed."""
    expected = bgnbd_expected_purchases(cdnow_fit.params, 39.0, cdnow["x"], cdnow["tx"], cdnow["T"])
    total, actual = float(expected.sum()), float(cdnow["holdout"].sum())
    print(f"CDNOW holdout: expected {total:.1f} vs actual {actual:.0f} ({total / actual - 1:+.1%})")
    assert actual == 1882
    assert abs(total / actual - 1) < 0.15
    assert total == pytest.approx(1653.4, abs=0.5)  # regression value for the published parameters' fit


# ------------------------------------------------------------------------------------------------
# Cross-checks: lifetimes (same parameters) and an arbitrary-precision evaluation of eq. (10)
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lifetimes_models(cdnow_fit, cdnow_gg_fit):
    lifetimes = pytest.importorskip("lifetimes")
    bgf = lifetimes.BetaGeoFitter()
    bgf.params_ = pd.Series(cdnow_fit.params.to_dict())
    ggf = lifetimes.GammaGammaFitter()
    ggf.params_ = pd.Series(cdnow_gg_fit.params.to_dict())
    return lifetimes, bgf, ggf


def test_predictions_match_lifetimes(cdnow, cdnow_fit, cdnow_gg_fit, lifetimes_models):
    _, bgf, ggf = lifetimes_models
    params = cdnow_fit.params
    x, tx, T = cdnow["x"].to_numpy(), cdnow["tx"].to_numpy(), cdnow["T"].to_numpy()
    for t in (1.0, 39.0, 104.0):
        ours = bgnbd_expected_purchases(params, t, x, tx, T)
        ref = bgf.conditional_expected_number_of_purchases_up_to_time(t, x, tx, T)
        np.testing.assert_allclose(ours, ref, rtol=1e-6)
    np.testing.assert_allclose(bgnbd_probability_alive(params, x, tx, T), bgf.conditional_probability_alive(x, tx, T), rtol=1e-6)
    # A brand-new customer (x = 0, T = 0) has the unconditional expectation, eq. (9).
    ts = np.array([1.0, 10.0, 39.0, 78.0])
    np.testing.assert_allclose(bgnbd_expected_purchases(params, ts, 0, 0, 0), bgf.expected_number_of_purchases_up_to_time(ts), rtol=1e-6)
    rep = cdnow[cdnow["x"] > 0]
    np.testing.assert_allclose(
        gamma_gamma_expected_spend(cdnow_gg_fit.params, rep["x"], rep["m"]),
        ggf.conditional_expected_average_profit(rep["x"], rep["m"]),
        rtol=1e-6,
    )


def test_log_likelihood_and_fit_match_lifetimes(cdnow, cdnow_fit, lifetimes_models):
    lifetimes, bgf, _ = lifetimes_models
    x, tx, T = cdnow["x"].to_numpy(), cdnow["tx"].to_numpy(), cdnow["T"].to_numpy()
    p = cdnow_fit.params
    mean_nll = bgf._negative_log_likelihood(np.log([p.r, p.alpha, p.a, p.b]), x, tx, T, np.ones_like(x), 0.0)
    assert bgnbd_log_likelihood(p, x, tx, T) == pytest.approx(-mean_nll * len(x), rel=1e-10)
    ref = lifetimes.BetaGeoFitter().fit(x, tx, T)
    for name, value in p.to_dict().items():
        assert ref.params_[name] == pytest.approx(value, rel=1e-4), name


def _eq10_mpmath(params: BetaGeoParams, t, x, tx, T) -> float:
    """Eq. (10) of Fader, Hardie & Lee (2005), evaluated directly at 50 significant digits."""
    mp = pytest.importorskip("mpmath")
    with mp.workdps(50):
        r, alpha, a, b = (mp.mpf(v) for v in (params.r, params.alpha, params.a, params.b))
        x, tx, T, t = mp.mpf(x), mp.mpf(tx), mp.mpf(T), mp.mpf(t)
        z = t / (alpha + T + t)
        bracket = 1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * mp.hyp2f1(r + x, b + x, a + b + x - 1, z)
        den = 1 + (a / (b + x - 1)) * ((alpha + T) / (alpha + tx)) ** (r + x) if x > 0 else 1
        return float((a + b + x - 1) / (a - 1) * bracket / den)


@pytest.mark.parametrize(
    "params",
    [
        BetaGeoParams(0.2426, 4.4136, 0.7929, 2.4259),  # CDNOW (a < 1)
        BetaGeoParams(1.7, 30.0, 2.5, 6.0),  # a > 1
        BetaGeoParams(0.3, 2.0, 0.3, 0.4),  # a + b < 1: the x = 0 hypergeometric has c < 0
    ],
)
def test_expected_purchases_match_high_precision_formula(params):
    cases = [  # (t, x, tx, T)
        (39.0, 0, 0.0, 30.0),
        (39.0, 0, 0.0, 0.0),
        (0.5, 2, 10.0, 30.0),
        (39.0, 1, 30.0, 30.0),  # T == recency
        (39.0, 12, 20.0, 38.0),
        (52.0, 150, 35.0, 39.0),
        (52.0, 1000, 39.0, 39.0),  # very heavy buyer: the direct formula overflows in double precision
        (520.0, 3000, 38.5, 39.0),
    ]
    for t, x, tx, T in cases:
        ours = float(bgnbd_expected_purchases(params, t, x, tx, T))
        assert ours == pytest.approx(_eq10_mpmath(params, t, x, tx, T), rel=1e-8), (t, x, tx, T)


# ------------------------------------------------------------------------------------------------
# Simulation: parameter recovery and calibrated forecasts
# ------------------------------------------------------------------------------------------------

TRUE = BetaGeoParams(r=0.25, alpha=4.0, a=0.8, b=2.5)


@pytest.fixture(scope="module")
def simulated():
    rng = np.random.default_rng(20240601)
    T = rng.integers(1, 39 * 7 + 1, size=50_000) / 7.0  # first purchases spread over 39 weeks, in weeks
    x, tx, holdout = simulate_bgnbd(TRUE, T, holdout=39.0, rng=rng)
    tx = np.round(tx * 7.0) / 7.0  # purchases happen on days
    return x, tx, T, holdout


def test_simulated_parameters_are_recovered(simulated):
    x, tx, T, _ = simulated
    df = _group(pd.DataFrame({"x": x, "tx": tx, "T": T}), ["x", "tx", "T"])
    fit = fit_bgnbd(df["x"], df["tx"], df["T"], weights=df["n"])
    assert fit.converged and fit.n_customers == 50_000
    got = fit.params
    # Tolerances reflect the sampling error with 50k customers (a and b are the least precise, and
    # strongly correlated; their mean a/(a+b) is precise).
    assert got.r == pytest.approx(TRUE.r, rel=0.08)
    assert got.alpha == pytest.approx(TRUE.alpha, rel=0.08)
    assert got.a == pytest.approx(TRUE.a, rel=0.25)
    assert got.b == pytest.approx(TRUE.b, rel=0.30)
    assert got.mean_dropout_probability == pytest.approx(TRUE.mean_dropout_probability, rel=0.05)
    assert got.mean_purchase_rate == pytest.approx(TRUE.mean_purchase_rate, rel=0.05)
    ungrouped = fit_bgnbd(x, tx, T)
    for name, value in got.to_dict().items():
        assert getattr(ungrouped.params, name) == pytest.approx(value, rel=1e-6), name


def test_simulated_holdout_matches_conditional_expectation(simulated):
    x, tx, T, holdout = simulated
    expected = bgnbd_expected_purchases(TRUE, 39.0, x, tx, T)
    assert expected.sum() == pytest.approx(holdout.sum(), rel=0.03)
    # and per calibration-frequency bucket for the bulk of customers
    for lo, hi in [(0, 0), (1, 1), (2, 3), (4, 7)]:
        sel = (x >= lo) & (x <= hi)
        assert expected[sel].mean() == pytest.approx(holdout[sel].mean(), rel=0.06), (lo, hi)


def test_time_unit_only_rescales_alpha(cdnow, cdnow_fit):
    days = fit_bgnbd(cdnow["x"], cdnow["tx"] * 7, cdnow["T"] * 7)
    p = cdnow_fit.params
    assert days.params.alpha == pytest.approx(p.alpha * 7, rel=1e-5)
    for name in ("r", "a", "b"):
        assert getattr(days.params, name) == pytest.approx(getattr(p, name), rel=1e-5)


def test_gamma_gamma_recovers_simulated_parameters():
    rng = np.random.default_rng(7)
    p, q, v = 6.0, 4.0, 15.0
    x = rng.geometric(0.3, size=30_000).astype(float)  # repeat purchases >= 1
    nu = rng.gamma(q, 1.0 / v, size=x.size)  # per-customer spend rate ν ~ Gamma(q, rate v)
    m = rng.gamma(p * x, 1.0 / (nu * x))  # mean of x Gamma(p, rate ν) spends
    fit = fit_gamma_gamma(x, m)
    assert fit.converged
    assert fit.params.p == pytest.approx(p, rel=0.1)
    assert fit.params.q == pytest.approx(q, rel=0.1)
    assert fit.params.v == pytest.approx(v, rel=0.15)
    assert fit.params.population_mean_spend == pytest.approx(p * v / (q - 1), rel=0.05)
    assert abs(spend_frequency_correlation(x, m)) < 0.03


# ------------------------------------------------------------------------------------------------
# Edge cases and API
# ------------------------------------------------------------------------------------------------


def test_no_repeat_buyers_is_flagged_but_predictions_stay_finite():
    T = np.linspace(1.0, 39.0, 100)
    zeros = np.zeros_like(T)
    for penalizer in (0.0, 0.01):
        fit = fit_bgnbd(zeros, zeros, T, penalizer=penalizer)
        assert not fit.converged and "no repeat" in fit.message
        assert np.all(np.isfinite(list(fit.params.to_dict().values())))
        np.testing.assert_array_equal(bgnbd_probability_alive(fit.params, zeros, zeros, T), 1.0)
        e = bgnbd_expected_purchases(fit.params, 39.0, zeros, zeros, T)
        assert np.all(np.isfinite(e)) and np.all(e >= 0)


def test_probability_alive_edge_cases():
    p = BetaGeoParams(0.25, 4.0, 0.8, 2.5)
    # x = 0: always alive (customers can only leave right after a repeat purchase); recency is ignored.
    assert bgnbd_probability_alive(p, 0, 0.0, 30.0) == 1.0
    # Last purchase just now (T == recency): P = 1 / (1 + a/(b+x-1)), whatever r, alpha.
    for x in (1, 5, 100):
        assert bgnbd_probability_alive(p, x, 30.0, 30.0) == pytest.approx(1 / (1 + p.a / (p.b + x - 1)), rel=1e-14)
    # Very heavy buyer who went quiet: P(alive) underflows to 0 cleanly (no NaN / warning).
    big = bgnbd_probability_alive(p, [1e4, 1e6], [10.0, 10.0], [39.0, 39.0])
    assert np.all(np.isfinite(big)) and np.all(big < 1e-100)
    # Very heavy buyer who just bought: alive, buying at the posterior mean rate (r+x)/(alpha+T) per
    # week, less the little chance of leaving after one of those ~23k purchases.
    e = float(bgnbd_expected_purchases(p, 1.0, 1e6, 39.0, 39.0))
    assert e == pytest.approx((p.r + 1e6) / (p.alpha + 39.0), rel=0.02)


def test_expected_purchases_shape_and_monotonicity():
    p = BetaGeoParams(0.25, 4.0, 0.8, 2.5)
    ts = np.linspace(0.0, 200.0, 21)
    e = bgnbd_expected_purchases(p, ts, 3, 20.0, 30.0)
    assert e.shape == ts.shape and e[0] == 0.0
    assert np.all(np.diff(e) > 0)
    grid = bgnbd_expected_purchases(p, 10.0, np.array([[0], [2]]), np.array([[0.0], [5.0]]), np.array([[10.0, 20.0, 30.0]]))
    assert grid.shape == (2, 3)


def test_expected_purchases_is_continuous_through_a_equal_one():
    values = [float(bgnbd_expected_purchases(BetaGeoParams(0.25, 4.0, a, 2.5), 39.0, 3, 20.0, 30.0)) for a in (0.999, 1.0, 1.001)]
    assert all(math.isfinite(v) for v in values)
    assert values[0] > values[1] > values[2]
    assert values[1] == pytest.approx((values[0] + values[2]) / 2, rel=1e-6)


def test_heavy_buyers_in_the_fit():
    x = np.r_[np.zeros(500), np.ones(300), np.full(150, 4.0), [2000.0, 50000.0]]
    tx = np.r_[np.zeros(500), np.full(300, 10.0), np.full(150, 25.0), [38.0, 39.0]]
    T = np.full(x.size, 39.0)
    fit = fit_bgnbd(x, tx, T)
    assert fit.converged and math.isfinite(fit.log_likelihood)


def test_gamma_gamma_expected_spend_blends_towards_population_mean():
    gg = GammaGammaParams(p=6.25, q=3.74, v=15.44)
    pop = gg.p * gg.v / (gg.q - 1)
    out = gamma_gamma_expected_spend(gg, [0, 0, 1, 10, 1000], [np.nan, 123.0, 50.0, 50.0, 50.0])
    assert out[0] == pytest.approx(pop) and out[1] == pytest.approx(pop)
    assert pop < out[2] < out[3] < out[4] < 50.0  # pop ≈ 35.2: more purchases, closer to the own mean
    assert out[4] == pytest.approx(50.0, rel=0.01)
    assert np.isnan(gamma_gamma_expected_spend(GammaGammaParams(1.0, 0.9, 10.0), 0, np.nan))


def test_zero_weights_equal_dropping_rows(cdnow):
    w = np.ones(len(cdnow))
    w[::3] = 0.0
    keep = w > 0
    a = fit_bgnbd(cdnow["x"], cdnow["tx"], cdnow["T"], weights=w)
    b = fit_bgnbd(cdnow["x"][keep], cdnow["tx"][keep], cdnow["T"][keep])
    assert a.params.to_dict() == pytest.approx(b.params.to_dict(), rel=1e-6)
    assert a.n_customers == b.n_customers == keep.sum()


def test_penalizer_shrinks_parameters(cdnow, cdnow_fit):
    pen = fit_bgnbd(cdnow["x"], cdnow["tx"], cdnow["T"], penalizer=0.01)
    assert pen.converged
    assert pen.params.alpha < cdnow_fit.params.alpha
    assert pen.log_likelihood < cdnow_fit.log_likelihood


def test_initial_values_and_params_round_trip(cdnow, cdnow_fit):
    d = cdnow_fit.params.to_dict()
    assert BetaGeoParams.from_dict(d) == cdnow_fit.params
    assert set(d) == {"r", "alpha", "a", "b"} and all(type(v) is float for v in d.values())
    gg = GammaGammaParams(6.25, 3.74, 15.44)
    assert GammaGammaParams.from_dict(gg.to_dict()) == gg
    refit = fit_bgnbd(cdnow["x"], cdnow["tx"], cdnow["T"], initial={"r": 2.0, "alpha": 50.0, "a": 3.0, "b": 0.5})
    assert refit.params.to_dict() == pytest.approx(d, rel=1e-5)


def test_invalid_inputs_are_rejected():
    with pytest.raises(ValueError, match="recency"):
        fit_bgnbd([1, 2], [5.0, 3.0], [4.0, 10.0])
    with pytest.raises(ValueError, match="non-negative"):
        fit_bgnbd([1, 2], [1.0, 3.0], [4.0, 10.0], weights=[1, -1])
    with pytest.raises(ValueError, match="same length"):
        fit_bgnbd([1, 2], [1.0], [4.0, 10.0])
    with pytest.raises(ValueError, match="NaN"):
        fit_bgnbd([1, np.nan], [1.0, 2.0], [4.0, 10.0])
    with pytest.raises(ValueError, match="repeat buyers"):
        fit_gamma_gamma([0, 2], [10.0, 12.0])
    with pytest.raises(ValueError, match="monetary"):
        fit_gamma_gamma([1, 2], [0.0, 12.0])


def test_analytic_gradients_match_finite_differences(cdnow):
    from scipy.optimize import approx_fprime

    from clv_assets.btyd import _bgnbd_nll_and_grad, _BGNBDData, _gg_nll_and_grad, _GGData

    w = np.arange(len(cdnow)) % 3 + 1.0
    bg = _BGNBDData(cdnow["x"].to_numpy(), cdnow["tx"].to_numpy(), cdnow["T"].to_numpy(), w)
    for theta in (np.log([0.24, 4.4, 0.79, 2.4]), np.zeros(4), np.log([2.0, 0.5, 3.0, 0.2])):
        numeric = approx_fprime(theta, lambda t: _bgnbd_nll_and_grad(t, bg, 0.01)[0], 1e-7)
        np.testing.assert_allclose(_bgnbd_nll_and_grad(theta, bg, 0.01)[1], numeric, rtol=1e-4, atol=1e-6)
    rep = cdnow[cdnow["x"] > 0]
    gg = _GGData(rep["x"].to_numpy(), rep["m"].to_numpy(), np.ones(len(rep)))
    for theta in (np.log([6.25, 3.74, 15.4]), np.zeros(3), np.log([0.3, 8.0, 200.0])):
        numeric = approx_fprime(theta, lambda t: _gg_nll_and_grad(t, gg, 0.01)[0], 1e-7)
        np.testing.assert_allclose(_gg_nll_and_grad(theta, gg, 0.01)[1], numeric, rtol=1e-4, atol=1e-6)
