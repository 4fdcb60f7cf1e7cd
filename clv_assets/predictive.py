"""Predictive CLV: an honest out-of-time backtest of several revenue models, champion selection, refit.

Pure functions on Spark DataFrames (features, targets, Spark MLlib) and numpy/pandas (BTYD fits, scoring);
the Dagster assets in ``clv_assets/defs/prediction.py`` only wire them together.

Time windows, for an as-of date A and a horizon of H months (``(a, b]`` = after a, up to and including b):

- **ML training**: features as of ``A - 2H`` (history up to then only), target = net revenue in
  ``(A - 2H, A - H]``.
- **Backtest scoring**: features as of ``A - H``, target = net revenue in ``(A - H, A]``. No model has
  seen any of this target window: the ML models learned from targets ending at ``A - H``, and the
  BG/NBD + Gamma-Gamma model is calibrated on the history up to ``A - H``. With more customers than
  ``max_customers`` (:func:`run_backtest`), a random sample of them, whole customers chosen by a stable hash
  of their id (:func:`backtest_sample`): a quarter of a million customers measure a Gini to about a
  thousandth and an MAE to under half a percent (``benchmarks/RESULTS.md``, session 10), and the features of
  the rest would cost time without changing the verdict.
- **Production**: the ML models the served model needs are refit on the backtest scoring set (features as
  of ``A - H``, target ``(A - H, A]``) and applied to features as of A; BG/NBD + Gamma-Gamma is refit on all
  history up to A. Predictions are for ``(A, A + H]``, for every customer. The ML models learn from a uniform
  sample of at most ``MLParams.max_training_rows`` customers, in the backtest and in production alike.

Population at each cutoff: customers whose first purchase is on or before it (see ``clv_assets.features``).

Models (``MODEL_TYPES``): ``linear_regression``, ``random_forest``, ``gradient_boosting`` (Spark MLlib, on
the customer features plus the BG/NBD + Gamma-Gamma outputs fitted at the same cutoff; the target is the
revenue itself, or its log1p with ``MLParams(log_target=True)``; predictions are floored at 0),
``bgnbd_gamma_gamma`` (expected purchase days x expected spend per purchase day), ``ensemble`` (plain mean
of those four: no weights are tuned on the backtest, so its backtest score stays honest) and the
``naive_baseline`` (net revenue of the last H months, floored at 0).

Champion rule (:func:`select_champion`): each model is ranked on normalized Gini (higher is better) and on
MAE (lower is better); the champion has the best (lowest) sum of the two ranks; ties go to the higher Gini,
then the lower MAE.

Intervals: split conformal (``evaluation.conformal_interval``). The backtest customers are split in two
halves by a hash of their id; intervals are calibrated on one half (the models never trained on their
targets) and the coverage is measured on the other half. Production intervals reuse the calibration half.

Short history: see :func:`plan_backtest`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import zlib
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from dateutil.relativedelta import relativedelta
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from clv_assets import btyd, evaluation
from clv_assets import features as feat

log = logging.getLogger(__name__)

ML_MODELS = ("linear_regression", "random_forest", "gradient_boosting")
BTYD_MODEL = "bgnbd_gamma_gamma"
ENSEMBLE = "ensemble"
NAIVE = "naive_baseline"
MODEL_TYPES = (*ML_MODELS, BTYD_MODEL, ENSEMBLE)
ALL_MODELS = (*MODEL_TYPES, NAIVE)
ALLOWED_HORIZONS = (3, 6, 12, 24)
BTYD_FEATURES = ("btyd_expected_purchases", "btyd_probability_alive", "btyd_expected_spend", "btyd_revenue")
METRIC_COLUMNS = ("rmse", "mae", "r2", "spearman", "normalized_gini", "top_decile_capture", "decile_mape",
                  "total_predicted", "total_actual", "total_ratio", "coverage", "mean_interval_width")

#: Up to this many customers, the BG/NBD outputs are broadcast to the features (a lookup table held on the driver
#: and on each executor; above it, a shuffle join).
BROADCAST_MAX_CUSTOMERS = 2_000_000
#: Fewest customers at the training cutoff for the ML backtest, and at the scoring cutoff for any backtest.
MIN_TRAIN_CUSTOMERS = 200
MIN_SCORE_CUSTOMERS = 50
#: Customers the backtest scores, at most, by default (see :func:`backtest_sample`); None or 0: all of them.
MAX_BACKTEST_CUSTOMERS = 250_000
_SAMPLE_BUCKETS = 1 << 20


# ------------------------------------------------------------------------------------- Spark <-> pandas


def to_pandas(df: DataFrame) -> pd.DataFrame:
    """``df.toPandas()`` through Arrow whatever ``spark.sql.execution.arrow.pyspark.enabled`` says (off by
    default before Spark 4.2): a columnar transfer instead of pickling row by row, which for a million
    customers is seconds instead of minutes. Same pandas types for the columns used here (strings, numbers,
    dates as ``datetime.date``)."""
    return df.toArrow().to_pandas()


_ARROW_TYPES = {"string": "string", "double": "float64", "long": "int64", "bigint": "int64", "int": "int32",
                "boolean": "bool_", "date": "date32"}


def from_pandas(spark: SparkSession, frame: pd.DataFrame, schema: str, nan_as_null: bool = False) -> DataFrame:
    """``spark.createDataFrame(frame, schema)`` through Arrow (see :func:`to_pandas`). ``schema``: ``"name type,
    ..."`` with the types of ``_ARROW_TYPES``. As without Arrow, None becomes null and NaN stays NaN, unless
    ``nan_as_null``."""
    import pyarrow as pa

    fields = [item.split() for item in schema.split(",")]
    table = pa.table({name: pa.array(frame[name].to_numpy(), type=getattr(pa, _ARROW_TYPES[kind])(), from_pandas=nan_as_null)
                      for name, kind in fields})
    return spark.createDataFrame(table, [name for name, _ in fields])


def shift_months(day: dt.date, months: int) -> dt.date:
    """``day`` moved by whole months (the day of month clamped to the month's length)."""
    return day + relativedelta(months=months)


def horizon_days(start: dt.date, horizon_months: int) -> int:
    return (shift_months(start, horizon_months) - start).days


def check_horizon(horizon_months: int) -> int:
    if horizon_months not in ALLOWED_HORIZONS:
        raise ValueError(f"horizon_months must be one of {ALLOWED_HORIZONS}, got {horizon_months}")
    return horizon_months


# ------------------------------------------------------------------------------------------ backtest plan


@dataclass(frozen=True)
class BacktestPlan:
    """Which backtest the history allows.

    ``mode``: ``"full"`` (ML models and BG/NBD backtested), ``"bgnbd_only"`` (history shorter than 2H, or
    too few customers at ``A - 2H``: no ML model; BG/NBD + Gamma-Gamma and the naive baseline backtested on
    ``(A - H, A]`` and served) or ``"no_backtest"`` (history shorter than H: BG/NBD + Gamma-Gamma fitted on
    everything and served without backtest metrics or intervals). ``reason`` says why, in words.
    """

    as_of: dt.date
    horizon_months: int
    mode: str
    train_cutoff: dt.date | None
    score_cutoff: dt.date | None
    first_purchase: dt.date
    train_customers: int
    score_customers: int
    reason: str

    @property
    def levels_cutoff(self) -> dt.date:
        """The earliest feature cutoff: category and channel levels are chosen from the history up to it."""
        return self.train_cutoff or self.score_cutoff or self.as_of

    @property
    def has_ml(self) -> bool:
        return self.mode == "full"

    def to_dict(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in asdict(self).items()}


def plan_backtest(transactions: DataFrame, as_of: dt.date, horizon_months: int, *,
                  min_train_customers: int = MIN_TRAIN_CUSTOMERS, min_score_customers: int = MIN_SCORE_CUSTOMERS) -> BacktestPlan:
    """Decide the backtest from the history available before ``as_of`` (one small Spark aggregation).

    Fallback, in order: full backtest if at least ``min_train_customers`` made a first purchase by
    ``A - 2H``; otherwise BG/NBD only if at least ``min_score_customers`` did by ``A - H``; otherwise no
    backtest. The horizon is never shrunk silently: predictions are always for the H months asked for.
    """
    first = (
        transactions.filter((F.col("amount") > 0) & (F.col("transaction_date") <= F.lit(as_of)))
        .groupBy("customer_id").agg(F.min("transaction_date").alias("first_purchase_date"))
    )
    return plan_from_first_purchases(first, as_of, horizon_months, min_train_customers=min_train_customers,
                                     min_score_customers=min_score_customers)


def plan_from_first_purchases(customers: DataFrame, as_of: dt.date, horizon_months: int, *,
                              min_train_customers: int = MIN_TRAIN_CUSTOMERS,
                              min_score_customers: int = MIN_SCORE_CUSTOMERS) -> BacktestPlan:
    """:func:`plan_backtest` from one row per customer who has bought by ``as_of`` with their
    ``first_purchase_date``: the features table as of ``as_of`` has exactly these rows, so the model needs no
    second pass over the transactions."""
    check_horizon(horizon_months)
    score_cutoff, train_cutoff = shift_months(as_of, -horizon_months), shift_months(as_of, -2 * horizon_months)
    first = F.col("first_purchase_date")
    row = customers.agg(
        F.min(first).alias("first_purchase"),
        F.count(F.when(first <= F.lit(train_cutoff), 1)).alias("train"),
        F.count(F.when(first <= F.lit(score_cutoff), 1)).alias("score"),
    ).first()
    if row["first_purchase"] is None:
        raise ValueError(f"No purchase on or before {as_of}: nothing to predict from.")
    common = dict(as_of=as_of, horizon_months=horizon_months, first_purchase=row["first_purchase"],
                  train_customers=int(row["train"]), score_customers=int(row["score"]))
    history = f"history from {row['first_purchase']} to {as_of}"
    if row["train"] >= min_train_customers:
        return BacktestPlan(mode="full", train_cutoff=train_cutoff, score_cutoff=score_cutoff,
                            reason=f"{history}: ML trained as of {train_cutoff}, backtested as of {score_cutoff}", **common)
    if row["score"] >= min_score_customers:
        return BacktestPlan(
            mode="bgnbd_only", train_cutoff=None, score_cutoff=score_cutoff,
            reason=(f"{history} is too short for a {horizon_months}-month ML backtest (needs {min_train_customers} "
                    f"customers by {train_cutoff}, has {row['train']}): ML models skipped, BG/NBD + Gamma-Gamma "
                    f"backtested as of {score_cutoff} and served"),
            **common)
    return BacktestPlan(
        mode="no_backtest", train_cutoff=None, score_cutoff=None,
        reason=(f"{history} is too short for any {horizon_months}-month backtest (needs {min_score_customers} "
                f"customers by {score_cutoff}, has {row['score']}): BG/NBD + Gamma-Gamma fitted on all history and "
                "served without backtest metrics or intervals"),
        **common)


# ------------------------------------------------------------------------------------- BG/NBD + Gamma-Gamma


@dataclass(frozen=True)
class BtydModel:
    """BG/NBD (time unit: days) and Gamma-Gamma (spend per purchase day) fitted at one cutoff.

    ``gamma_gamma`` is None when there are too few repeat buyers or its population mean is infinite
    (q <= 1); then every customer's expected spend is ``fallback_spend`` (mean spend of a purchase day).
    """

    cutoff: dt.date
    bgnbd: btyd.BetaGeoParams
    gamma_gamma: btyd.GammaGammaParams | None
    fallback_spend: float
    bgnbd_converged: bool
    gamma_gamma_converged: bool
    n_customers: int
    n_repeat_buyers: int
    grouped_rows: int
    spend_frequency_correlation: float

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["cutoff"] = self.cutoff.isoformat()
        out["bgnbd"] = self.bgnbd.to_dict()
        out["gamma_gamma"] = self.gamma_gamma.to_dict() if self.gamma_gamma else None
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BtydModel:
        return cls(**{**d, "cutoff": dt.date.fromisoformat(d["cutoff"]), "bgnbd": btyd.BetaGeoParams.from_dict(d["bgnbd"]),
                      "gamma_gamma": btyd.GammaGammaParams.from_dict(d["gamma_gamma"]) if d["gamma_gamma"] else None})


def grouped_rfm(features: DataFrame) -> pd.DataFrame:
    """(frequency, recency, T) in days with the number of customers sharing them (grouped in Spark)."""
    return to_pandas(features.groupBy("frequency", "recency", "T").count())


def grouped_spend(features: DataFrame) -> pd.DataFrame:
    """(frequency, monetary) of repeat buyers with their counts (grouped in Spark)."""
    return to_pandas(features.filter(F.col("frequency") > 0).groupBy("frequency", "monetary").count())


def fit_btyd(features: DataFrame, cutoff: dt.date, penalizer: float = 0.0) -> BtydModel:
    """Fit BG/NBD on grouped (x, t_x, T) and Gamma-Gamma on grouped (x, m) from a features table.

    Without convergence at ``penalizer`` (e.g. very few repeat buyers), or when the fit cannot score its own
    customers (:func:`_bgnbd_usable`), BG/NBD is refit with a small L2 penalty (0.001) and ``bgnbd_converged``
    reports the second attempt.
    """
    rfm = grouped_rfm(features)
    fit = btyd.fit_bgnbd(rfm["frequency"], rfm["recency"], rfm["T"], weights=rfm["count"], penalizer=penalizer)
    if penalizer == 0.0 and not _bgnbd_usable(fit, rfm):
        why = f"did not converge: {fit.message}" if not fit.converged else "its expected purchases overflow"
        log.warning("BG/NBD fit as of %s is not usable (%s): refitting with penalizer 0.001", cutoff, why)
        fit = btyd.fit_bgnbd(rfm["frequency"], rfm["recency"], rfm["T"], weights=rfm["count"], penalizer=0.001)
    spend = grouped_spend(features)
    stats = features.agg(F.avg(F.col("gross_revenue") / F.col("n_purchase_days")).alias("spend")).first()
    gg, gg_converged, corr = None, False, float("nan")
    if len(spend) >= 10:
        corr = btyd.spend_frequency_correlation(spend["frequency"], spend["monetary"], spend["count"])
        gg_fit = btyd.fit_gamma_gamma(spend["frequency"], spend["monetary"], weights=spend["count"], penalizer=penalizer)
        gg_converged = gg_fit.converged
        if gg_fit.params.q > 1.0:
            gg = gg_fit.params
    if gg is None:
        log.warning("Gamma-Gamma not usable as of %s (%d repeat-buyer rows): expected spend = mean spend per purchase day",
                    cutoff, len(spend))
    return BtydModel(
        cutoff=cutoff, bgnbd=fit.params, gamma_gamma=gg, fallback_spend=float(stats["spend"] or 0.0),
        bgnbd_converged=fit.converged, gamma_gamma_converged=gg_converged, n_customers=int(rfm["count"].sum()),
        n_repeat_buyers=int(spend["count"].sum()) if len(spend) else 0, grouped_rows=len(rfm),
        spend_frequency_correlation=corr,
    )


def _bgnbd_usable(fit: btyd.BetaGeoFit, rfm: pd.DataFrame) -> bool:
    """Converged, and with finite expected purchases (next 365 days) for the customers it was fitted on. On a
    hundred customers an unpenalized fit can converge to a boundary (a and b in the hundred thousands, a fixed
    dropout rate) where the hypergeometric function overflows and every prediction is -inf."""
    if not fit.converged:
        return False
    with np.errstate(all="ignore"):
        expected = btyd.bgnbd_expected_purchases(fit.params, 365.0, rfm["frequency"], rfm["recency"], rfm["T"])
    return bool(np.isfinite(expected).all())


def btyd_scores(model: BtydModel, rfm: pd.DataFrame, horizon: int) -> pd.DataFrame:
    """Per customer: expected purchase days in the next ``horizon`` days, P(alive), expected spend per purchase
    day and their product, the expected revenue (``rfm`` has frequency, recency, T, monetary in days)."""
    x, tx, T = (rfm[c].to_numpy(dtype=float) for c in ("frequency", "recency", "T"))
    purchases = btyd.bgnbd_expected_purchases(model.bgnbd, horizon, x, tx, T)
    alive = btyd.bgnbd_probability_alive(model.bgnbd, x, tx, T)
    if model.gamma_gamma is not None:
        spend = btyd.gamma_gamma_expected_spend(model.gamma_gamma, x, rfm["monetary"].to_numpy(dtype=float))
    else:
        spend = np.full(x.size, model.fallback_spend)
    return pd.DataFrame({
        "customer_id": rfm["customer_id"].to_numpy(),
        "btyd_expected_purchases": purchases,
        "btyd_probability_alive": alive,
        "btyd_expected_spend": spend,
        "btyd_revenue": purchases * spend,
    })


def with_btyd_features(features: DataFrame, model: BtydModel, horizon: int, windows: pd.DataFrame | None = None,
                       target: str | None = None) -> tuple[DataFrame, pd.DataFrame]:
    """The features table with the BG/NBD + Gamma-Gamma outputs of ``model`` (fitted at the same cutoff) added,
    and the same outputs in pandas with each customer's frequency, recency and T (they are computed on the
    driver: reading them back from Spark would cost another pass over every customer).

    ``windows`` (``customer_id`` and net revenue columns, from :func:`clv_assets.features.window_revenues`): its
    columns are added to the pandas outputs (0 for a customer without transactions in a window), and the one
    named ``target`` to the table too, as ``target``."""
    rfm = to_pandas(features.select("customer_id", "frequency", "recency", "T", "monetary"))
    scores = btyd_scores(model, rfm, horizon)
    spark = features.sparkSession
    local = pd.concat([scores, rfm[["frequency", "recency", "T"]]], axis=1)  # btyd_scores keeps rfm's row order
    if windows is not None:
        revenue = rfm[["customer_id"]].merge(windows, on="customer_id", how="left")  # a left merge keeps the order
        for column in windows.columns.drop("customer_id"):
            local[column] = revenue[column].fillna(0.0).to_numpy(dtype=float)
    shipped = scores if target is None else scores.assign(target=local[target])
    schema = "customer_id string, " + ", ".join(f"{c} double" for c in shipped.columns.drop("customer_id"))
    outputs = from_pandas(spark, shipped, schema)
    if len(scores) <= BROADCAST_MAX_CUSTOMERS:  # the wide features side is then joined without a shuffle
        outputs = F.broadcast(outputs)
    return features.join(outputs, "customer_id", "inner"), local


# --------------------------------------------------------------------------------------------- ML models


@dataclass(frozen=True)
class MLParams:
    """Spark MLlib settings sized for a small machine (a few thousand to a few hundred thousand customers)."""

    # Learn log1p(revenue) instead of revenue: better MAE (predictions move towards the median, often 0) but
    # predictions are no longer expected values (on the sample, the predicted total halves), so off by default.
    log_target: bool = False
    linear_reg_param: float = 0.01
    # Trees and boosting rounds: halving the 80 trees and 40 rounds (at twice the step) moved the backtest Gini by
    # 0.0003 and 0.0011 and saved a third of the fitting time (benchmarks/bench_training_sample.py --variants).
    rf_num_trees: int = 40
    rf_max_depth: int = 6
    gbt_max_iter: int = 20
    gbt_max_depth: int = 4
    gbt_step_size: float = 0.2
    min_instances_per_node: int = 10
    seed: int = 42
    # Customers the ML models learn from, at most: a uniform random sample above it (scoring covers everyone).
    # Fitting cost grows with every row; accuracy too, a little (benchmarks/bench_training_sample.py, README).
    # The backtest trains on a sample capped the same way.
    max_training_rows: int = 250_000


def _regressor(name: str, params: MLParams):
    from pyspark.ml.regression import GBTRegressor, LinearRegression, RandomForestRegressor

    common = dict(featuresCol="features", labelCol="label", predictionCol="raw_prediction")
    if name == "linear_regression":
        # Ridge (L2 only) has a closed form: the normal equations take one pass over the data, where L-BFGS took
        # one pass per iteration (up to 100).
        return LinearRegression(regParam=params.linear_reg_param, elasticNetParam=0.0, solver="normal", **common)
    if name == "random_forest":
        return RandomForestRegressor(numTrees=params.rf_num_trees, maxDepth=params.rf_max_depth, subsamplingRate=0.8,
                                     featureSubsetStrategy="onethird", minInstancesPerNode=params.min_instances_per_node,
                                     seed=params.seed, **common)
    if name == "gradient_boosting":
        return GBTRegressor(maxIter=params.gbt_max_iter, maxDepth=params.gbt_max_depth, stepSize=params.gbt_step_size,
                            subsamplingRate=0.8, minInstancesPerNode=params.min_instances_per_node, seed=params.seed, **common)
    raise ValueError(f"Unknown ML model {name!r}; expected one of {ML_MODELS}")


def _signed_log_columns(columns: list[str]) -> str:
    """SQL for the linear model's inputs: sign(v) * ln(1 + |v|) of each feature (tames the heavy tails)."""
    return ", ".join(f"signum(`{c}`) * ln(1 + abs(`{c}`)) AS `lin__{c}`" for c in columns)


def training_data(train: DataFrame, params: MLParams) -> DataFrame:
    """What the ML models learn from, prepared once for all of them: ``train`` (features + ``target`` column),
    sampled to at most ``params.max_training_rows`` rows, with the ``label``: the target, or
    ``log1p(max(target, 0))`` when ``params.log_target`` (negative net revenue is learned as 0). Cached: the
    caller unpersists it."""
    target = F.greatest(F.col("target"), F.lit(0.0))
    label = F.log1p(target) if params.log_target else F.col("target")
    # In one partition per task slot: the tree ensembles pass over their input a few hundred times, and more
    # partitions than slots only add scheduling work to every pass. Hashed by customer, not coalesced:
    # coalescing keeps uneven partitions, and every pass would wait for the largest.
    data = training_sample(train, params.max_training_rows, params.seed).withColumn("label", label)
    slots = task_slots(train.sparkSession)
    return (data.repartition(slots, "customer_id") if slots else data).cache()


def fit_ml(name: str, data: DataFrame, feature_cols: list[str], params: MLParams):
    """Fit one Spark ML pipeline (assembler + regressor) on ``data`` from :func:`training_data`; returns the
    fitted ``PipelineModel`` (its output column: ``raw_prediction``, see :func:`predict_ml`)."""
    from pyspark.ml import Pipeline
    from pyspark.ml.feature import SQLTransformer, VectorAssembler

    stages = []
    inputs = feature_cols
    if name == "linear_regression":
        stages.append(SQLTransformer(statement=f"SELECT *, {_signed_log_columns(feature_cols)} FROM __THIS__"))
        inputs = [f"lin__{c}" for c in feature_cols]
    stages += [VectorAssembler(inputCols=inputs, outputCol="features"), _regressor(name, params)]
    with _compiled_codegen(data.sparkSession):
        return Pipeline(stages=stages).fit(data)


_HUGE_METHOD_LIMIT = "spark.sql.codegen.hugeMethodLimit"


@contextmanager
def _compiled_codegen(spark: SparkSession):
    """Spark's generated code in methods HotSpot compiles (``hugeMethodLimit`` 8000, as Spark's docs advise on
    HotSpot, instead of 65535), unless the user set the limit. The linear model's input (60 signed logs assembled
    into one vector) otherwise makes a method too large for the JIT, which then runs interpreted: for the 10M
    benchmark's features, 6.1 s instead of 1.9 s. Only around the models: set for everything, it made the
    aggregations slower (benchmarks/bench_spark_settings.py, benchmarks/RESULTS.md)."""
    if spark.conf.get(_HUGE_METHOD_LIMIT) != "65535":  # set by the user: theirs
        yield
        return
    spark.conf.set(_HUGE_METHOD_LIMIT, "8000")
    try:
        yield
    finally:
        spark.conf.set(_HUGE_METHOD_LIMIT, "65535")


def task_slots(spark: SparkSession) -> int | None:
    """How many tasks Spark runs at once (None under Spark Connect, which does not say)."""
    try:
        return int(spark.sparkContext.defaultParallelism)
    except Exception:  # noqa: BLE001 - Spark Connect has no SparkContext
        return None


def training_sample(train: DataFrame, max_rows: int, seed: int) -> DataFrame:
    """``train`` itself, or a uniform random sample of about ``max_rows`` of its rows when it has more."""
    rows = train.count()
    return train if rows <= max_rows else train.sample(fraction=max_rows / rows, seed=seed)


def _max_label(targets: np.ndarray, params: MLParams) -> float:
    """The largest training label (predictions are capped at it, see :func:`predict_ml`)."""
    top = max(float(np.max(targets)) if len(targets) else 0.0, 0.0)
    return float(np.log1p(top)) if params.log_target else top


def predict_ml(models: dict[str, Any], features: DataFrame, log_target: bool, max_label: float | None = None,
               keep: tuple[str, ...] = ()) -> pd.DataFrame:
    """``customer_id, *keep`` and one column per fitted pipeline of ``models`` (named by its key): revenue
    predictions, back-transformed and floored at 0. All models score in one pass over ``features``.

    Predictions are capped at ``max_label``, the largest training label (in label space): a linear
    extrapolation far beyond anything seen (worse, under ``expm1``) is not a forecast.
    """
    scored, columns = features, {}
    for name, model in models.items():
        columns[name] = f"__prediction_{len(columns)}"
        # Each pipeline adds its input vector (and the linear model its signed logs): dropped before the next one.
        scored = model.transform(scored).withColumnRenamed("raw_prediction", columns[name])
        scored = scored.drop("features", *[c for c in scored.columns if c.startswith("lin__")])
    with _compiled_codegen(features.sparkSession):
        out = to_pandas(scored.select("customer_id", *keep, *columns.values()))
    for name, column in columns.items():
        values = out.pop(column).to_numpy(dtype=float)
        if max_label is not None:
            values = np.minimum(values, max_label)
        if log_target:
            values = np.expm1(values)
        out[name] = np.maximum(values, 0.0)
    return out


def feature_importances(model, feature_cols: list[str]) -> dict[str, float] | None:
    """Tree models' feature importances (sum to 1), largest first; None for the linear model."""
    last = model.stages[-1]
    if not hasattr(last, "featureImportances"):
        return None
    values = last.featureImportances.toArray()
    pairs = sorted(zip(feature_cols, values), key=lambda kv: -kv[1])
    return {k: round(float(v), 5) for k, v in pairs}


# ------------------------------------------------------------------------------------------------ backtest


def calibration_half(customer_ids: pd.Series) -> np.ndarray:
    """True for the customers whose backtest results calibrate the intervals (a stable hash of the id; the
    other half measures coverage)."""
    return np.array([zlib.crc32(str(c).encode()) % 2 == 0 for c in customer_ids], dtype=bool)


def select_champion(metrics: pd.DataFrame) -> str:
    """The model with the lowest rank sum over normalized Gini (descending) and MAE (ascending); ties go to the
    higher Gini, then the lower MAE. ``metrics`` has one row per model (index = model name)."""
    scored = metrics.dropna(subset=["normalized_gini", "mae"])
    if scored.empty:
        raise ValueError("No model has a normalized Gini and an MAE to rank on.")
    ranks = scored["normalized_gini"].rank(ascending=False, method="average") + scored["mae"].rank(ascending=True, method="average")
    order = pd.DataFrame({"rank_sum": ranks, "gini": -scored["normalized_gini"], "mae": scored["mae"]})
    return str(order.sort_values(["rank_sum", "gini", "mae"], kind="stable").index[0])


def rank_sums(metrics: pd.DataFrame) -> pd.Series:
    scored = metrics.dropna(subset=["normalized_gini", "mae"])
    return scored["normalized_gini"].rank(ascending=False) + scored["mae"].rank(ascending=True)


@dataclass
class BacktestResult:
    """What the backtest learned: per-model metrics, per-customer predictions and what production needs."""

    plan: BacktestPlan
    levels: dict[str, list[str]]
    feature_cols: list[str]
    metrics: pd.DataFrame  # index: model; METRIC_COLUMNS + customers
    predictions: pd.DataFrame  # customer_id, actual, calibration (bool), one column per model
    champion: str | None
    importances: dict[str, dict[str, float]] = field(default_factory=dict)
    btyd_backtest: BtydModel | None = None
    max_label: float | None = None
    timings: dict[str, float] = field(default_factory=dict)
    sample_share: float = 1.0  # share of the customers of A - H the models were scored on (backtest_sample)

    def calibration(self, model: str) -> tuple[np.ndarray, np.ndarray]:
        cal = self.predictions[self.predictions["calibration"]]
        return cal[model].to_numpy(dtype=float), cal["actual"].to_numpy(dtype=float)


def model_features(transactions: DataFrame, cutoff: dt.date, horizon_months: int, levels: dict[str, list[str]],
                   windows: pd.DataFrame, target: str, penalizer: float = 0.0) -> tuple[DataFrame, BtydModel, pd.DataFrame]:
    """Features as of ``cutoff`` plus BG/NBD + Gamma-Gamma outputs fitted on the same history and the ``target``
    window of ``windows``; that fit; and the outputs and windows in pandas (see :func:`with_btyd_features`)."""
    base = feat.build_features(transactions, cutoff, categories=levels["categories"], channels=levels["channels"]).cache()
    model = fit_btyd(base, cutoff, penalizer)
    with_btyd, local = with_btyd_features(base, model, horizon_days(cutoff, horizon_months), windows, target)
    return with_btyd, model, local


def naive_window(cutoff: dt.date, horizon_months: int) -> tuple[dt.date, dt.date]:
    """The naive baseline's window at ``cutoff``: the last H months, ``(cutoff - H, cutoff]``."""
    return shift_months(cutoff, -horizon_months), cutoff


def _naive(past_revenue: pd.Series) -> np.ndarray:
    """Naive baseline: each customer's net revenue in :func:`naive_window` (missing: none, 0), floored at 0."""
    return np.maximum(past_revenue.fillna(0.0).to_numpy(dtype=float), 0.0)


def score_models(predictions: pd.DataFrame, models: list[str], coverage: float) -> pd.DataFrame:
    """Metrics per model: point metrics on every backtest customer, interval coverage and width on the
    customers outside the calibration half (intervals calibrated on the calibration half)."""
    actual = predictions["actual"].to_numpy(dtype=float)
    cal = predictions["calibration"].to_numpy(dtype=bool)
    rows = {}
    for name in models:
        pred = predictions[name].to_numpy(dtype=float)
        scores = evaluation.score_predictions(actual, pred)
        if cal.sum() >= 2 and (~cal).sum() >= 1:
            lower, upper = conformal_bounds(pred[cal], actual[cal], pred[~cal], coverage)
            scores["coverage"] = evaluation.interval_coverage(actual[~cal], lower, upper)
            scores["mean_interval_width"] = float(np.mean(upper - lower))
        else:
            scores["coverage"] = scores["mean_interval_width"] = math.nan
        scores["customers"] = int(actual.size)
        scores["coverage_customers"] = int((~cal).sum())
        rows[name] = scores
    return pd.DataFrame.from_dict(rows, orient="index")


def conformal_bounds(pred_calib, actual_calib, pred_new, coverage: float) -> tuple[np.ndarray, np.ndarray]:
    """``evaluation.conformal_interval`` (revenue floored at 0), widened where needed so that
    ``lower <= prediction <= upper`` always holds."""
    lower, upper = evaluation.conformal_interval(pred_calib, actual_calib, pred_new, coverage=coverage)
    new = np.asarray(pred_new, dtype=float)
    return np.minimum(lower, new), np.maximum(upper, new)


def backtest_sample(transactions: DataFrame, customers: int, max_customers: int | None) -> tuple[DataFrame, float]:
    """The transactions of a random sample of about ``max_customers`` of ``customers`` customers, and the share
    of customers kept (1.0: all of them, when ``max_customers`` is None, 0 or not smaller than ``customers``).

    A customer is kept or left out whole, by a stable hash of their id: the same data gives the same sample,
    and a customer in the sample at one cutoff is in it at every cutoff."""
    if not max_customers or customers <= max_customers:
        return transactions, 1.0
    kept = max(1, round(_SAMPLE_BUCKETS * max_customers / customers))
    bucket = F.pmod(F.xxhash64(F.lit("clv_backtest_sample"), F.col("customer_id")), F.lit(_SAMPLE_BUCKETS))
    return transactions.filter(bucket < F.lit(kept)), kept / _SAMPLE_BUCKETS


def run_backtest(transactions: DataFrame, plan: BacktestPlan, *, params: MLParams = MLParams(), coverage: float = 0.8,
                 levels: dict[str, list[str]] | None = None,
                 max_customers: int | None = MAX_BACKTEST_CUSTOMERS) -> tuple[BacktestResult, DataFrame | None]:
    """Backtest every model the plan allows; returns the result and the scoring-cutoff features with their
    target (the production training set of the ML models; None without a backtest).

    The models are scored on the customers who bought by ``A - H``, or on a random sample of about
    ``max_customers`` of them (:func:`backtest_sample`; never fewer than ``params.max_training_rows``, since
    production's ML models learn from the same customers). The ML models of the backtest learn from the
    customers of ``A - 2H``, sampled only by ``params.max_training_rows``."""
    import time

    timings: dict[str, float] = {}
    levels = levels or feat.feature_levels(transactions, plan.levels_cutoff)
    if plan.mode == "no_backtest":
        empty = pd.DataFrame(columns=["customer_id", "actual", "calibration"])
        return BacktestResult(plan=plan, levels=levels, feature_cols=[], metrics=pd.DataFrame(columns=METRIC_COLUMNS),
                              predictions=empty, champion=None), None
    H, A = plan.horizon_months, plan.as_of
    t0 = time.perf_counter()
    # Every revenue window of the backtest in one pass: the scoring target, the naive baseline's last H months
    # and the training target (the last two coincide unless month ends differ, e.g. A on 31 May).
    windows = {"score_target": (plan.score_cutoff, A), "naive": naive_window(plan.score_cutoff, H)}
    if plan.has_ml:
        windows["train_target"] = (plan.train_cutoff, plan.score_cutoff)
    # The revenue windows per customer go to the driver, where they meet the BG/NBD outputs (computed there), and
    # travel back with them: up to BROADCAST_MAX_CUSTOMERS, the wide feature tables are joined without a shuffle.
    revenues = to_pandas(feat.window_revenues(transactions, windows))
    cap = max(max_customers, params.max_training_rows) if max_customers else None
    scored_customers, sample_share = backtest_sample(transactions, plan.score_customers, cap)
    score_set, btyd_score, local = model_features(scored_customers, plan.score_cutoff, H, levels, revenues, "score_target")
    score_set = score_set.cache()  # each model scores it, and production learns from it
    feature_cols = [c for c in feat.feature_columns(score_set) if c != "target"]
    # The backtest population: customers with a purchase by A - H (or the sample of them).
    predictions = pd.DataFrame({"customer_id": local["customer_id"], "actual": local["score_target"]})
    predictions["calibration"] = calibration_half(predictions["customer_id"])
    predictions[BTYD_MODEL] = local["btyd_revenue"].to_numpy(dtype=float)
    predictions[NAIVE] = _naive(local["naive"])
    timings["features_and_btyd"] = time.perf_counter() - t0

    importances: dict[str, dict[str, float]] = {}
    max_label = None
    models = [NAIVE, BTYD_MODEL]
    if plan.has_ml:
        t0 = time.perf_counter()
        train_set, _, train_local = model_features(transactions, plan.train_cutoff, H, levels, revenues, "train_target")
        max_label = _max_label(train_local["train_target"].to_numpy(), params)
        data = training_data(train_set, params)
        timings["train_features"] = time.perf_counter() - t0
        fitted = {}
        try:
            for name in ML_MODELS:
                t0 = time.perf_counter()
                fitted[name] = fit_ml(name, data, feature_cols, params)
                imp = feature_importances(fitted[name], feature_cols)
                if imp is not None:
                    importances[name] = imp
                timings[name] = time.perf_counter() - t0
        finally:
            data.unpersist()
        t0 = time.perf_counter()
        scored = predict_ml(fitted, score_set, params.log_target, max_label)
        predictions = predictions.merge(scored, on="customer_id", how="left")
        timings["ml_scoring"] = time.perf_counter() - t0
        predictions[ENSEMBLE] = predictions[[*ML_MODELS, BTYD_MODEL]].mean(axis=1)
        models = [*ML_MODELS, BTYD_MODEL, ENSEMBLE, NAIVE]
    metrics = score_models(predictions, models, coverage)
    result = BacktestResult(plan=plan, levels=levels, feature_cols=feature_cols, metrics=metrics, predictions=predictions,
                            champion=select_champion(metrics), importances=importances, btyd_backtest=btyd_score,
                            max_label=max_label, timings=timings, sample_share=sample_share)
    return result, score_set


# ---------------------------------------------------------------------------------------------- production


@dataclass
class ProductionModels:
    """The models refit for predictions as of ``as_of``: ML pipelines (fit on features as of A - H with the
    target (A - H, A]), BG/NBD + Gamma-Gamma on all history up to A, and what scoring needs."""

    as_of: dt.date
    horizon_months: int
    feature_cols: list[str]
    levels: dict[str, list[str]]
    btyd: BtydModel
    ml: dict[str, Any]
    params: MLParams
    max_label: float | None


def models_needed(serve: str) -> tuple[str, ...]:
    """The ML models behind a served model: itself, all three for the ensemble, none otherwise."""
    return ML_MODELS if serve == ENSEMBLE else ((serve,) if serve in ML_MODELS else ())


def fit_production(features_as_of: DataFrame, plan: BacktestPlan, training_set: DataFrame | None,
                   feature_cols: list[str], levels: dict[str, list[str]], params: MLParams = MLParams(),
                   serve: str | None = None) -> ProductionModels:
    """Refit BG/NBD + Gamma-Gamma on ``features_as_of`` and, when the plan has ML, the ML models on the backtest
    scoring set: those the served model ``serve`` needs (see :func:`models_needed`), or all three when None."""
    btyd_model = fit_btyd(features_as_of, plan.as_of)
    ml: dict[str, Any] = {}
    max_label = None
    if plan.has_ml and training_set is not None:
        max_label = _max_label(np.array([training_set.agg(F.max("target")).first()[0] or 0.0]), params)
        needed = ML_MODELS if serve is None else models_needed(serve)
        if needed:
            data = training_data(training_set, params)
            try:
                ml = {name: fit_ml(name, data, feature_cols, params) for name in needed}
            finally:
                data.unpersist()
    return ProductionModels(as_of=plan.as_of, horizon_months=plan.horizon_months, feature_cols=feature_cols,
                            levels=levels, btyd=btyd_model, ml=ml, params=params, max_label=max_label)


def served_model(requested: str, champion: str | None, plan: BacktestPlan) -> tuple[str, str | None]:
    """The model whose predictions are served, and a warning when the request cannot be honoured.

    ``requested``: ``"champion"`` or one of ``MODEL_TYPES``. Without ML models (short history) an ML or
    ensemble request falls back to BG/NBD + Gamma-Gamma; without a backtest there is no champion either.
    """
    if requested != "champion" and requested not in MODEL_TYPES:
        raise ValueError(f"model_type must be 'champion' or one of {MODEL_TYPES}, got {requested!r}")
    if requested == "champion":
        return (champion or BTYD_MODEL), None
    if requested in (*ML_MODELS, ENSEMBLE) and not plan.has_ml:
        return BTYD_MODEL, f"{requested} needs the ML backtest, which the history does not allow ({plan.reason})"
    return requested, None


def predict_production(models: ProductionModels, features_as_of: DataFrame, transactions: DataFrame | None,
                       serve: str) -> pd.DataFrame:
    """Per customer as of A: the served model's revenue for (A, A + H] and the BG/NBD outputs.

    Columns: customer_id, predicted_revenue, expected_purchases, probability_alive, monthly_purchase_shares
    (list of H shares of the expected purchases per month, for discounting). The naive baseline needs
    ``transactions`` (revenue of the last H months).
    """
    H, A = models.horizon_months, models.as_of
    days = horizon_days(A, H)
    needed = models_needed(serve)
    with_btyd, local = with_btyd_features(features_as_of, models.btyd, days)
    columns = ("frequency", "recency", "T", *BTYD_FEATURES)
    if needed:  # the scores come back with the BG/NBD columns: no join on the driver
        out = predict_ml({name: models.ml[name] for name in needed}, with_btyd, models.params.log_target,
                         models.max_label, keep=columns)
    else:
        out = local[["customer_id", *columns]].copy()
    if serve == BTYD_MODEL:
        revenue = out["btyd_revenue"].to_numpy(dtype=float)
    elif serve == ENSEMBLE:
        revenue = out[[*ML_MODELS, "btyd_revenue"]].mean(axis=1).to_numpy(dtype=float)
    elif serve == NAIVE:
        if transactions is None:
            raise ValueError("The naive baseline needs the transactions (revenue of the last H months).")
        past = to_pandas(feat.window_revenue(transactions, *naive_window(A, H)))
        revenue = _naive(out[["customer_id"]].merge(past, on="customer_id", how="left")["revenue"])
    else:
        revenue = out[serve].to_numpy(dtype=float)
    out["predicted_revenue"] = np.maximum(revenue, 0.0)
    out["expected_purchases"] = out["btyd_expected_purchases"]
    out["probability_alive"] = out["btyd_probability_alive"]
    out["discount_shares"] = list(monthly_purchase_shares(models.btyd.bgnbd, out, A, H))
    return out


def monthly_purchase_shares(params: btyd.BetaGeoParams, rfm: pd.DataFrame, as_of: dt.date, horizon_months: int) -> np.ndarray:
    """(customers, H) shares of each customer's expected purchases falling in month 1..H after ``as_of``
    (BG/NBD cumulative expectations at each month end, differenced). Rows sum to 1; a customer expected to buy
    nothing gets an even spread."""
    x, tx, T = (rfm[c].to_numpy(dtype=float) for c in ("frequency", "recency", "T"))
    ends = np.array([horizon_days(as_of, m) for m in range(1, horizon_months + 1)], dtype=float)
    # The expected purchases by each month end are P(alive) x the purchases if alive, so P(alive) cancels out of the
    # shares: they depend on (x, T) alone, computed once per distinct pair (tens of thousands for a million
    # customers) instead of once per customer and month.
    codes, pairs = pd.factorize(x + 1j * T)  # (x, T) as one key, exactly
    if_alive = btyd.bgnbd_expected_purchases_if_alive(params, ends[None, :], pairs.real[:, None], pairs.imag[:, None])
    per_month = np.diff(if_alive, axis=1, prepend=0.0).clip(min=0.0)
    total = per_month.sum(axis=1, keepdims=True)
    even = np.full(horizon_months, 1.0 / horizon_months)
    with np.errstate(invalid="ignore", divide="ignore"):
        pair_shares = np.where(total > 0, per_month / np.where(total > 0, total, 1.0), even)
    shares = pair_shares[codes]
    shares[~(btyd.bgnbd_probability_alive(params, x, tx, T) > 0)] = even  # certainly gone: nothing to spread
    return shares


def discount_factors(shares: np.ndarray, discount_rate_monthly: float) -> np.ndarray:
    """Per customer: sum over months m = 1..H of share_m / (1 + d)^m (revenue of month m discounted to the
    as-of date from the end of that month)."""
    shares = np.asarray(shares, dtype=float)
    months = np.arange(1, shares.shape[1] + 1)
    return shares @ (1.0 + discount_rate_monthly) ** -months


def clv_confidence(predicted: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """``predicted / (predicted + (upper - lower))`` = 1 / (1 + relative interval width), in [0, 1].

    1: the interval collapses on the prediction; 0.5: the interval is as wide as the prediction; 0: no
    positive prediction. NaN where there is no interval.
    """
    p = np.maximum(np.asarray(predicted, dtype=float), 0.0)
    width = np.asarray(upper, dtype=float) - np.asarray(lower, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.where(p + width > 0, p / (p + width), 0.0)
    return np.where(np.isfinite(width), np.clip(conf, 0.0, 1.0), np.nan)


# ------------------------------------------------------------------------------------------------ artifacts


def write_json(spark: SparkSession, obj: Any, uri: str) -> None:
    """One JSON document as a single-line text file (a Spark text folder, so any Hadoop-compatible URI works)."""
    spark.createDataFrame([(json.dumps(obj, default=_json_default),)], "value string").coalesce(1).write.mode("overwrite").text(uri)


def read_json(spark: SparkSession, uri: str) -> Any:
    return json.loads("".join(r[0] for r in spark.read.text(uri).collect()))


def _json_default(v: Any) -> Any:
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    raise TypeError(f"not JSON serializable: {type(v)}")


def save_artifacts(spark: SparkSession, root: str, backtest: BacktestResult, production: ProductionModels,
                   served: str, coverage: float) -> dict[str, str]:
    """Persist the production models under ``root``: each ML pipeline (MLlib ``write().overwrite().save``),
    BG/NBD + Gamma-Gamma parameters (JSON), the conformal calibration set (parquet) and a manifest (JSON).
    Returns the artifact path of each model."""
    root = root.rstrip("/")
    paths = {}
    for name, model in production.ml.items():
        paths[name] = f"{root}/{name}"
        model.write().overwrite().save(paths[name])
    paths[BTYD_MODEL] = f"{root}/{BTYD_MODEL}.json"
    write_json(spark, {"production": production.btyd.to_dict(),
                       "backtest": backtest.btyd_backtest.to_dict() if backtest.btyd_backtest else None,
                       "time_unit": "days", "spend_unit": "currency per purchase day"}, paths[BTYD_MODEL])
    calibration = backtest.predictions[backtest.predictions["calibration"]] if len(backtest.predictions) else None
    calibration_uri = None
    if calibration is not None and len(calibration):
        calibration_uri = f"{root}/calibration"
        cols = ["customer_id", "actual", *[m for m in ALL_MODELS if m in calibration.columns]]
        schema = ", ".join(["customer_id string", *[f"{c} double" for c in cols[1:]]])
        from_pandas(spark, calibration[cols].astype({c: float for c in cols[1:]}), schema).coalesce(1).write.mode("overwrite").parquet(calibration_uri)
    if ENSEMBLE in backtest.metrics.index:
        if all(m in paths for m in ML_MODELS):
            paths[ENSEMBLE] = ",".join(paths[m] for m in (*ML_MODELS, BTYD_MODEL))
    paths[NAIVE] = "(no fitted state: revenue of the last H months)"
    manifest = {
        "as_of": production.as_of, "horizon_months": production.horizon_months, "plan": backtest.plan.to_dict(),
        "feature_columns": production.feature_cols, "levels": production.levels, "ml_params": asdict(production.params),
        "max_label": production.max_label, "champion": backtest.champion, "served": served, "coverage": coverage,
        "calibration_uri": calibration_uri, "paths": paths,
    }
    write_json(spark, manifest, f"{root}/manifest.json")
    return paths


def load_artifacts(spark: SparkSession, root: str) -> tuple[dict[str, Any], ProductionModels, pd.DataFrame | None]:
    """The manifest, the production models and the calibration set written by :func:`save_artifacts`."""
    from pyspark.ml import PipelineModel

    root = root.rstrip("/")
    manifest = read_json(spark, f"{root}/manifest.json")
    params = read_json(spark, manifest["paths"][BTYD_MODEL])
    ml = {name: PipelineModel.load(manifest["paths"][name]) for name in ML_MODELS if name in manifest["paths"]}
    production = ProductionModels(
        as_of=dt.date.fromisoformat(manifest["as_of"]), horizon_months=int(manifest["horizon_months"]),
        feature_cols=manifest["feature_columns"], levels=manifest["levels"], btyd=BtydModel.from_dict(params["production"]),
        ml=ml, params=MLParams(**manifest["ml_params"]), max_label=manifest["max_label"],
    )
    calibration = to_pandas(spark.read.parquet(manifest["calibration_uri"])) if manifest["calibration_uri"] else None
    return manifest, production, calibration


def calibration_predictions(calibration: pd.DataFrame, serve: str) -> tuple[np.ndarray, np.ndarray]:
    """Backtest predictions and actual revenue of the calibration half for the served model."""
    return calibration[serve].to_numpy(dtype=float), calibration["actual"].to_numpy(dtype=float)


def metrics_table(backtest: BacktestResult, served: str, paths: dict[str, str]) -> pd.DataFrame:
    """One row per model: the backtest metrics, ``rank_sum`` (champion rule), ``is_champion``, ``is_served``,
    the artifact path and the backtest windows."""
    plan = backtest.plan
    m = backtest.metrics.copy()
    if m.empty:  # no backtest: one row for the served BG/NBD model, metrics unknown
        m = pd.DataFrame(index=[BTYD_MODEL], columns=[*METRIC_COLUMNS, "customers", "coverage_customers"], dtype=float)
    ranks = rank_sums(m) if m["mae"].notna().any() else pd.Series(dtype=float)
    order = [name for name in ALL_MODELS if name in m.index]
    m = m.loc[order]
    out = pd.DataFrame({"model": m.index})
    for col in METRIC_COLUMNS:
        out[col] = m[col].to_numpy(dtype=float)
    out["backtest_customers"] = m["customers"].fillna(0).to_numpy(dtype=np.int64)
    out["coverage_customers"] = m["coverage_customers"].fillna(0).to_numpy(dtype=np.int64)
    out["rank_sum"] = [float(ranks.get(name, math.nan)) for name in m.index]
    out["is_champion"] = [name == backtest.champion for name in m.index]
    out["is_served"] = [name == served for name in m.index]
    out["artifact_path"] = [paths.get(name, "") for name in m.index]
    out["mode"] = plan.mode
    out["horizon_months"] = plan.horizon_months
    out["train_cutoff"] = plan.train_cutoff
    out["score_cutoff"] = plan.score_cutoff
    out["as_of"] = plan.as_of
    return out


def format_table(table: pd.DataFrame) -> str:
    """The metrics table as fixed-width text (what the CLI and the benchmark print)."""
    cols = ["model", "rmse", "mae", "r2", "spearman", "normalized_gini", "top_decile_capture", "decile_mape",
            "total_predicted", "total_actual", "coverage", "mean_interval_width", "is_champion"]
    shown = table[[c for c in cols if c in table.columns]].copy()
    with pd.option_context("display.width", 250, "display.max_columns", 30, "display.float_format", "{:,.4f}".format):
        return shown.to_string(index=False)
