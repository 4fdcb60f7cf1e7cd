"""What changed in the landing location since the last look (pure functions behind the new-data sensor).

A landing file is identified by its path and a fingerprint: modification time and size for a local file,
the ETag for an S3 object. A new path or a changed fingerprint is new data; the sensor's cursor remembers the
fingerprints it has already acted on, so each file version triggers exactly one run.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
from pathlib import Path
from urllib.parse import urlparse

import pandas as pd

from clv_assets.landing import SUPPORTED_SUFFIXES, LandingZone, local_landing_files

#: S3 listings look back this far before the newest object already seen, so late-arriving objects with an
#: older timestamp are still listed (their fingerprints decide whether they are new).
S3_LOOKBACK = dt.timedelta(hours=6)


def landing_fingerprints(landing: LandingZone, since: dt.datetime | None = None) -> dict[str, str]:
    """Path -> fingerprint of every landing file now (local folder, single file, or s3:// prefix)."""
    parsed = urlparse(landing.path)
    if parsed.scheme == "s3":
        from dagster_aws.s3.sensor import get_objects

        objects = get_objects(parsed.netloc, parsed.path.lstrip("/"), since_last_modified=since, client=landing.s3_client())
        return {
            f"s3://{parsed.netloc}/{o['Key']}": f"{o['ETag'].strip(chr(34))}@{o['LastModified'].isoformat()}"
            for o in objects if o["Key"].lower().endswith(SUPPORTED_SUFFIXES)
        }
    root = Path(landing.path)
    if not root.exists():
        return {}
    paths = [root] if root.is_file() else local_landing_files(root)
    out = {}
    for p in paths:
        try:
            st = p.stat()
        except FileNotFoundError:  # removed while listing
            continue
        out[str(p.absolute())] = f"{st.st_mtime_ns}:{st.st_size}"
    return out


def new_or_changed(current: dict[str, str], seen: dict[str, str]) -> dict[str, str]:
    return {path: fp for path, fp in sorted(current.items()) if seen.get(path) != fp}


def parse_cursor(cursor: str | None) -> dict:
    return json.loads(cursor) if cursor else {"seen": {}, "newest_s3_modified": None}


def spark_to_strftime(pattern: str) -> str:
    """A Spark datetime pattern (yyyy-MM-dd, dd/MM/yyyy, yyyyMMdd...) as a strftime format."""
    out = pattern
    for spark, py in (("yyyy", "%Y"), ("MM", "%m"), ("dd", "%d"), ("HH", "%H"), ("mm", "%M"), ("ss", "%S")):
        out = out.replace(spark, py)
    return out


def months_touched(landing: LandingZone, paths: list[str]) -> set[str]:
    """First days (YYYY-MM-01) of the months that rows of these files are dated in.

    Reads only the date column. Rows whose date does not parse are skipped here (ingest quarantines them);
    a file whose dates cannot be read at all falls back to a YYYY-MM in its name.
    """
    months: set[str] = set()
    for path in paths:
        try:
            dates = _read_dates(landing, path)
        except Exception:  # noqa: BLE001 - the ingest run will report the file's problem precisely
            dates = pd.Series(dtype="datetime64[ns]")
        found = {d.strftime("%Y-%m-01") for d in dates.dropna()}
        if not found:
            match = re.search(r"(\d{4})-(\d{2})", Path(urlparse(path).path).name)
            found = {f"{match.group(1)}-{match.group(2)}-01"} if match else set()
        months |= found
    return months


def _read_dates(landing: LandingZone, path: str) -> pd.Series:
    parsed = urlparse(path)
    if parsed.scheme == "s3":
        body = landing.s3_client().get_object(Bucket=parsed.netloc, Key=parsed.path.lstrip("/"))["Body"].read()
        source = io.BytesIO(body)
    else:
        source = path
    column = landing.transaction_date_col
    if path.lower().endswith((".parquet", ".pq")):
        values = pd.read_parquet(source, columns=[column])[column]
    else:
        values = pd.read_csv(source, usecols=[column], sep=landing.delimiter, dtype=str)[column]
    if pd.api.types.is_datetime64_any_dtype(values) or not pd.api.types.is_string_dtype(values):
        return pd.to_datetime(values, errors="coerce")
    return pd.to_datetime(values.str.strip(), format=spark_to_strftime(landing.date_format), errors="coerce")
