"""Where the trained model's files live, and how they reach S3 through dagster-aws.

``CLV_ARTIFACTS_URI`` unset: the files stay under ``<warehouse>/_artifacts/clv_model`` (written by Spark).
A Hadoop URI (``s3a://``, ``hdfs://``, a path): under ``<uri>/clv_model``, written by Spark too.
``s3://bucket/prefix``: Spark writes into a local cache folder, which is then copied to S3 with boto3:

- ``s3://bucket/prefix/clv_model/versions/<version>/...``: one trained model, uploaded in full first;
- ``s3://bucket/prefix/clv_model/CURRENT.json``: the version being served. Switching model is one PUT of
  this small object, so a reader sees the old model or the new one, never a mix. Older versions are deleted
  after the switch (a reader caught in the middle of one starts over on the new version).

Readers copy the current version into their cache, downloading only files they do not hold yet (by ETag).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from clv_assets.storage import absolute_uri

MODEL = "clv_model"
POINTER = "CURRENT.json"
VERSIONS = "versions"
MANIFEST = "manifest.json"
CHECKSUM_SUFFIX = ".crc"  # Hadoop's local-disk checksums: not uploaded, S3 checks integrity itself


# ------------------------------------------------------------------------------------ S3 folders (boto3)


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix/`` -> (``bucket``, ``some/prefix``)."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"Not an s3://bucket/prefix URI: {uri}")
    return parsed.netloc, parsed.path.strip("/")


def _key(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p.strip("/"))


def new_version() -> str:
    """A version name that sorts by upload time and never repeats."""
    return f"{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S.%fZ}-{uuid.uuid4().hex[:6]}"


def list_objects(client, bucket: str, prefix: str) -> dict[str, str]:
    """ETag of every object under ``prefix/``, by path relative to it."""
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=_key(prefix) + "/"):
        for obj in page.get("Contents", []):
            found[obj["Key"][len(_key(prefix)) + 1:]] = obj["ETag"]
    return found


def local_files(folder: str | Path) -> list[str]:
    """The files under ``folder`` (relative, ``/``-separated), Hadoop checksum files left out."""
    root = Path(folder)
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and p.suffix != CHECKSUM_SUFFIX)


def delete_objects(client, bucket: str, keys: list[str]) -> None:
    for start in range(0, len(keys), 1000):
        client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[start:start + 1000]], "Quiet": True})


def upload_folder(client, folder: str | Path, bucket: str, prefix: str) -> None:
    """Make ``prefix/`` hold exactly the files of ``folder``: upload them all, then delete the objects it no longer has."""
    files = local_files(folder)
    for rel in files:
        client.upload_file(str(Path(folder) / rel), bucket, _key(prefix, rel))
    delete_objects(client, bucket, [_key(prefix, rel) for rel in set(list_objects(client, bucket, prefix)) - set(files)])


def download_folder(client, bucket: str, prefix: str, folder: str | Path, known: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """Make ``folder`` hold exactly the objects under ``prefix/``. Files whose ETag is in ``known`` (relative path ->
    ETag of the local copy) are kept; other files are removed. Returns the objects' ETags and what was downloaded."""
    root = Path(folder)
    remote = list_objects(client, bucket, prefix)
    downloaded = []
    for rel, etag in remote.items():
        target = root / rel
        if known.get(rel) != etag or not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(bucket, _key(prefix, rel), str(target))  # boto3 writes a temporary file, then renames
            downloaded.append(rel)
    for path in sorted(root.rglob("*"), reverse=True):  # deepest first, so emptied folders go too
        if path.is_file() and path.relative_to(root).as_posix() not in remote:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    return remote, downloaded


def publish(client, folder: str | Path, bucket: str, prefix: str) -> str:
    """Upload ``folder`` as a new version under ``prefix/versions/``, make it the current one, then delete the
    older versions (not newer ones: another upload may be under way). Returns the new version."""
    version = new_version()
    upload_folder(client, folder, bucket, _key(prefix, VERSIONS, version))
    pointer = {"version": version, "written_at": str(folder), "published_at": dt.datetime.now(dt.timezone.utc).isoformat()}
    client.put_object(Bucket=bucket, Key=_key(prefix, POINTER), Body=json.dumps(pointer).encode(), ContentType="application/json")
    older = [rel for rel in list_objects(client, bucket, _key(prefix, VERSIONS)) if rel.split("/")[0] < version]
    delete_objects(client, bucket, [_key(prefix, VERSIONS, rel) for rel in older])
    return version


def current(client, bucket: str, prefix: str) -> dict | None:
    """The current version (``version``, ``written_at``: the folder it was saved in), or None before the first upload."""
    from botocore.exceptions import ClientError

    try:
        return json.loads(client.get_object(Bucket=bucket, Key=_key(prefix, POINTER))["Body"].read())
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
            return None
        raise


def fetch(client, bucket: str, prefix: str, folder: str | Path, known: dict[str, str] | None = None,
          attempts: int = 3) -> tuple[str, dict[str, str]]:
    """Copy the current version into ``folder``, downloading only what changed since ``known`` (relative path ->
    ETag). Returns the version and the ETags of its files."""
    from botocore.exceptions import ClientError

    for attempt in range(attempts):
        pointer = current(client, bucket, prefix)
        if pointer is None:
            raise FileNotFoundError(f"No model under s3://{bucket}/{prefix}/: materialize clv_model first.")
        try:
            etags, downloaded = download_folder(client, bucket, _key(prefix, VERSIONS, pointer["version"]), folder, known or {})
            break
        except ClientError as exc:  # the version was replaced (and deleted) while we copied it: start over
            if exc.response["Error"]["Code"] not in ("NoSuchKey", "404") or attempt == attempts - 1:
                raise
    relocate_manifest(folder, pointer["written_at"], downloaded)
    return pointer["version"], etags


def relocate_manifest(folder: str | Path, written_at: str, downloaded: list[str]) -> None:
    """The manifest names the model files by absolute path: point a freshly downloaded copy at this folder."""
    if str(folder) == written_at:
        return
    old, new = json.dumps(written_at + "/")[1:-1], json.dumps(str(folder) + "/")[1:-1]
    for rel in downloaded:
        if rel.startswith(MANIFEST + "/part-"):
            path = Path(folder) / rel
            path.write_text(path.read_text().replace(old, new))


# ------------------------------------------------------------------------------------ the setting


@dataclass(frozen=True)
class ArtifactStore:
    """Where clv_model keeps its files (``uri``), and for ``s3://`` the local folder Spark works in."""

    uri: str
    cache_dir: str = "data/artifacts_cache"
    endpoint_url: str | None = None

    @classmethod
    def from_env(cls, warehouse_uri: str) -> ArtifactStore:
        """``CLV_ARTIFACTS_URI`` (default ``<warehouse>/_artifacts``), ``CLV_ARTIFACTS_CACHE``, ``CLV_S3_ENDPOINT_URL``."""
        uri = os.environ.get("CLV_ARTIFACTS_URI") or f"{absolute_uri(warehouse_uri).rstrip('/')}/_artifacts"
        return cls(uri=absolute_uri(uri), cache_dir=os.environ.get("CLV_ARTIFACTS_CACHE") or "data/artifacts_cache",
                   endpoint_url=os.environ.get("CLV_S3_ENDPOINT_URL") or None)

    @property
    def on_s3(self) -> bool:
        return urlparse(self.uri).scheme == "s3"

    @property
    def s3_location(self) -> tuple[str, str]:
        bucket, prefix = split_s3_uri(self.uri)
        return bucket, _key(prefix, MODEL)

    @property
    def folder(self) -> str:
        """What Spark writes and reads: ``<uri>/clv_model``, or for ``s3://`` its copy in the local cache."""
        if not self.on_s3:
            return f"{self.uri.rstrip('/')}/{MODEL}"
        bucket, prefix = self.s3_location
        return str(Path(self.cache_dir).absolute().joinpath(bucket, *prefix.split("/")))

    def _state_file(self) -> Path:
        return Path(self.folder + ".s3.json")  # the version in the cache and the ETags of its files

    def client(self):
        from dagster_aws.s3 import S3Resource

        return S3Resource(endpoint_url=self.endpoint_url).get_client()

    def _check_spark(self, spark) -> None:
        from clv_assets.spark import shares_local_disk

        if not shares_local_disk(spark):
            raise RuntimeError(
                f"CLV_ARTIFACTS_URI={self.uri}: s3:// artifacts go through a local folder ({self.folder}), which "
                "Spark's executors on a remote cluster cannot see. Use an s3a:// (or hdfs://) CLV_ARTIFACTS_URI "
                "or warehouse that Spark writes itself."
            )

    def for_writing(self, spark) -> str:
        """The folder clv_model saves a new model into (for ``s3://``: the emptied cache, uploaded by :meth:`publish`)."""
        if self.on_s3:
            self._check_spark(spark)
            shutil.rmtree(self.folder, ignore_errors=True)
            self._state_file().unlink(missing_ok=True)
        return self.folder

    def publish(self) -> str:
        """Make the saved model the served one; returns where it now lives (its ``s3://`` version, or the folder)."""
        if not self.on_s3:
            return self.folder
        bucket, prefix = self.s3_location
        client = self.client()
        version = publish(client, self.folder, bucket, prefix)
        self._remember(version, list_objects(client, bucket, _key(prefix, VERSIONS, version)))
        return f"s3://{bucket}/{_key(prefix, VERSIONS, version)}"

    def for_reading(self, spark) -> str:
        """The folder to load the served model from (for ``s3://``: first brought up to date with S3)."""
        if self.on_s3:
            self._check_spark(spark)
            bucket, prefix = self.s3_location
            state = json.loads(self._state_file().read_text()) if self._state_file().exists() else {}
            self._remember(*fetch(self.client(), bucket, prefix, self.folder, state.get("etags")))
        return self.folder

    def push(self, relative: str) -> None:
        """Upload one rewritten file or folder of the model read last (the drift reference) in place."""
        if not self.on_s3:
            return
        bucket, prefix = self.s3_location
        version = json.loads(self._state_file().read_text())["version"]
        client = self.client()
        upload_folder(client, Path(self.folder) / relative, bucket, _key(prefix, VERSIONS, version, relative))
        self._remember(version, list_objects(client, bucket, _key(prefix, VERSIONS, version)))

    def _remember(self, version: str, etags: dict[str, str]) -> None:
        self._state_file().write_text(json.dumps({"version": version, "etags": etags}))
