"""An s3:// landing location through dagster-aws, against a real S3 API on loopback (moto's server)."""

import boto3

from clv_assets.ingest import accepted
from clv_assets.landing import LandingZone




def test_s3_landing_is_read_and_cached(spark, s3_endpoint, tmp_path):
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket="shop")
    s3.put_object(Bucket="shop", Key="exports/2023-01.csv", Body=b"customer_id,transaction_date,amount\nA,2023-01-05,10\nB,2023-01-06,20\n")
    s3.put_object(Bucket="shop", Key="exports/readme.md", Body=b"not data")
    s3.put_object(Bucket="shop", Key="other/2023-02.csv", Body=b"customer_id,transaction_date,amount\nZ,2023-02-01,1\n")
    landing = LandingZone(path="s3://shop/exports/", s3_endpoint_url=s3_endpoint, s3_cache_dir=str(tmp_path / "cache"))

    files = landing.list_files()
    assert [f.rsplit("/", 2)[-2:] for f in files] == [["exports", "2023-01.csv"]]
    assert sorted((r.customer_id, r.amount) for r in accepted(landing.load(spark).flagged).collect()) == [("A", 10.0), ("B", 20.0)]

    # A changed object is fetched again; an unchanged one is served from the cache.
    s3.put_object(Bucket="shop", Key="exports/2023-01.csv", Body=b"customer_id,transaction_date,amount\nA,2023-01-05,11\n")
    assert [r.amount for r in accepted(landing.load(spark).flagged).collect()] == [11.0]


def test_s3_keys_that_would_land_outside_the_cache_are_skipped(s3_endpoint, tmp_path):
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket="shady")
    body = b"customer_id,transaction_date,amount\nA,2023-01-05,10\n"
    s3.put_object(Bucket="shady", Key="exports/2023-01.csv", Body=body)
    s3.put_object(Bucket="shady", Key="exports/../../../escape.csv", Body=body)
    landing = LandingZone(path="s3://shady/exports/", s3_endpoint_url=s3_endpoint, s3_cache_dir=str(tmp_path / "cache"))

    assert [f.rsplit("/", 2)[-2:] for f in landing.list_files()] == [["exports", "2023-01.csv"]]
    assert [p.name for p in tmp_path.rglob("*.csv")] == ["2023-01.csv"]
