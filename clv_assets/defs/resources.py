"""Resources and executor shared by every asset.

All assets of a run execute in one process (the in-process executor) so that they share one Spark
session instead of starting a JVM per step.
"""

import os

import dagster as dg

from clv_assets.landing import LandingZone
from clv_assets.spark import SparkResource
from clv_assets.storage import SparkParquetIOManager


def build_resources() -> dict:
    spark = SparkResource.from_env()
    return {
        "spark": spark,
        "landing": LandingZone.from_env(),
        "io_manager": SparkParquetIOManager(
            spark=spark, base_uri=os.environ.get("CLV_WAREHOUSE_URI") or "data/warehouse"
        ),
    }


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources=build_resources(), executor=dg.in_process_executor)
