"""Predictive CLV: BG/NBD on Spark-grouped statistics, backtest windows, champion rule, fallbacks, the assets, the CLI."""


from dataclasses import replace

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from pyspark.sql import functions as F

from clv_assets import btyd, features, predictive
from clv_assets.landing import LandingZone
from clv_assets.sample_data import SampleSpec, simulate, write_sample
from clv_assets.storage import SparkParquetIOManager
from clv_assets_tests.conftest import d

SMALL = SampleSpec(n_customers=1500, seed=11)
FAST_MODEL = {"rf_num_trees": 15, "gbt_max_iter": 8}


pytestmark = pytest.mark.usefixtures("interpreted_plans")


def to_spark(spark, tx: pd.DataFrame):
    tx = tx.copy()
    tx["transaction_date"] = pd.to_datetime(tx["transaction_date"]).dt.date
    return spark.createDataFrame(tx).withColumn("transaction_month", F.trunc("transaction_date", "month")).withColumn(
        "source_file", F.lit("sample"))


@pytest.fixture(scope="module")
def sample(spark):
    tx, _ = simulate(SMALL)
    return tx, to_spark(spark, tx).cache()


def test_bgnbd_grouped_in_spark_equals_ungrouped_pandas_fit(sample):
    tx, sdf = sample
    cutoff = d("2024-12-31")
    model = predictive.fit_btyd(features.build_features(sdf, cutoff), cutoff)

    t = tx[(tx["transaction_date"] <= pd.Timestamp(cutoff)) & (tx["amount"] > 0)]
    days = t.groupby(["customer_id", "transaction_date"])["amount"].sum().reset_index()
    g = days.groupby("customer_id")["transaction_date"]
    x = (g.size() - 1).astype(float)
    recency = (g.max() - g.min()).dt.days.astype(float)
    T = (pd.Timestamp(cutoff) - g.min()).dt.days.astype(float)
    reference = btyd.fit_bgnbd(x, recency, T)  # one row per customer, no weights
    assert model.grouped_rows < len(x)  # grouping did merge customers
    assert model.n_customers == len(x)
    assert model.bgnbd_converged and reference.converged
    for k, v in reference.params.to_dict().items():
        assert getattr(model.bgnbd, k) == pytest.approx(v, rel=1e-5), k


def test_bgnbd_fit_that_overflows_on_its_own_customers_is_refit_with_a_penalty(sample, monkeypatch):
    """A fit at a boundary (huge a and b, seen on ~100 customers) scores every customer -inf: refit penalized."""
    _, sdf = sample
    cutoff = d("2024-12-31")
    feats = features.build_features(sdf, cutoff)
    degenerate = btyd.BetaGeoParams(r=1.46, alpha=103.3, a=200616.2, b=1980866.7)
    rfm = predictive.grouped_rfm(feats)
    assert np.isneginf(btyd.bgnbd_expected_purchases(degenerate, 365.0, rfm["frequency"], rfm["recency"], rfm["T"])).any()
    real_fit, penalizers = btyd.fit_bgnbd, []

    def fit(*args, penalizer=0.0, **kwargs):
        penalizers.append(penalizer)
        result = real_fit(*args, penalizer=penalizer, **kwargs)
        return replace(result, params=degenerate) if penalizer == 0.0 else result

    monkeypatch.setattr(btyd, "fit_bgnbd", fit)
    model = predictive.fit_btyd(feats, cutoff)
    assert penalizers == [0.0, 0.001]
    scores = predictive.btyd_scores(model, predictive.to_pandas(feats.select("customer_id", "frequency", "recency", "T", "monetary")), 365)
    assert np.isfinite(scores["btyd_revenue"]).all()


def test_plan_windows_do_not_overlap(sample):
    _, sdf = sample
    plan = predictive.plan_backtest(sdf, d("2025-12-31"), 12)
    assert plan.mode == "full"
    assert (plan.train_cutoff, plan.score_cutoff) == (d("2023-12-31"), d("2024-12-31"))
    # ML learns from features <= train_cutoff and a target in (train_cutoff, score_cutoff]; it is scored on a target
    # in (score_cutoff, as_of]: the windows meet but do not overlap.
    assert plan.train_cutoff < plan.score_cutoff < plan.as_of
    assert predictive.shift_months(d("2024-02-29"), -12) == d("2023-02-28")
    with pytest.raises(ValueError, match="horizon_months"):
        predictive.plan_backtest(sdf, d("2025-12-31"), 5)


@pytest.mark.parametrize("as_of, mode", [("2025-12-31", "full"), ("2024-06-30", "bgnbd_only"), ("2023-06-30", "no_backtest")])
def test_plan_from_the_features_table_is_the_plan_from_transactions(sample, as_of, mode):
    tx, sdf = sample
    as_of = d(as_of)
    feats = features.build_features(sdf, as_of, categories=[], channels=[])
    plan = predictive.plan_from_first_purchases(feats, as_of, 12)
    assert plan == predictive.plan_backtest(sdf, as_of, 12) and plan.mode == mode
    # Counted independently: customers whose first purchase is on or before each cutoff.
    first = pd.to_datetime(tx["transaction_date"])[tx["amount"] > 0].groupby(tx["customer_id"]).min()
    first = first[first <= pd.Timestamp(as_of)]
    assert plan.first_purchase == first.min().date()
    assert plan.score_customers == int((first <= pd.Timestamp(predictive.shift_months(as_of, -12))).sum())
    assert plan.train_customers == int((first <= pd.Timestamp(predictive.shift_months(as_of, -24))).sum())


@pytest.mark.slow
def test_backtest_targets_and_predictions(sample):
    tx, sdf = sample
    plan = predictive.plan_backtest(sdf, d("2025-12-31"), 12)
    params = predictive.MLParams(rf_num_trees=15, gbt_max_iter=8)
    result, score_set = predictive.run_backtest(sdf, plan, params=params)
    preds = result.predictions.set_index("customer_id")

    # Actuals: net revenue in (A - H, A] of customers who bought by A - H, computed independently.
    dates = pd.to_datetime(tx["transaction_date"])
    first_buy = tx[tx["amount"] > 0].assign(date=dates).groupby("customer_id")["date"].min()
    population = first_buy[first_buy <= pd.Timestamp(plan.score_cutoff)].index
    window = tx[(dates > pd.Timestamp(plan.score_cutoff)) & (dates <= pd.Timestamp(plan.as_of))]
    expected = window.groupby("customer_id")["amount"].sum().reindex(population).fillna(0.0).sort_index()
    assert sorted(preds.index) == list(expected.index)
    np.testing.assert_allclose(preds.loc[expected.index, "actual"], expected.to_numpy(), atol=1e-9)

    models = [*predictive.ML_MODELS, predictive.BTYD_MODEL, predictive.ENSEMBLE, predictive.NAIVE]
    assert list(result.metrics.index) == models
    for name in models:
        assert (preds[name] >= 0).all() and np.isfinite(preds[name]).all()
    np.testing.assert_allclose(preds[predictive.ENSEMBLE], preds[[*predictive.ML_MODELS, predictive.BTYD_MODEL]].mean(axis=1))
    # Calibration half and coverage half split the backtest customers.
    m = result.metrics
    assert (m["coverage_customers"] == (~preds["calibration"]).sum()).all()
    assert 0.3 < preds["calibration"].mean() < 0.7
    assert m["coverage"].between(0.6, 0.95).all()
    assert result.champion == predictive.select_champion(m)
    assert set(result.importances) == {"random_forest", "gradient_boosting"}
    assert sum(result.importances["random_forest"].values()) == pytest.approx(1.0, abs=1e-3)
    # The refit training set is the scoring set: features as of A - H with the target (A - H, A].
    assert score_set.agg(F.max("cutoff_date")).first()[0] == plan.score_cutoff


def test_backtest_sample_keeps_whole_customers_the_same_every_time(sample):
    tx, sdf = sample
    n = tx["customer_id"].nunique()
    assert predictive.backtest_sample(sdf, n, None)[0] is sdf and predictive.backtest_sample(sdf, n, n)[0] is sdf
    kept, share = predictive.backtest_sample(sdf, n, n // 3)
    assert share == pytest.approx(1 / 3, abs=1e-6)
    rows = kept.groupBy("customer_id").count().toPandas().set_index("customer_id")["count"]
    # Whole customers: every row of a kept customer is kept.
    pd.testing.assert_series_equal(rows.sort_index(), tx.groupby("customer_id").size().loc[rows.index].sort_index(),
                                   check_names=False)
    assert abs(len(rows) - n / 3) < 5 * np.sqrt(n * share * (1 - share))  # binomial: 5 standard deviations
    again, _ = predictive.backtest_sample(sdf, n, n // 3)
    assert {r.customer_id for r in again.select("customer_id").distinct().collect()} == set(rows.index)


def test_sampled_backtest_scores_the_sampled_customers_against_their_own_revenue(sample):
    tx, sdf = sample
    plan = predictive.plan_backtest(sdf, d("2024-06-30"), 12)  # BG/NBD only: no ML to wait for
    assert plan.mode == "bgnbd_only"
    # A sample of 30 customers is asked for, but production's ML models learn from the same customers: the
    # sample holds at least max_training_rows of them (60).
    result, _ = predictive.run_backtest(sdf, plan, params=predictive.MLParams(max_training_rows=60), max_customers=30)
    kept, share = predictive.backtest_sample(sdf, plan.score_customers, 60)
    assert result.sample_share == share < 1

    # Independently: the sampled customers who bought by A - H, their revenue in (A - H, A] and in the H months
    # before A - H (the naive baseline, floored at 0).
    dates = pd.to_datetime(tx["transaction_date"])
    sampled = {r.customer_id for r in kept.select("customer_id").distinct().collect()}
    first_buy = tx[tx["amount"] > 0].assign(date=dates).groupby("customer_id")["date"].min()
    population = sorted(set(first_buy[first_buy <= pd.Timestamp(plan.score_cutoff)].index) & sampled)
    preds = result.predictions.set_index("customer_id")
    assert sorted(preds.index) == population
    assert abs(len(population) - 60) < 5 * np.sqrt(plan.score_customers * share * (1 - share))
    assert (result.metrics["customers"] == len(population)).all()

    def revenue(start, end):
        window = tx[(dates > pd.Timestamp(start)) & (dates <= pd.Timestamp(end))]
        return window.groupby("customer_id")["amount"].sum().reindex(population).fillna(0.0).to_numpy()

    np.testing.assert_allclose(preds.loc[population, "actual"], revenue(plan.score_cutoff, plan.as_of), atol=1e-9)
    naive = revenue(predictive.shift_months(plan.score_cutoff, -12), plan.score_cutoff)
    np.testing.assert_allclose(preds.loc[population, predictive.NAIVE], np.maximum(naive, 0.0), atol=1e-9)

    # With the default max_training_rows (250,000) no sample smaller than everyone is drawn.
    whole, _ = predictive.run_backtest(sdf, plan, max_customers=30)
    assert whole.sample_share == 1.0 and len(whole.predictions) == plan.score_customers


def test_champion_rule():
    m = pd.DataFrame({"normalized_gini": [0.70, 0.72, 0.60, 0.72], "mae": [100.0, 110.0, 90.0, 105.0]},
                     index=["a", "b", "c", "d"])
    # gini ranks: b,d 1.5; a 3; c 4 -- mae ranks: c 1, a 2, d 3, b 4 -> sums a 5, b 5.5, c 5, d 4.5
    assert predictive.select_champion(m) == "d"
    tie = pd.DataFrame({"normalized_gini": [0.70, 0.60], "mae": [100.0, 90.0]}, index=["x", "y"])
    assert predictive.select_champion(tie) == "x"  # equal rank sums: the higher Gini wins
    assert predictive.select_champion(pd.DataFrame({"normalized_gini": [np.nan, 0.5], "mae": [1.0, 2.0]}, index=["x", "y"])) == "y"


def test_discounting_and_confidence_by_hand():
    shares = np.array([[0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3]])
    np.testing.assert_allclose(predictive.discount_factors(shares, 0.1),
                               [0.5 / 1.1 + 0.5 / 1.21, (1 / 1.1 + 1 / 1.21 + 1 / 1.331) / 3])
    np.testing.assert_allclose(predictive.discount_factors(shares, 0.0), [1.0, 1.0])
    conf = predictive.clv_confidence(np.array([100.0, 0.0, 50.0, 10.0]), np.array([50.0, 0.0, 50.0, 0.0]),
                                     np.array([150.0, 20.0, 50.0, np.inf]))
    np.testing.assert_allclose(conf[:3], [0.5, 0.0, 1.0])
    assert np.isnan(conf[3])


def test_monthly_purchase_shares_sum_to_one():
    params = btyd.BetaGeoParams(r=0.9, alpha=48.0, a=1.0, b=5.0)
    rfm = pd.DataFrame({"frequency": [0.0, 5.0, 3.0], "recency": [0.0, 300.0, 30.0], "T": [10.0, 320.0, 400.0]})
    shares = predictive.monthly_purchase_shares(params, rfm, d("2025-12-31"), 12)
    assert shares.shape == (3, 12)
    np.testing.assert_allclose(shares.sum(axis=1), 1.0)
    assert (shares >= 0).all()
    assert shares[1, 0] > shares[1, -1]  # a likely-alive customer may still leave: early months weigh more


def test_monthly_purchase_shares_match_expected_purchases_per_customer():
    """Independently: each customer's expected purchases by each month end (BG/NBD, with P(alive)), differenced
    and normalised; customers sharing (x, T) but not t_x have different P(alive), and the same shares."""
    params = btyd.BetaGeoParams(r=0.25, alpha=30.0, a=0.8, b=2.5)
    rfm = pd.DataFrame({"frequency": [0.0, 5.0, 5.0, 3.0, 3.0, 40.0], "recency": [0.0, 300.0, 100.0, 30.0, 390.0, 700.0],
                        "T": [10.0, 320.0, 320.0, 400.0, 400.0, 720.0]})
    as_of = d("2025-01-31")
    shares = predictive.monthly_purchase_shares(params, rfm, as_of, 6)
    ends = [(predictive.shift_months(as_of, m) - as_of).days for m in range(1, 7)]  # 28, 59, 89, 120, 150, 181
    assert ends[:2] == [28, 59]
    for i, row in rfm.iterrows():
        cumulative = [btyd.bgnbd_expected_purchases(params, t, [row["frequency"]], [row["recency"]], [row["T"]])[0] for t in ends]
        per_month = np.diff([0.0, *cumulative])
        np.testing.assert_allclose(shares[i], per_month / per_month.sum(), rtol=1e-9)


def test_short_history_falls_back_to_bgnbd(spark):
    tx, _ = simulate(SampleSpec(n_customers=800, start="2024-07-01", end="2025-12-31", seed=3))
    sdf = to_spark(spark, tx)
    plan = predictive.plan_backtest(sdf, d("2025-12-31"), 12)
    assert plan.mode == "bgnbd_only" and plan.train_cutoff is None and plan.score_cutoff == d("2024-12-31")
    assert "too short" in plan.reason
    result, _ = predictive.run_backtest(sdf, plan)
    assert list(result.metrics.index) == [predictive.NAIVE, predictive.BTYD_MODEL]
    served, warning = predictive.served_model("gradient_boosting", result.champion, plan)
    assert served == predictive.BTYD_MODEL and "too short" in warning
    assert predictive.served_model("champion", result.champion, plan)[0] == result.champion

    short = predictive.plan_backtest(sdf, d("2025-03-31"), 12)  # nine months of history
    assert short.mode == "no_backtest" and short.score_cutoff is None
    none, _ = predictive.run_backtest(sdf, short)
    assert none.champion is None and none.metrics.empty
    assert predictive.served_model("champion", None, short)[0] == predictive.BTYD_MODEL


# ----------------------------------------------------------------------------------------------- assets, CLI


@pytest.fixture(scope="module")
def landing(tmp_path_factory):
    folder = tmp_path_factory.mktemp("predictive") / "landing"
    write_sample(SMALL, folder)
    return folder


MONTHS = {"dagster/asset_partition_range_start": "2023-01-01", "dagster/asset_partition_range_end": "2025-12-01"}


@pytest.mark.slow
def test_materialize_prediction_group(spark_resource, spark, landing, tmp_path):
    from clv_assets.definitions import defs

    wh = tmp_path / "wh"
    resources = {
        "spark": spark_resource,
        "landing": LandingZone(path=str(landing)),
        "io_manager": SparkParquetIOManager(spark=spark_resource, base_uri=str(wh)),
    }
    run_config = {"ops": {"clv_features": {"config": {"horizon_months": 6}},
                          "clv_model": {"config": FAST_MODEL},
                          "clv_predictions": {"config": {"profit_margin": 0.3, "discount_rate_monthly": 0.02}}}}
    with dg.instance_for_test() as instance:
        result = dg.materialize(defs().assets, selection=["transactions", "clv_features", "clv_model", "clv_predictions"],
                                resources=resources, instance=instance, tags=MONTHS, run_config=run_config)
        assert result.success
        meta = {e.asset_key.path[-1]: e.materialization.metadata for e in result.get_asset_materialization_events()}

    table = spark.read.parquet(str(wh / "clv_model")).toPandas().set_index("model")
    assert set(table.index) == {*predictive.MODEL_TYPES, predictive.NAIVE}
    assert table["is_champion"].sum() == 1 and table["is_served"].sum() == 1
    assert (table.loc[table["is_champion"]].index == table.loc[table["is_served"]].index).all()
    assert (table["score_cutoff"] == d("2025-06-30")).all() and (table["horizon_months"] == 6).all()
    champion = table.index[table["is_champion"]][0]
    assert meta["clv_model"]["champion"].value == champion
    assert meta["clv_model"]["lift_chart"].value.startswith("![lift](data:image/png;base64,")
    assert "| model |" in meta["clv_model"]["backtest_metrics"].value
    assert "feature_importance_random_forest" in meta["clv_model"]
    artifacts = wh / "_artifacts/clv_model"
    assert (artifacts / "bgnbd_gamma_gamma.json").exists()
    for name in predictive.ML_MODELS:  # only what serves is refit and saved
        refit = name in predictive.models_needed(champion)
        assert (artifacts / name / "metadata").exists() == refit == bool(table.loc[name, "artifact_path"]), name

    p = spark.read.parquet(str(wh / "clv_predictions")).toPandas()
    feats = spark.read.parquet(str(wh / "clv_features")).toPandas()
    assert len(p) == len(feats) == p["customer_id"].nunique()
    assert (p["model_name"] == champion).all() and (p["horizon_months"] == 6).all()
    assert (p["predicted_revenue"] >= 0).all() and (p["predicted_clv"] >= 0).all()
    assert (p["prediction_lower"] <= p["predicted_revenue"] + 1e-9).all()
    assert (p["predicted_revenue"] <= p["prediction_upper"] + 1e-9).all()
    for col in ("probability_alive", "churn_probability", "clv_confidence"):
        assert p[col].between(0, 1).all(), col
    np.testing.assert_allclose(p["probability_alive"] + p["churn_probability"], 1.0)
    # CLV = margin x revenue discounted: at 2% a month over 6 months the factor is between 1/1.02^6 and 1/1.02.
    ratio = (p["predicted_clv"] / (0.3 * p["predicted_revenue"]))[p["predicted_revenue"] > 0]
    assert ratio.between(1 / 1.02**6 - 1e-9, 1 / 1.02 + 1e-9).all()
    one_time = feats.set_index("customer_id")["frequency"] == 0
    assert (p.set_index("customer_id").loc[one_time[one_time].index, "probability_alive"] == 1.0).all()


@pytest.mark.slow
def test_cli_predictive(landing, tmp_path, monkeypatch):
    from clv_assets.cli_predictive import predictive as predictive_command

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    args = ["--transactions", str(landing), "--model-type", "bgnbd_gamma_gamma", "--prediction-horizon", "3",
            "--profit-margin", "0.25", "--discount-rate", "0.0", "--warehouse", str(tmp_path / "wh"),
            "--output", str(tmp_path / "out"), "--rf-num-trees", "10", "--gbt-max-iter", "5"]
    result = CliRunner().invoke(predictive_command, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "Backtest" in result.output and "bgnbd_gamma_gamma" in result.output and "normalized_gini" in result.output
    out = pd.read_parquet(tmp_path / "out/clv_predictions.parquet")
    assert (out["model_name"] == "bgnbd_gamma_gamma").all()
    # no discounting: CLV is exactly margin x revenue
    np.testing.assert_allclose(out["predicted_clv"], 0.25 * out["predicted_revenue"])
    assert (tmp_path / "out/clv_model.parquet").exists()


def test_only_the_served_models_are_refit_and_training_is_sampled(spark):
    assert predictive.models_needed(predictive.ENSEMBLE) == predictive.ML_MODELS
    assert predictive.models_needed("random_forest") == ("random_forest",)
    assert predictive.models_needed(predictive.BTYD_MODEL) == predictive.models_needed(predictive.NAIVE) == ()
    rows = spark.range(10_000)
    assert predictive.training_sample(rows, 20_000, seed=1) is rows
    sampled = predictive.training_sample(rows, 2_000, seed=1).count()
    assert 1_800 < sampled < 2_200  # binomial(10,000, 0.2): 5 standard deviations either side


def test_training_data_has_the_label_in_one_partition_per_task_slot(spark):
    rows = spark.createDataFrame([(f"c{i}", t) for i, t in enumerate([-5.0, 0.0, 3.0, 10.0])], "customer_id string, target double")
    for log_target, expected in ((False, [-5.0, 0.0, 3.0, 10.0]), (True, [0.0, 0.0, np.log1p(3.0), np.log1p(10.0)])):
        data = predictive.training_data(rows, predictive.MLParams(log_target=log_target))
        assert {r.customer_id: r.label for r in data.collect()} == pytest.approx({f"c{i}": v for i, v in enumerate(expected)})
        assert data.rdd.getNumPartitions() == spark.sparkContext.defaultParallelism
        data.unpersist()


def test_models_scoring_in_one_pass_give_each_models_own_predictions(sample):
    """predict_ml chains the pipelines over one pass; each column must equal that model's transform on its own."""
    _, sdf = sample
    feats = features.build_features(sdf, d("2024-12-31"))
    cols = features.feature_columns(feats)
    data = predictive.training_data(feats.withColumn("target", F.col("net_revenue_90d")), predictive.MLParams())
    params = predictive.MLParams(rf_num_trees=3)
    models = {name: predictive.fit_ml(name, data, cols, params) for name in ("linear_regression", "random_forest")}
    together = predictive.predict_ml(models, feats, log_target=False, keep=("frequency",)).set_index("customer_id")
    assert list(together.columns) == ["frequency", "linear_regression", "random_forest"]
    for name, model in models.items():
        alone = model.transform(feats).select("customer_id", "raw_prediction").toPandas().set_index("customer_id")
        expected = alone["raw_prediction"].clip(lower=0.0).reindex(together.index)
        np.testing.assert_allclose(together[name], expected.to_numpy(), rtol=1e-12)
    assert (together["linear_regression"] != together["random_forest"]).any()
    data.unpersist()


def test_served_naive_baseline_is_last_horizon_revenue_floored(sample):
    """Serving the naive baseline: each customer's net revenue of the last H months, 0 when none, never below 0."""
    tx, sdf = sample
    as_of, H = d("2025-12-31"), 12
    plan = predictive.plan_backtest(sdf, as_of, H)
    feats = features.build_features(sdf, as_of)
    models = predictive.fit_production(feats, plan, None, [], {"categories": [], "channels": []})
    out = predictive.predict_production(models, feats, sdf, predictive.NAIVE).set_index("customer_id")

    dates = pd.to_datetime(tx["transaction_date"])
    window = tx[(dates > pd.Timestamp("2024-12-31")) & (dates <= pd.Timestamp(as_of))]
    expected = window.groupby("customer_id")["amount"].sum().reindex(out.index).fillna(0.0).clip(lower=0.0)
    assert len(out) == feats.count()
    np.testing.assert_allclose(out["predicted_revenue"], expected.to_numpy(), atol=1e-6)
    assert (out["predicted_revenue"] == 0).any() and (out["predicted_revenue"] > 0).any()
