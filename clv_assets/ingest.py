"""From raw transaction files to the canonical ``transactions`` table (pure Spark functions).

Nothing is lost: every landing row ends either in ``transactions`` or in ``quarantined_transactions`` with
its source file, row number and a reason code. Problems with a whole file (missing column, empty file,
wrong delimiter, not UTF-8, a date format that matches no row) stop the run with a message naming the file
and the column, before anything is written.

Negative amounts are refunds: business data, kept and netted downstream, never quarantined.
"""

from __future__ import annotations

import datetime as dt
import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlparse

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
QUARANTINE_COLUMNS = ["source_file", "source_row", "reject_reason", "raw_customer_id", "raw_transaction_date",
                      "raw_amount", "raw_transaction_id"]

#: Why a row was quarantined, in the order the checks apply.
REJECT_REASONS = {
    "malformed_row": "the CSV row has more or fewer fields than its file's header (an unquoted delimiter in a value, say)",
    "missing_customer_id": "the customer id is empty",
    "unparseable_date": "the date does not match the date format",
    "implausible_date": "the date is before 1900 or in the future",
    "date_after_as_of": "the date is after the configured as-of date",
    "non_numeric_amount": "the amount is not a number (or NaN)",
    "non_finite_amount": "the amount is infinite",
    "exact_duplicate_row": "an identical row (every mapped column) was already ingested",
    "duplicate_transaction_id": "another row already has this transaction id",
    "outside_partitions": "the date falls outside the month partitions (CLV_HISTORY_START / CLV_HISTORY_END)",
}
_ROW_BITS = 33  # monotonically_increasing_id() = (Spark partition << 33) + row position in the partition
_MALFORMED = "_malformed_line"  # Spark's corrupt-record column: the raw line of a CSV row whose field count is off


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


class LandingFileError(ValueError):
    """A whole landing file cannot be used; the message names the file (and the column) and what to do."""


class LandingSchemaError(LandingFileError):
    """A landing file lacks a required column (the message suggests the closest name)."""


def _display(path: str) -> str:
    return urlparse(path).path if path.startswith("file:") else path


# ----------------------------------------------------------------------------------------------- file level
def check_local_file(path: str, file_format: str, delimiter: str, mapping: ColumnMapping) -> list[str] | None:
    """Fail fast on a local landing file that cannot be read as configured (cheap: reads its header). Returns a
    CSV file's column names, as its header lists them (None for parquet, whose columns are read by name)."""
    p = Path(path)
    if p.stat().st_size == 0:
        raise LandingFileError(f"{path}: the file is empty (0 bytes). Remove it or replace it with the full export.")
    if file_format == "parquet":
        import pyarrow.parquet as pq

        try:
            columns = pq.read_schema(p).names
        except Exception as exc:  # noqa: BLE001 - any reader failure is the file's problem
            raise LandingFileError(f"{path}: not a readable parquet file ({exc}).") from exc
        check_columns(columns, mapping, path)
        return None
    with p.open("rb") as f:
        head = f.read(1 << 20)
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a character cut at the end of the sample
            line = head[: exc.start].count(b"\n") + 1
            raise LandingFileError(
                f"{path}: not UTF-8 (byte {exc.start}, line {line}: {head[exc.start:exc.start + 1]!r}). "
                "Re-export the file as UTF-8, e.g. `iconv -f latin1 -t utf-8 in.csv > out.csv`."
            ) from exc
        text = head[: exc.start].decode("utf-8")
    header = text.lstrip("\ufeff").splitlines()[0] if text.strip() else ""
    if not header.strip():
        raise LandingFileError(f"{path}: no header row (the first line is empty).")
    fields = [h.strip().strip('"') for h in header.split(delimiter)]
    if len(fields) == 1:
        for other in (";", "\t", "|", ","):
            if other != delimiter and other in header:
                raise LandingFileError(
                    f"{path}: the header {header[:80]!r} is one column with delimiter {delimiter!r}; the file looks "
                    f"delimited by {other!r}. Set the delimiter (--delimiter / CLV_DELIMITER)."
                )
    check_columns(fields, mapping, path)
    return _safe_header(fields)


def _safe_header(names: list[str]) -> list[str]:
    """Column names as Spark makes them from a CSV header: ``_c<i>`` for a blank one, and a repeated name (any
    case) suffixed with its position."""
    lowered = [n.lower() for n in names]
    repeated = {n for n in lowered if lowered.count(n) > 1}
    return [f"_c{i}" if not n else f"{n}{i}" if n.lower() in repeated else n for i, n in enumerate(names)]


def check_columns(available: list[str], mapping: ColumnMapping, where: str) -> dict[str, str | None]:
    """Map canonical names to source columns; optional columns with their canonical name are picked up."""
    resolved: dict[str, str | None] = {}
    for field in ("customer_id", "transaction_date", "amount"):
        name = getattr(mapping, field)
        if name not in available:
            close = difflib.get_close_matches(name, available, n=1, cutoff=0.5)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise LandingSchemaError(
                f"{where}: required column {name!r} (for {field}) not found; columns are {available}.{hint} "
                f"Set the column mapping (--{field.replace('_', '-')}-col / CLV_{field.upper()}_COL)."
            )
        resolved[field] = name
    for field in ("transaction_id", "category", "channel"):
        name = getattr(mapping, field)
        if name is not None and name not in available:
            close = difflib.get_close_matches(name, available, n=1, cutoff=0.5)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise LandingSchemaError(f"{where}: configured {field} column {name!r} not found; columns are {available}.{hint}")
        resolved[field] = name if name is not None else (field if field in available else None)
    return resolved


# ------------------------------------------------------------------------------------------------ row level
def read_raw(spark: SparkSession, files: list[str], file_format: str, delimiter: str = ",",
             headers: dict[str, list[str]] | None = None) -> DataFrame:
    """Read landing files as they are (CSV columns stay strings), with each row's source file and read order.

    Spark reads the CSV files of one read by position, under the first file's header. So files are read in
    groups of identical ``headers`` (each file's column names, from :func:`check_local_file`) and the groups
    matched by column name: exports whose columns moved, or gained one, still land in the right columns. A
    file without a known header (one Spark reads from elsewhere, e.g. ``s3a://``) is read with the first
    such file's columns. A CSV row with more or fewer fields than its header keeps its raw line in
    ``_malformed_line`` (quarantined as ``malformed_row`` by :func:`validate`)."""
    if file_format == "parquet":
        raw = spark.read.parquet(*files).withColumn("source_file", F.col("_metadata.file_path"))
    elif file_format == "csv":
        reader = spark.read.options(header=True, sep=delimiter, encoding="UTF-8", mode="PERMISSIVE",
                                    columnNameOfCorruptRecord=_MALFORMED)
        groups: dict[tuple[str, ...] | None, list[str]] = {}
        for path in files:
            header = (headers or {}).get(path)
            groups.setdefault(tuple(header) if header else None, []).append(path)
        parts = []
        for header, group in groups.items():
            columns = header or reader.csv(group).columns
            schema = T.StructType([T.StructField(c, T.StringType()) for c in columns] + [T.StructField(_MALFORMED, T.StringType())])
            parts.append(reader.schema(schema).csv(group).withColumn("source_file", F.col("_metadata.file_path")))
        raw = parts[0]
        for part in parts[1:]:
            raw = raw.unionByName(part, allowMissingColumns=True)
    else:
        raise ValueError(f"file_format must be csv or parquet, not {file_format!r}")
    return raw.withColumn("_read_id", F.monotonically_increasing_id())


def _parse_date(column: F.Column, source_type: T.DataType, date_format: str) -> F.Column:
    if isinstance(source_type, (T.DateType, T.TimestampType, T.TimestampNTZType)):
        return F.to_date(column)
    return F.try_to_date(F.trim(column.cast("string")), date_format)


def _parse_amount(column: F.Column, source_type: T.DataType) -> F.Column:
    # Doubles, integers and decimals as they are (a round trip through text costs more than the rest of the
    # parsing); text and 32-bit floats through text, so that a float 19.99 stays 19.99 and not 19.9899997...
    if isinstance(source_type, T.NumericType) and not isinstance(source_type, T.FloatType):
        return column.cast("double")
    return column.cast("string").try_cast("double")


def _blank_to_null(column: F.Column) -> F.Column:
    text = F.trim(column.cast("string"))
    return F.when(text != "", text)


def validate(
    raw: DataFrame,
    mapping: ColumnMapping,
    where: str = "landing files",
    *,
    as_of: dt.date | None = None,
    window: tuple[dt.date, dt.date] | None = None,
    today: dt.date | None = None,
) -> DataFrame:
    """Every landing row, parsed into the canonical columns, with ``reject_reason`` null for accepted rows.

    ``window`` is the ``[first, end)`` date range of the month partitions; ``as_of`` quarantines later rows.
    Of two identical rows (or two rows sharing a transaction id) the first read is kept.
    """
    cols = check_columns([c for c in raw.columns if c not in ("source_file", "_read_id", _MALFORMED)], mapping, where)
    types = {f.name: f.dataType for f in raw.schema.fields}
    today = today or dt.datetime.now(dt.timezone.utc).date()
    raw_text = {f: F.col(c).cast("string") if c else F.lit(None).cast("string") for f, c in cols.items()}
    parsed = raw.select(
        _blank_to_null(F.col(cols["customer_id"])).alias("customer_id"),
        _parse_date(F.col(cols["transaction_date"]), types[cols["transaction_date"]], mapping.date_format).alias("transaction_date"),
        _parse_amount(F.col(cols["amount"]), types[cols["amount"]]).alias("amount"),
        *[_blank_to_null(raw_text[f]).alias(f) for f in ("transaction_id", "category", "channel")],
        "source_file",
        "_read_id",
        (F.col(_MALFORMED) if _MALFORMED in raw.columns else F.lit(None).cast("string")).alias(_MALFORMED),
        # As read (text only in the quarantine table): converting every accepted row's number or date to text
        # would cost more than the rest of the parsing.
        *[(F.col(cols[f]) if cols[f] else F.lit(None).cast("string")).alias(f"raw_{f}")
          for f in ("customer_id", "transaction_date", "amount", "transaction_id")],
    )
    date = F.col("transaction_date")
    checks = [
        ("malformed_row", F.col(_MALFORMED).isNotNull()),
        ("missing_customer_id", F.col("customer_id").isNull()),
        ("unparseable_date", date.isNull()),
        ("implausible_date", (date < F.lit("1900-01-01").cast("date")) | (date > F.lit(today))),
        ("date_after_as_of", date > F.lit(as_of) if as_of else F.lit(False)),
        ("non_numeric_amount", F.col("amount").isNull() | F.isnan("amount")),
        ("non_finite_amount", F.abs("amount") == float("inf")),
    ]
    reason = F.lit(None).cast("string")
    for code, condition in reversed(checks):
        reason = F.when(condition, F.lit(code)).otherwise(reason)
    flagged = parsed.withColumn("reject_reason", reason)

    flagged = _flag_duplicates(flagged, has_transaction_id=cols["transaction_id"] is not None)
    if window:
        outside = (date < F.lit(window[0])) | (date >= F.lit(window[1]))
        flagged = flagged.withColumn(
            "reject_reason", F.when(F.col("reject_reason").isNull() & outside, F.lit("outside_partitions")).otherwise(F.col("reject_reason"))
        )
    no_id = [c for c in _CONTENT if c != "transaction_id"]
    derived_id = F.sha2(F.concat_ws("|", *[F.coalesce(F.col(c).cast("string"), F.lit("")) for c in no_id]), 256).substr(1, 20)
    return (
        flagged.withColumn("transaction_id", F.coalesce(F.col("transaction_id"), derived_id))
        .withColumn("transaction_month", F.trunc("transaction_date", "month"))
    )


_CONTENT = ["customer_id", "transaction_date", "amount", "transaction_id", "category", "channel"]
#: Above this many duplicated keys the suspects are joined without broadcasting them.
_BROADCAST_SUSPECT_KEYS = 1_000_000


def _flag_duplicates(flagged: DataFrame, has_transaction_id: bool) -> DataFrame:
    """Mark exact duplicate rows and repeated transaction ids among valid rows, keeping the first row read.

    Sorting every row to find duplicates is what costs at scale, and most landing data has few or none. So
    one cheap aggregation first finds the *suspects*: valid rows whose key (their transaction id, or all
    their columns when they have none) is shared with another row, compared through a 64-bit hash (two
    exact duplicates always share the key; a hash collision only adds a suspect). The exact rules then run
    on the suspects alone: of identical rows (every mapped column) the first read is kept, the others are
    ``exact_duplicate_row``; of the remaining rows sharing a transaction id the first read is kept, the
    others are ``duplicate_transaction_id``.
    """
    valid = F.col("reject_reason").isNull()
    # (xxhash64 skips nulls: a missing id must not hash to one shared value)
    key = F.when(valid & F.col("transaction_id").isNotNull(), F.xxhash64(F.lit("id"), "transaction_id")).when(
        valid, F.xxhash64(F.lit("row"), *_CONTENT))
    keyed = flagged.withColumn("_dup_key", key)
    shared = (keyed.filter(F.col("_dup_key").isNotNull()).groupBy("_dup_key").count().filter("count > 1")
              .select("_dup_key", F.lit(True).alias("_suspect")).localCheckpoint())
    n_shared = shared.count()
    if n_shared == 0:
        return flagged
    marked = keyed.join(F.broadcast(shared) if n_shared <= _BROADCAST_SUSPECT_KEYS else shared, "_dup_key", "left")
    suspects = marked.filter(F.col("_suspect").isNotNull())
    first_read = F.struct(F.col("source_file"), F.col("_read_id"))
    suspects = suspects.withColumn(
        "reject_reason",
        F.when(valid & (F.row_number().over(Window.partitionBy(valid, *_CONTENT).orderBy(first_read)) > 1),
               F.lit("exact_duplicate_row")).otherwise(F.col("reject_reason")),
    )
    if has_transaction_id:
        suspects = suspects.withColumn(
            "reject_reason",
            F.when(valid & F.col("transaction_id").isNotNull()
                   & (F.row_number().over(Window.partitionBy(valid, "transaction_id").orderBy(first_read)) > 1),
                   F.lit("duplicate_transaction_id")).otherwise(F.col("reject_reason")),
        )
    return marked.filter(F.col("_suspect").isNull()).unionByName(suspects).drop("_dup_key", "_suspect")


def accepted(flagged: DataFrame) -> DataFrame:
    return flagged.filter(F.col("reject_reason").isNull()).select(*CANONICAL_COLUMNS)


def quarantined(flagged: DataFrame, expected_rows: int | None = None) -> DataFrame:
    """Rejected rows with their source file, 1-based data row number within that file and reason code.

    ``expected_rows = 0`` (the counts found none) skips the pass over every row that numbers them.
    """
    as_text = [F.col(c).cast("string").alias(c) if c.startswith("raw_") else F.col(c) for c in QUARANTINE_COLUMNS]
    bad = flagged.filter(F.col("reject_reason").isNotNull())
    if expected_rows == 0:
        return bad.withColumn("source_row", F.lit(None).cast("long")).select(*as_text).limit(0)
    # Row numbers from the read order: per (Spark partition, file) block, its first row's position in the file
    # is the number of the file's rows in earlier blocks. One small aggregation, no shuffle of the data.
    block = F.shiftright("_read_id", _ROW_BITS)
    in_block = F.col("_read_id") - F.col("block_start")
    blocks = (
        flagged.groupBy("source_file", block.alias("block"))
        .agg(F.min("_read_id").alias("block_start"), F.count(F.lit(1)).alias("block_rows"))
        .withColumn("rows_before", F.coalesce(F.sum("block_rows").over(
            Window.partitionBy("source_file").orderBy("block").rowsBetween(Window.unboundedPreceding, -1)), F.lit(0)))
    )
    return (
        bad.withColumn("block", block)
        .join(F.broadcast(blocks), ["source_file", "block"])
        .withColumn("source_row", (F.col("rows_before") + in_block + 1).cast("long"))
        .select(*as_text)
    )


def check_files_and_count(flagged: DataFrame, mapping: ColumnMapping) -> dict[str, int]:
    """In one pass over the rows: raise on a file whose dates never parse (wrong date format) or whose text is
    not UTF-8, and count input, accepted and quarantined rows by reason (see :func:`ingest_counts`)."""
    reason = F.col("reject_reason")
    # Only text can be badly encoded or carry a date in the wrong format (raw_* columns keep the source types).
    text = {f.name for f in flagged.schema.fields if isinstance(f.dataType, T.StringType)}
    raw_date = F.col("raw_transaction_date")
    has_date = raw_date.isNotNull() & (F.trim(raw_date) != "") if "raw_transaction_date" in text else raw_date.isNotNull()
    checked = [c for c in ("raw_customer_id", "raw_transaction_date", "raw_amount") if c in text]
    bad_text = F.concat_ws("", *checked).contains("\ufffd") if checked else F.lit(False)
    per_file = flagged.groupBy("source_file").agg(
        F.count(F.lit(1)).alias("rows"),
        F.count_if(has_date).alias("with_date"),
        F.count(F.col("transaction_date")).alias("dates_parsed"),
        F.count_if(bad_text).alias("bad_text"),
        F.first(F.col("raw_transaction_date"), ignorenulls=True).alias("example"),
        *[F.count_if(reason == code).alias(code) for code in REJECT_REASONS],
    ).collect()
    for row in per_file:
        if row["bad_text"]:
            raise LandingFileError(f"{_display(row['source_file'])}: {row['bad_text']} rows are not valid UTF-8. Re-export the file as UTF-8.")
        if row["with_date"] > 0 and row["dates_parsed"] == 0:
            raise LandingFileError(
                f"{_display(row['source_file'])}: no value of the date column {mapping.transaction_date!r} matches the date "
                f"format {mapping.date_format!r} (e.g. {str(row['example'])!r}). Set the format (--date-format / CLV_DATE_FORMAT) "
                "as a Spark pattern, e.g. dd/MM/yyyy or yyyyMMdd."
            )
    by_reason = {code: sum(int(row[code]) for row in per_file) for code in REJECT_REASONS}
    return _counts(sum(int(row["rows"]) for row in per_file), {k: v for k, v in by_reason.items() if v})


def ingest_counts(flagged: DataFrame) -> dict[str, int]:
    """Input rows, accepted rows and quarantined rows by reason: they add up."""
    rows = flagged.groupBy("reject_reason").count().collect()
    return _counts(sum(r["count"] for r in rows), {r["reject_reason"]: r["count"] for r in rows if r["reject_reason"] is not None})


def _counts(input_rows: int, by_reason: dict[str, int]) -> dict[str, int]:
    quarantined_rows = sum(by_reason.values())
    return {"input_rows": input_rows, "accepted_rows": input_rows - quarantined_rows, "quarantined_rows": quarantined_rows,
            **{f"quarantined_{k}": v for k, v in sorted(by_reason.items())}}


class LoadedLanding(NamedTuple):
    """Every landing row flagged (``reject_reason`` null for accepted rows) and the counts by outcome."""

    flagged: DataFrame
    counts: dict[str, int]


def in_window(transactions: DataFrame, start: str, end: str) -> DataFrame:
    """Transactions dated in ``[start, end)`` (ISO dates), e.g. one month partition."""
    return transactions.filter((F.col("transaction_date") >= F.lit(start).cast("date")) & (F.col("transaction_date") < F.lit(end).cast("date")))


def load_landing(
    spark: SparkSession,
    files: list[str],
    file_format: str,
    mapping: ColumnMapping,
    delimiter: str = ",",
    *,
    as_of: dt.date | None = None,
    window: tuple[dt.date, dt.date] | None = None,
    local_copies: list[str] | None = None,
) -> LoadedLanding:
    """Check the landing files, read them, flag every row (see :func:`validate`) and count the outcomes;
    raises on file-level problems.

    The cheap file checks (header, encoding) run on the local ones among ``files``, or on ``local_copies`` of
    them when Spark reads the originals from elsewhere (``s3a://`` objects downloaded to a local cache).
    """
    headers = {}  # each CSV file's columns, for read_raw
    for spark_path, local in zip(files, files if local_copies is None else local_copies):
        if urlparse(local).scheme in ("", "file"):
            header = check_local_file(urlparse(local).path if local.startswith("file:") else local, file_format, delimiter, mapping)
            if header:
                headers[spark_path] = header
    where = files[0] if len(files) == 1 else f"{len(files)} landing files"
    # Not cached: each use (counts, accepted rows, quarantined rows) streams the files again, which keeps memory
    # flat whatever their size; only the few duplicate keys are materialized (see _flag_duplicates).
    flagged = validate(read_raw(spark, files, file_format, delimiter, headers), mapping, where, as_of=as_of, window=window)
    return LoadedLanding(flagged, check_files_and_count(flagged, mapping))
