"""The new-data sensor: exactly one run per new file version, local folder and S3 (moto's server)."""

import json

import boto3
import dagster as dg

from clv_assets import sensing
from clv_assets.defs.sensors import new_transaction_files
from clv_assets.landing import LandingZone

HEADER = "customer_id,transaction_date,amount\n"


def tick(landing, cursor=None, instance=None):
    with dg.instance_for_test() as inst:
        context = dg.build_sensor_context(instance=instance or inst, cursor=cursor, resources={"landing": landing})
        result = new_transaction_files(context)
    return result


def ranges(result):
    return [(r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"]) for r in result.run_requests]


def test_new_file_then_retick_then_changed_file_then_restart(tmp_path):
    landing = LandingZone(path=str(tmp_path))
    (tmp_path / "jan.csv").write_text(HEADER + "A,2023-01-05,10\nB,2023-03-02,5\n")

    first = tick(landing)
    assert ranges(first) == [("2023-01-01", "2023-03-01")]  # the months the file's rows touch
    assert {k.to_user_string() for k in first.run_requests[0].asset_selection} == {"transactions", "quarantined_transactions"}

    again = tick(landing, first.cursor)
    assert again.run_requests == [] and "No new" in again.skip_reason.skip_message

    (tmp_path / "jan.csv").write_text(HEADER + "A,2023-01-05,10\nB,2023-02-02,5\nC,2023-02-03,7\n")  # corrected export
    changed = tick(landing, first.cursor)
    assert ranges(changed) == [("2023-01-01", "2023-02-01")]
    assert changed.run_requests[0].run_key != first.run_requests[0].run_key

    restarted = tick(landing, json.loads(json.dumps(changed.cursor)))  # a restart only has the stored cursor
    assert restarted.run_requests == []


def test_ingest_and_sensor_skip_what_spark_hides_files_and_folders_named_with_a_dot_or_underscore(tmp_path):
    root = tmp_path / "landing"
    for name in ["a.csv", "sub/b.csv", "_archive/old.csv", ".tmp/part.csv", "_SUCCESS", "sub/.c.csv", "notes.md"]:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(HEADER + "A,2023-01-05,10\n")
    landing = LandingZone(path=str(root))
    assert [f.removeprefix(str(root)) for f in landing.list_files()] == ["/a.csv", "/sub/b.csv"]
    assert sorted(p.removeprefix(str(root)) for p in sensing.landing_fingerprints(landing)) == ["/a.csv", "/sub/b.csv"]


def test_file_arriving_during_a_tick_is_picked_up_next_tick(tmp_path, monkeypatch):
    landing = LandingZone(path=str(tmp_path))
    (tmp_path / "a.csv").write_text(HEADER + "A,2023-01-05,10\n")
    real = sensing.landing_fingerprints

    def listing_then_arrival(*args, **kwargs):
        seen = real(*args, **kwargs)
        (tmp_path / "b.csv").write_text(HEADER + "B,2023-04-01,10\n")  # lands right after the listing
        return seen

    monkeypatch.setattr(sensing, "landing_fingerprints", listing_then_arrival)
    first = tick(landing)
    monkeypatch.setattr(sensing, "landing_fingerprints", real)
    assert ranges(first) == [("2023-01-01", "2023-01-01")]
    second = tick(landing, first.cursor)
    assert ranges(second) == [("2023-04-01", "2023-04-01")]
    assert tick(landing, second.cursor).run_requests == []


def test_unreadable_dates_fall_back_to_the_month_in_the_file_name(tmp_path):
    (tmp_path / "transactions_2024-05.csv").write_text("cust,day,value\nA,x,1\n")
    result = tick(LandingZone(path=str(tmp_path)))
    assert ranges(result) == [("2024-05-01", "2024-05-01")]


def test_spark_date_pattern_conversion():
    assert sensing.spark_to_strftime("dd/MM/yyyy") == "%d/%m/%Y"
    assert sensing.spark_to_strftime("yyyyMMdd") == "%Y%m%d"




def test_s3_prefix_new_object_retick_and_changed_object(s3_endpoint):
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket="shop")
    landing = LandingZone(path="s3://shop/landing/", s3_endpoint_url=s3_endpoint)
    assert tick(landing).run_requests == []

    s3.put_object(Bucket="shop", Key="landing/2023-06.csv", Body=(HEADER + "A,2023-06-05,10\n").encode())
    s3.put_object(Bucket="shop", Key="elsewhere/2023-07.csv", Body=(HEADER + "A,2023-07-05,10\n").encode())
    first = tick(landing)
    assert ranges(first) == [("2023-06-01", "2023-06-01")]
    assert tick(landing, first.cursor).run_requests == []

    s3.put_object(Bucket="shop", Key="landing/2023-06.csv", Body=(HEADER + "A,2023-06-05,10\nB,2023-08-01,3\n").encode())
    changed = tick(landing, first.cursor)
    assert ranges(changed) == [("2023-06-01", "2023-08-01")]
    assert tick(landing, changed.cursor).run_requests == []
