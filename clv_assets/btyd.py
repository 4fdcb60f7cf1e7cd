"""Buy-till-you-die models on sufficient statistics: BG/NBD (how often, and whether still active) and
Gamma-Gamma (how much per purchase), in plain numpy/scipy.

What the numbers mean to a marketer
-----------------------------------
Each customer is summarised by three numbers, all measured in one time unit (days, weeks, ...):

- ``frequency`` *x*: the number of **repeat** purchase occasions (purchase days after the first one);
- ``recency`` *t_x*: the age of the customer at the last purchase (time from first to last purchase;
  0 when x = 0);
- ``T``: the age of the customer at the end of the observation window (time since the first purchase).

The BG/NBD model (Fader, Hardie & Lee 2005, "Counting Your Customers the Easy Way: An Alternative to the
Pareto/NBD Model", *Marketing Science* 24(2), 275-284) says that while a customer is active they buy at
their own steady rate λ, and after each purchase they may quietly leave for good with their own
probability p. Across the customer base

- λ ~ Gamma(shape ``r``, rate ``alpha``): the average customer buys ``r / alpha`` times per time unit;
  a small ``r`` means purchase rates vary a lot between customers (a few heavy buyers, many light ones);
- p ~ Beta(``a``, ``b``): the average chance of leaving after a purchase is ``a / (a + b)``.

From these, per customer: the **probability the customer is still active** ("alive") and the **expected
number of purchases in the next t time units** — the basis of predicted CLV and of churn-risk lists.

The Gamma-Gamma model (Fader & Hardie 2013, "The Gamma-Gamma Model of Monetary Value",
http://www.brucehardie.com/notes/025/; first in Fader, Hardie & Lee 2005, "RFM and CLV", *JMR* 42(4))
says each customer's order values scatter around their own typical order value, and typical order values
vary across customers. Its parameters are ``p``, ``q`` and the scale ``v`` (written γ in the paper); the
population average order value is ``p * v / (q - 1)`` (finite only when q > 1). Per customer it gives the
**expected average order value**: a blend of the customer's own observed mean and the population mean,
leaning on the customer's own mean the more purchases we have seen. It assumes order value does not
depend on purchase frequency: check that with :func:`spend_frequency_correlation` (should be near 0).

Sufficient statistics with weights
----------------------------------
The likelihoods depend on a customer only through (x, t_x, T) (and (x, m) for Gamma-Gamma), so customers
with identical statistics can be grouped upstream (e.g. a Spark ``groupBy(...).count()``) and passed once
with their ``count`` as weight. Fitting then costs as much as the number of distinct rows, not the number
of customers, and gives exactly the same estimates as fitting the ungrouped data. The special functions
are evaluated only on the distinct frequencies, so even ungrouped input is cheap.

Fitting is maximum likelihood in log-parameter space (so all parameters stay positive) with
``scipy.optimize.minimize`` (L-BFGS-B) and analytic gradients. The objective is the **mean** negative
log-likelihood per customer plus ``penalizer * sum(params**2)`` — the same convention as the ``lifetimes``
package, so a given ``penalizer`` means the same thing in both.

Discounted CLV over a horizon is left to the caller (see :func:`bgnbd_expected_purchases`): expected
purchases in consecutive periods times expected spend, each period discounted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.special import digamma, expit, gammaln, hyp2f1

__all__ = [
    "BetaGeoParams",
    "BetaGeoFit",
    "GammaGammaParams",
    "GammaGammaFit",
    "fit_bgnbd",
    "bgnbd_log_likelihood",
    "bgnbd_expected_purchases",
    "bgnbd_expected_purchases_if_alive",
    "bgnbd_probability_alive",
    "simulate_bgnbd",
    "fit_gamma_gamma",
    "gamma_gamma_log_likelihood",
    "gamma_gamma_expected_spend",
    "spend_frequency_correlation",
]

# Log-parameter bounds for the optimiser: parameters between ~1e-9 and ~1e9 cover any sensible time unit
# and currency; an estimate at a bound is reported as not converged.
_LOG_BOUND = 20.7
# Within this distance of a = 1 the expected-purchases formula (a removable 0/0) is interpolated.
_A_NEAR_ONE = 1e-4


def _dot(u: np.ndarray, v: np.ndarray) -> float:
    """sum(u * v) for 1-D arrays without BLAS: multi-threaded BLAS ``ddot`` spin-waits for its threads
    and gets ~10x slower when the cores are busy (e.g. next to Spark executors); einsum stays single-threaded."""
    return float(np.einsum("i,i->", u, v))


# --------------------------------------------------------------------------------------------------
# Parameters and fit results
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BetaGeoParams:
    """BG/NBD parameters.

    ``r``, ``alpha``: shape and rate of the Gamma distribution of purchase rates across customers (mean
    rate ``r / alpha`` purchases per time unit, in the time unit of the data it was fitted on).
    ``a``, ``b``: Beta distribution of the probability of leaving after each purchase (mean ``a / (a + b)``).
    """

    r: float
    alpha: float
    a: float
    b: float

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BetaGeoParams:
        return cls(r=float(d["r"]), alpha=float(d["alpha"]), a=float(d["a"]), b=float(d["b"]))

    @property
    def mean_purchase_rate(self) -> float:
        """Average purchases per time unit of an active customer, r / alpha."""
        return self.r / self.alpha

    @property
    def mean_dropout_probability(self) -> float:
        """Average probability of leaving after a purchase, a / (a + b)."""
        return self.a / (self.a + self.b)


@dataclass(frozen=True)
class GammaGammaParams:
    """Gamma-Gamma spend parameters: ``p``, ``q`` (shapes) and ``v`` (scale, γ in Fader & Hardie 2013)."""

    p: float
    q: float
    v: float

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GammaGammaParams:
        return cls(p=float(d["p"]), q=float(d["q"]), v=float(d["v"]))

    @property
    def population_mean_spend(self) -> float:
        """Average order value across customers, p * v / (q - 1); ``inf`` when q <= 1 (no finite mean)."""
        return self.p * self.v / (self.q - 1.0) if self.q > 1.0 else float("inf")


@dataclass(frozen=True)
class BetaGeoFit:
    """A fitted BG/NBD model: ``params``; ``log_likelihood`` (total over customers, unpenalised);
    ``n_customers`` (sum of weights); ``n_rows`` (distinct rows fitted); ``converged``; optimiser ``message``."""

    params: BetaGeoParams
    log_likelihood: float
    n_customers: float
    n_rows: int
    converged: bool
    message: str = ""


@dataclass(frozen=True)
class GammaGammaFit:
    """A fitted Gamma-Gamma model; fields as in :class:`BetaGeoFit` (customers are repeat buyers only)."""

    params: GammaGammaParams
    log_likelihood: float
    n_customers: float
    n_rows: int
    converged: bool
    message: str = ""


# --------------------------------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------------------------------


def _as_float(name: str, values: Any) -> np.ndarray:
    arr = np.asarray(values, dtype=float).ravel()
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _weights(weights: Any, n: int) -> np.ndarray:
    if weights is None:
        return np.ones(n)
    w = _as_float("weights", weights)
    if w.shape != (n,):
        raise ValueError(f"weights has {w.size} values for {n} rows")
    if np.any(w < 0):
        raise ValueError("weights must be non-negative")
    return w


def _rfm(frequency: Any, recency: Any, T: Any, weights: Any) -> tuple[np.ndarray, ...]:
    x, tx, age = _as_float("frequency", frequency), _as_float("recency", recency), _as_float("T", T)
    if not (x.shape == tx.shape == age.shape):
        raise ValueError(f"frequency, recency and T must have the same length ({x.size}, {tx.size}, {age.size})")
    w = _weights(weights, x.size)
    keep = w > 0
    x, tx, age, w = x[keep], tx[keep], age[keep], w[keep]
    if x.size == 0:
        raise ValueError("no customers to fit (empty input or all weights zero)")
    if np.any(x < 0):
        raise ValueError("frequency must be >= 0")
    if np.any(tx < 0) or np.any(tx > age * (1 + 1e-12)):
        raise ValueError("recency must satisfy 0 <= recency <= T")
    if np.any((x > 0) & (age <= 0)):
        raise ValueError("customers with repeat purchases must have T > 0")
    return x, tx, age, w


# --------------------------------------------------------------------------------------------------
# BG/NBD
# --------------------------------------------------------------------------------------------------


class _BGNBDData:
    """Weighted (x, t_x, T) prepared once per fit.

    Functions of x alone (gammaln, digamma, ...) are evaluated on the distinct x values, and the logs of
    alpha + T and alpha + t_x on the distinct T and t_x values, then gathered per row: per evaluation only
    the repeat buyers' mixture term costs O(rows).
    """

    def __init__(self, x: np.ndarray, tx: np.ndarray, T: np.ndarray, w: np.ndarray):
        self.W = float(w.sum())
        self.sum_w_x = _dot(w, x)
        self.ux, ix = np.unique(x, return_inverse=True)
        self.wx = np.bincount(ix, weights=w, minlength=self.ux.size)  # customers per distinct x
        self.uT, iT = np.unique(T, return_inverse=True)
        self.wT = np.bincount(iT, weights=w, minlength=self.uT.size)  # customers per distinct T
        self.wxT = np.bincount(iT, weights=w * x, minlength=self.uT.size)  # their repeat purchases
        # Only repeat buyers carry the "left right after the last purchase" term.
        rep = x > 0
        self.ux_safe = np.where(self.ux > 0, self.ux, 1.0)  # b + x - 1 > 0; x = 0 never used there
        self.xr, self.wr, self.ix_r, self.iT_r = x[rep], w[rep], ix[rep], iT[rep]
        self.utx, self.itx_r = np.unique(tx[rep], return_inverse=True)


def _bgnbd_nll_and_grad(
    log_params: np.ndarray, d: _BGNBDData, penalizer: float, want_grad: bool = True
) -> tuple[float, np.ndarray]:
    """Mean negative log-likelihood (+ penalty) and its gradient w.r.t. the log-parameters.

    Per customer (Fader, Hardie & Lee 2005, eq. 6; Hardie's note 004, section 7)::

        ln L = A1 + A2 + A3 + log(1 + [x>0] exp(D)),         D = A4 - A3
        A1 = lnΓ(r+x) - lnΓ(r) + r ln α
        A2 = lnΓ(a+b) + lnΓ(b+x) - lnΓ(b) - lnΓ(a+b+x)
        A3 = -(r+x) ln(α+T)
        A4 = ln a - ln(b+x-1) - (r+x) ln(α+t_x)

    ``log(1 + exp(D))`` is evaluated as ``max(D, 0) + log1p(exp(-|D|))``, stable for any D.
    """
    r, alpha, a, b = np.exp(log_params)
    ux, wx, W = d.ux, d.wx, d.W

    # Terms depending on x only: summed over distinct x with their customer counts.
    s_A1A2 = _dot(wx, gammaln(r + ux) + gammaln(b + ux) - gammaln(a + b + ux)) + W * (
        -gammaln(r) + r * np.log(alpha) + gammaln(a + b) - gammaln(b)
    )
    # A3 summed over distinct T: sum_i w_i (r + x_i) ln(α + T_i).
    log_aT = np.log(alpha + d.uT)
    wrx_T = r * d.wT + d.wxT
    s_A3 = -_dot(wrx_T, log_aT)

    # Repeat buyers: the mixture term log(1 + exp(D)).
    xr = d.xr
    log_ratio = log_aT[d.iT_r] - np.log(alpha + d.utx)[d.itx_r]  # ln((α+T)/(α+t_x)) >= 0
    D = (np.log(a) - np.log(b + d.ux_safe - 1.0))[d.ix_r] + (r + xr) * log_ratio
    e = np.exp(-np.abs(D))
    s_mix = _dot(d.wr, np.maximum(D, 0.0) + np.log1p(e))

    ll = s_A1A2 + s_A3 + s_mix
    nll = -ll / W + penalizer * (r * r + alpha * alpha + a * a + b * b)
    if not want_grad:
        return nll, np.empty(4)

    # d ln L / d param = dA1 + dA2 + dA3 + s * (dA4 - dA3), with s = sigmoid(D) for repeat buyers.
    s = d.wr * np.where(D >= 0, 1.0, e) / (1.0 + e)  # weighted sigmoid(D)
    s_x = np.bincount(d.ix_r, weights=s, minlength=ux.size)  # ... summed per distinct x
    inv_aT = 1.0 / (alpha + d.uT)
    inv_atx = 1.0 / (alpha + d.utx)
    g_r = _dot(wx, digamma(r + ux)) + W * (np.log(alpha) - digamma(r)) - _dot(d.wT, log_aT) + _dot(s, log_ratio)
    g_alpha = W * r / alpha - _dot(wrx_T, inv_aT) + _dot(s * (r + xr), inv_aT[d.iT_r] - inv_atx[d.itx_r])
    dg_ab = digamma(a + b)
    dg_abx = digamma(a + b + ux)
    g_a = W * dg_ab - _dot(wx, dg_abx) + s_x.sum() / a
    g_b = W * (dg_ab - digamma(b)) + _dot(wx, digamma(b + ux) - dg_abx) - _dot(s_x, 1.0 / (b + d.ux_safe - 1.0))

    params = np.array([r, alpha, a, b])
    grad_ll = np.array([g_r, g_alpha, g_a, g_b])
    # chain rule to log-parameters: d/dθ = p d/dp
    grad = -(grad_ll * params) / W + 2.0 * penalizer * params * params
    return nll, grad


def _minimize(fun, x0: np.ndarray, args: tuple) -> Any:
    bounds = [(-_LOG_BOUND, _LOG_BOUND)] * len(x0)
    return minimize(
        fun,
        x0,
        args=args,
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"maxiter": 2000, "ftol": 1e-15, "gtol": 1e-10, "maxcor": 20},
    )


def _converged(res: Any) -> bool:
    """A finite optimum inside the bounds where the gradient (of the mean log-likelihood) is ~0.

    The optimiser's own ``success`` is not required: with tolerances at machine precision L-BFGS-B can end
    with "ABNORMAL" (no further decrease found) when it is already at the optimum.
    """
    at_bound = np.any(np.abs(res.x) >= _LOG_BOUND - 1e-6)
    finite = np.all(np.isfinite(res.x)) and np.isfinite(res.fun)
    return bool(finite and not at_bound and np.max(np.abs(res.jac)) < 1e-6)


def fit_bgnbd(
    frequency: Any,
    recency: Any,
    T: Any,
    weights: Any = None,
    penalizer: float = 0.0,
    initial: BetaGeoParams | dict[str, float] | None = None,
) -> BetaGeoFit:
    """Fit the BG/NBD model by maximum likelihood on (optionally grouped) customer statistics.

    ``frequency``, ``recency``, ``T``: one row per customer, or per group of customers with identical
    statistics, in one time unit (the fitted ``alpha`` is in that unit). ``weights``: customers per row
    (default 1). ``penalizer``: L2 penalty on the parameters added to the mean negative log-likelihood
    (as in ``lifetimes``); 0 is plain maximum likelihood, small values (0.001-0.1) stabilise fits on
    little or degenerate data (e.g. nobody has repeat purchases) at the cost of shrinking parameters.
    ``initial``: starting values (default: r=1, a=1, b=1 and alpha matched to the observed purchase rate).

    ``converged`` is False when the optimiser stopped early, a parameter ran to its bound (1e-9 / 1e9),
    the gradient is not ~0, or nobody made a repeat purchase — then the parameters should not be trusted
    (more data, or a penalizer, may help).
    """
    x, tx, age, w = _rfm(frequency, recency, T, weights)
    data = _BGNBDData(x, tx, age, w)
    if initial is not None:
        p0 = initial if isinstance(initial, BetaGeoParams) else BetaGeoParams.from_dict(initial)
        x0 = np.log([p0.r, p0.alpha, p0.a, p0.b])
    else:
        # With r = 1 the mean rate is 1/alpha: start alpha at (customer time) / (repeat purchases).
        exposure = _dot(w, age) / data.W
        rate = (data.sum_w_x / data.W + 0.5) / max(exposure, 1e-12)
        x0 = np.log([1.0, 1.0 / max(rate, 1e-12), 1.0, 1.0])
        x0 = np.clip(x0, -_LOG_BOUND + 1, _LOG_BOUND - 1)
    res = _minimize(_bgnbd_nll_and_grad, x0, (data, float(penalizer)))
    r, alpha, a, b = np.exp(res.x)
    params = BetaGeoParams(r=float(r), alpha=float(alpha), a=float(a), b=float(b))
    ll = -_bgnbd_nll_and_grad(res.x, data, 0.0, want_grad=False)[0] * data.W  # unpenalised
    converged, message = _converged(res), str(res.message)
    if data.sum_w_x == 0:
        # Without any repeat purchase the likelihood only rises as r -> 0 and does not involve a, b at all.
        converged, message = False, "no repeat purchases: the BG/NBD parameters are not identified"
    return BetaGeoFit(
        params=params,
        log_likelihood=ll,
        n_customers=float(data.W),
        n_rows=int(x.size),
        converged=converged,
        message=message,
    )


def bgnbd_log_likelihood(params: BetaGeoParams, frequency: Any, recency: Any, T: Any, weights: Any = None) -> float:
    """Total (weighted) BG/NBD log-likelihood of the data under ``params``, without any penalty."""
    x, tx, age, w = _rfm(frequency, recency, T, weights)
    data = _BGNBDData(x, tx, age, w)
    nll, _ = _bgnbd_nll_and_grad(np.log([params.r, params.alpha, params.a, params.b]), data, 0.0, want_grad=False)
    return float(-nll * data.W)


def _broadcast_rfm(frequency: Any, recency: Any, T: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, tx, age = np.broadcast_arrays(
        np.asarray(frequency, dtype=float), np.asarray(recency, dtype=float), np.asarray(T, dtype=float)
    )
    return x, tx, age


def _log_odds_dropped(params: BetaGeoParams, x: np.ndarray, tx: np.ndarray, T: np.ndarray) -> np.ndarray:
    """D = ln[ a/(b+x-1) * ((α+T)/(α+t_x))^(r+x) ]: log-odds that a repeat buyer has left (0-safe for x=0)."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    rep = x > 0
    xs = np.where(rep, x, 1.0)  # keeps b+x-1 > 0 on x=0 rows, whose value is discarded
    D = np.log(a) - np.log(b + xs - 1.0) + (r + xs) * (np.log(alpha + T) - np.log(alpha + tx))
    return np.where(rep, D, -np.inf)


def bgnbd_probability_alive(params: BetaGeoParams, frequency: Any, recency: Any, T: Any) -> np.ndarray:
    """Probability that a customer with history (x, t_x, T) is still active at T.

    Customers with no repeat purchases are alive with probability 1 (in the BG/NBD, customers can only
    leave right after a purchase). Among repeat buyers, the longer the silence since the last purchase
    relative to their usual pace, the lower the probability. (Fader, Hardie & Lee 2005, note 021:
    P(alive) = 1 / (1 + [x>0] a/(b+x-1) ((α+T)/(α+t_x))^(r+x)), evaluated as a logistic of the log-odds.)
    """
    x, tx, age = _broadcast_rfm(frequency, recency, T)
    return expit(-_log_odds_dropped(params, x, tx, age))


def bgnbd_expected_purchases(params: BetaGeoParams, t: Any, frequency: Any, recency: Any, T: Any) -> np.ndarray:
    """Expected number of (repeat) purchases in the next ``t`` time units by a customer with history (x, t_x, T).

    This is the "how many more orders will this customer place" number behind predicted CLV: multiply by
    the expected order value (:func:`gamma_gamma_expected_spend`). ``t`` is in the time unit the model was
    fitted in and broadcasts against the customer arrays. For discounted CLV over a horizon, call it for
    cumulative horizons t_1 < t_2 < ... and discount the differences (purchases per period).

    Fader, Hardie & Lee (2005), eq. (10)::

        E[Y(t) | x, t_x, T] = (a+b+x-1)/(a-1) * [1 - ((α+T)/(α+T+t))^(r+x) 2F1(r+x, b+x; a+b+x-1; z)]
                              / (1 + [x>0] a/(b+x-1) ((α+T)/(α+t_x))^(r+x)),       z = t/(α+T+t)

    Numerics: with Euler's transformation 2F1(A,B;C;z) = (1-z)^(C-A-B) 2F1(C-A, C-B; C; z) the bracket is
    ``1 - (1-z)^(a-1) 2F1(a+b-1-r, a-1; a+b+x-1; z)``: the first two hypergeometric parameters no longer
    grow with x, so the series is well-behaved for heavy buyers (where the direct form overflows); the
    bracket is computed as ``-expm1(...)`` to keep precision for short horizons. The formula is a 0/0 at
    a = 1 exactly (its limit is finite): within 1e-4 of it the value is interpolated from both sides.
    """
    t_arr = np.asarray(t, dtype=float)
    x, tx, age, t_arr = np.broadcast_arrays(*_broadcast_rfm(frequency, recency, T), t_arr)
    out = bgnbd_expected_purchases_if_alive(params, t_arr, x, age) * bgnbd_probability_alive(params, x, tx, age)
    return np.where(t_arr == 0, 0.0, out)


def bgnbd_expected_purchases_if_alive(params: BetaGeoParams, t: Any, frequency: Any, T: Any) -> np.ndarray:
    """Expected purchases in the next ``t`` time units of a customer with x repeat purchases who is known to
    be active at age T: :func:`bgnbd_expected_purchases` without the P(alive) factor (which alone depends on
    the recency). The costly part (a hypergeometric function) depends on (t, x, T) only, so callers scoring
    many customers over several horizons can evaluate it once per distinct (x, T)."""
    t_arr = np.asarray(t, dtype=float)
    x, age, t_arr = np.broadcast_arrays(np.asarray(frequency, dtype=float), np.asarray(T, dtype=float), t_arr)
    if abs(params.a - 1.0) < _A_NEAR_ONE:
        # a = 1 is a removable singularity: average the two sides (error O(delta^2) ~ 1e-8 relative).
        lo = replace(params, a=1.0 - _A_NEAR_ONE)
        hi = replace(params, a=1.0 + _A_NEAR_ONE)
        w_hi = (params.a - lo.a) / (hi.a - lo.a)
        return (1 - w_hi) * _expected_purchases_bracket(lo, t_arr, x, age) + w_hi * _expected_purchases_bracket(hi, t_arr, x, age)
    return _expected_purchases_bracket(params, t_arr, x, age)


def _expected_purchases_bracket(params: BetaGeoParams, t: np.ndarray, x: np.ndarray, T: np.ndarray) -> np.ndarray:
    """Expected purchases in (T, T+t] of a customer known to be alive at T: (a+b+x-1)/(a-1) * [1 - ...]."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    z = t / (alpha + T + t)
    c = a + b + x - 1.0
    F = hyp2f1(a + b - 1.0 - r, a - 1.0, c, z)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_pow = (a - 1.0) * np.log1p(-z)
        # F > 0 whenever c > 0; only x = 0 with a + b < 1 (c < 0) can make it <= 0: no log there.
        bracket = np.where(F > 0, -np.expm1(log_pow + np.log(np.abs(F))), 1.0 - np.exp(log_pow) * F)
        return (c / (a - 1.0)) * bracket


def simulate_bgnbd(
    params: BetaGeoParams, T: Any, holdout: float = 0.0, rng: np.random.Generator | int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Simulate customers from the BG/NBD generative process (for tests, benchmarks and what-if analyses).

    ``T``: each customer's age at the end of the calibration window (first purchase at time 0).
    Returns ``(frequency, recency, holdout_purchases)``: the calibration statistics, and the number of
    repeat purchases in the following ``holdout`` time units. Recency is continuous; round it to the data's
    time resolution (e.g. whole days) to mimic real data.

    Process: λ ~ Gamma(r, rate α) and p ~ Beta(a, b) per customer; purchases arrive as a Poisson process
    with rate λ; after each repeat purchase the customer leaves with probability p, so the total number of
    repeat purchases ever made is N ~ Geometric(p) (>= 1). Calibration purchases are min(N, K) with
    K ~ Poisson(λT); given K, arrival times are uniform order statistics, so the time of the x-th of them
    is T * Beta(x, K - x + 1).
    """
    rng = np.random.default_rng(rng)
    age = np.asarray(T, dtype=float).ravel()
    n = age.size
    lam = rng.gamma(params.r, 1.0 / params.alpha, size=n)
    drop = rng.beta(params.a, params.b, size=n)
    n_life = rng.geometric(np.clip(drop, 1e-300, 1.0))
    k = rng.poisson(lam * age)
    x = np.minimum(n_life, k)
    recency = np.zeros(n)
    rep = x > 0
    recency[rep] = age[rep] * rng.beta(x[rep], k[rep] - x[rep] + 1)
    future = np.zeros(n, dtype=np.int64)
    if holdout > 0:
        alive = n_life > k
        future[alive] = np.minimum(n_life[alive] - k[alive], rng.poisson(lam[alive] * holdout))
    return x.astype(float), recency, future.astype(float)


# --------------------------------------------------------------------------------------------------
# Gamma-Gamma
# --------------------------------------------------------------------------------------------------


def _gg_data(frequency: Any, monetary: Any, weights: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, m = _as_float("frequency", frequency), _as_float("monetary", monetary)
    if x.shape != m.shape:
        raise ValueError(f"frequency and monetary must have the same length ({x.size}, {m.size})")
    w = _weights(weights, x.size)
    keep = w > 0
    x, m, w = x[keep], m[keep], w[keep]
    if x.size == 0:
        raise ValueError("no customers to fit (empty input or all weights zero)")
    if np.any(x <= 0):
        raise ValueError("the Gamma-Gamma model is fitted on repeat buyers only: frequency must be > 0")
    if np.any(m <= 0):
        raise ValueError("monetary (mean spend per repeat purchase) must be > 0")
    return x, m, w


class _GGData:
    """Weighted (x, m) of repeat buyers prepared once per fit; functions of x alone use the distinct x."""

    def __init__(self, x: np.ndarray, m: np.ndarray, w: np.ndarray):
        self.W = float(w.sum())
        self.ux, ix = np.unique(x, return_inverse=True)
        self.wx = np.bincount(ix, weights=w, minlength=self.ux.size)  # customers per distinct x
        self.w, self.w_x, self.mx = w, w * x, m * x
        self.sum_w_log_m = _dot(w, np.log(m))


def _gg_nll_and_grad(log_params: np.ndarray, d: _GGData, penalizer: float) -> tuple[float, np.ndarray]:
    """Mean negative log-likelihood (+ penalty) of the Gamma-Gamma model and its log-parameter gradient.

    Density of a customer's mean spend m over x purchases (Fader & Hardie 2013, eq. 1a)::

        ln f = lnΓ(px+q) - lnΓ(px) - lnΓ(q) + q ln v + (px-1) ln m + px ln x - (px+q) ln(v + m x)
             = lnΓ(px+q) - lnΓ(px) - lnΓ(q) - px log1p(v/(mx)) - q log1p(mx/v) - ln m
    """
    p, q, v = np.exp(log_params)
    W, ux, wx = d.W, d.ux, d.wx
    pu = p * ux
    l1 = np.log1p(v / d.mx)
    l2 = np.log1p(d.mx / v)
    ll = (
        _dot(wx, gammaln(pu + q) - gammaln(pu))
        - W * gammaln(q)
        - p * _dot(d.w_x, l1)
        - q * _dot(d.w, l2)
        - d.sum_w_log_m
    )
    dg = digamma(pu + q)
    g_p = _dot(wx * ux, dg - digamma(pu)) - _dot(d.w_x, l1)
    g_q = _dot(wx, dg) - _dot(d.w, l2) - W * digamma(q)
    g_v = W * q / v - np.sum((p * d.w_x + q * d.w) / (v + d.mx))
    params = np.array([p, q, v])
    nll = -ll / W + penalizer * float(np.sum(params * params))
    grad = -(np.array([g_p, g_q, g_v]) * params) / W + 2.0 * penalizer * params * params
    return nll, grad


def gamma_gamma_log_likelihood(params: GammaGammaParams, frequency: Any, monetary: Any, weights: Any = None) -> float:
    """Total (weighted) Gamma-Gamma log-likelihood of repeat buyers' mean spends, without any penalty."""
    x, m, w = _gg_data(frequency, monetary, weights)
    nll, _ = _gg_nll_and_grad(np.log([params.p, params.q, params.v]), _GGData(x, m, w), 0.0)
    return float(-nll * w.sum())


def fit_gamma_gamma(frequency: Any, monetary: Any, weights: Any = None, penalizer: float = 0.0) -> GammaGammaFit:
    """Fit the Gamma-Gamma spend model by maximum likelihood on repeat buyers.

    ``frequency``: repeat purchases x > 0; ``monetary``: the customer's mean spend per repeat purchase
    (> 0, in currency units; ``v`` comes out in the same unit); ``weights``: customers per row (grouping
    identical (x, m) rows is exact). ``penalizer`` as in :func:`fit_bgnbd`. Check the model's independence
    assumption with :func:`spend_frequency_correlation` first.
    """
    x, m, w = _gg_data(frequency, monetary, weights)
    # Start from a moment-matched guess: q = 3 and v so that the population mean p v/(q-1) = mean spend.
    mean_m = _dot(w, m) / w.sum()
    x0 = np.log([1.0, 3.0, 2.0 * mean_m])
    data = _GGData(x, m, w)
    res = _minimize(_gg_nll_and_grad, x0, (data, float(penalizer)))
    p, q, v = np.exp(res.x)
    params = GammaGammaParams(p=float(p), q=float(q), v=float(v))
    return GammaGammaFit(
        params=params,
        log_likelihood=-_gg_nll_and_grad(res.x, data, 0.0)[0] * data.W,  # unpenalised
        n_customers=float(w.sum()),
        n_rows=int(x.size),
        converged=_converged(res),
        message=str(res.message),
    )


def gamma_gamma_expected_spend(params: GammaGammaParams, frequency: Any, monetary: Any) -> np.ndarray:
    """Expected average order value of a customer with x repeat purchases of mean value m.

    A credibility-weighted blend (Fader & Hardie 2013, eq. 5)::

        E[M | p, q, v, m, x] = (q-1)/(px+q-1) * p v/(q-1)  +  px/(px+q-1) * m  =  p (v + m x) / (px + q - 1)

    The more purchases observed, the closer to the customer's own mean. Customers with x = 0 (or a
    missing m) get the population mean p v / (q - 1); requires q > 1 (otherwise the mean is infinite and
    NaN is returned for them).
    """
    p, q, v = params.p, params.q, params.v
    x, m = np.broadcast_arrays(np.asarray(frequency, dtype=float), np.asarray(monetary, dtype=float))
    rep = (x > 0) & np.isfinite(m)
    xs, ms = np.where(rep, x, 0.0), np.where(rep, m, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = p * (v + ms * xs) / (p * xs + q - 1.0)
    return np.where(~rep & (q <= 1.0), np.nan, out)


def spend_frequency_correlation(frequency: Any, monetary: Any, weights: Any = None) -> float:
    """Weighted Pearson correlation between repeat frequency and mean spend among repeat buyers.

    The Gamma-Gamma model assumes how much a customer spends per order is independent of how often they
    buy; a correlation near 0 (say |ρ| < 0.3) supports using it. Rows with x <= 0 or a non-finite
    monetary value are ignored. NaN if fewer than two distinct values.
    """
    x = np.asarray(frequency, dtype=float).ravel()
    m = np.asarray(monetary, dtype=float).ravel()
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=float).ravel()
    keep = (x > 0) & np.isfinite(m) & (w > 0)
    x, m, w = x[keep], m[keep], w[keep]
    if w.sum() <= 0:
        return float("nan")
    mx, mm = _dot(w, x) / w.sum(), _dot(w, m) / w.sum()
    cov = _dot(w, (x - mx) * (m - mm))
    var = _dot(w, (x - mx) ** 2) * _dot(w, (m - mm) ** 2)
    return float(cov / np.sqrt(var)) if var > 0 else float("nan")
