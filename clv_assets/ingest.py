"""From raw transaction files to the canonical ``transactions`` table (pure Spark functions).

Canonical schema: one row per order line as delivered by the source, with
``transaction_id, customer_id, transaction_date, amount, category, channel, transaction_month, source_file``.
Negative amounts are refunds: they are business data and are kept.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.window import Window

CANONICAL_SCHEMA = T.StructType(
    [
        T.StructField("transaction_id", T.StringType(), False),
        T.StructField("customer_id", T.StringType(), False),
        T.StructField("transaction_date", T.DateType(), False),
        T.StructField("amount", T.DoubleType(), False),
        T.StructField("category", T.StringType(), True),
        T.StructField("channel", T.StringType(), True),
        T.StructField("transaction_month", T.DateType(), False),
        T.StructField("source_file", T.StringType(), True),
    ]
)
CANONICAL_COLUMNS = [f.name for f in CANONICAL_SCHEMA.fields]


@dataclass(frozen=True)
class ColumnMapping:
    """Which source column holds each canonical field (optional ones may be None)."""

    customer_id: str = "customer_id"
    transaction_date: str = "transaction_date"
    amount: str = "amount"
    transaction_id: str | None = None
    category: str | None = None
    channel: str | None = None
    date_format: str = "yyyy-MM-dd"


class LandingSchemaError(ValueError):
    """A landing file lacks a required column (the message names the file and suggests the closest name)."""


def read_raw(spark: SparkSession, files: list[str], file_format: str, delimiter: str = ",") -> DataFrame:
    """Read landing files as they are (CSV columns stay strings), with each row's source file."""
    if file_format == "parquet":
        raw = spark.read.parquet(*files)
    elif file_format == "csv":
        raw = spark.read.options(header=True, sep=delimiter, encoding="UTF-8", mode="PERMISSIVE").csv(files)
    else:
        raise ValueError(f"file_format must be csv or parquet, not {file_format!r}")
    return raw.withColumn("source_file", F.col("_metadata.file_path"))


def resolve_columns(raw: DataFrame, mapping: ColumnMapping, where: str) -> dict[str, str | None]:
    """Map canonical names to source columns; optional columns with their canonical name are picked up."""
    available = [c for c in raw.columns if c != "source_file"]
    resolved: dict[str, str | None] = {}
    for field in ("customer_id", "transaction_date", "amount"):
        name = getattr(mapping, field)
        if name not in available:
            close = difflib.get_close_matches(name, available, n=1, cutoff=0.5)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise LandingSchemaError(
                f"{where}: required column {name!r} (for {field}) not found; columns are {available}.{hint} "
                f"Set the column mapping (e.g. --{field.replace('_', '-')}-col / CLV_{field.upper()}_COL)."
            )
        resolved[field] = name
    for field in ("transaction_id", "category", "channel"):
        name = getattr(mapping, field)
        if name is not None and name not in available:
            raise LandingSchemaError(f"{where}: configured {field} column {name!r} not found; columns are {available}.")
        resolved[field] = name if name is not None else (field if field in available else None)
    return resolved


def _parse_date(column: F.Column, source_type: T.DataType, date_format: str) -> F.Column:
    if isinstance(source_type, (T.DateType, T.TimestampType, T.TimestampNTZType)):
        return F.to_date(column)
    return F.try_to_date(F.trim(column.cast("string")), date_format)


def canonicalize(raw: DataFrame, mapping: ColumnMapping, where: str = "landing files") -> tuple[DataFrame, DataFrame]:
    """Canonical transactions, and the rows that cannot be (with a ``reject_reason``).

    Rows are rejected for a missing customer id, an unparseable date, or a non-numeric or non-finite amount.
    Without a source transaction id, a deterministic one is derived from the row's content.
    """
    cols = resolve_columns(raw, mapping, where)
    types = dict((f.name, f.dataType) for f in raw.schema.fields)
    amount = F.col(cols["amount"]).cast("string").try_cast("double")
    parsed = raw.select(
        F.trim(F.col(cols["customer_id"]).cast("string")).alias("customer_id"),
        _parse_date(F.col(cols["transaction_date"]), types[cols["transaction_date"]], mapping.date_format).alias(
            "transaction_date"
        ),
        amount.alias("amount"),
        *[
            (F.trim(F.col(cols[f]).cast("string")) if cols[f] else F.lit(None).cast("string")).alias(f)
            for f in ("transaction_id", "category", "channel")
        ],
        F.col("source_file"),
        *[F.col(c).cast("string").alias(f"raw_{f}") for f, c in cols.items() if c and f in ("transaction_date", "amount")],
    )
    reason = (
        F.when(F.col("customer_id").isNull() | (F.col("customer_id") == ""), F.lit("missing_customer_id"))
        .when(F.col("transaction_date").isNull(), F.lit("unparseable_date"))
        .when(F.col("amount").isNull() | F.isnan("amount"), F.lit("non_numeric_amount"))
        .when(F.abs(F.col("amount")) == float("inf"), F.lit("non_finite_amount"))
    )
    flagged = parsed.withColumn("reject_reason", reason)
    rejected = flagged.filter(F.col("reject_reason").isNotNull())
    good = flagged.filter(F.col("reject_reason").isNull())
    if cols["transaction_id"] is None:
        content = ["customer_id", "transaction_date", "amount", "category", "channel", "source_file"]
        occurrence = F.row_number().over(Window.partitionBy(*content).orderBy(F.lit(1)))
        good = good.withColumn(
            "transaction_id",
            F.sha2(F.concat_ws("|", *[F.col(c).cast("string") for c in content], occurrence.cast("string")), 256)
            .substr(1, 20),
        )
    good = good.withColumn("transaction_month", F.trunc("transaction_date", "month"))
    return good.select(*CANONICAL_COLUMNS), rejected


def in_window(transactions: DataFrame, start: str, end: str) -> DataFrame:
    """Transactions dated in ``[start, end)`` (ISO dates), e.g. one month partition."""
    return transactions.filter((F.col("transaction_date") >= F.lit(start).cast("date")) & (F.col("transaction_date") < F.lit(end).cast("date")))
