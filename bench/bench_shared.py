"""Benchmark the shared step: the demo's grants delivered at a given scale.

Simulates the departments, extracts and validates the three granted datasets, then times
``publish_for_consumer`` for each consumer (mask, token, leak scan, Parquet + CSV) and
reports rows, seconds and the peak RSS of this process. Run by hand::

    .venv/bin/python bench/bench_shared.py --scale 0.125
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from datetime import date
from pathlib import Path

from catalog.definitions import load_catalog
from catalog.grants import GrantRegistry, GrantRequest
from catalog.store import CatalogStore
from etl.cli import DEMO_GRANTS
from etl.connections import SourceConnection
from etl.extract import extract_to_raw
from etl.publish_shared import publish_for_consumer
from etl.settings import LakeSettings
from etl.validate import validate_partition
from masking.keys import create_key_file

DS = date(2026, 11, 28)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.125)
    args = parser.parse_args()
    import json

    import simulator

    home = Path(tempfile.mkdtemp(prefix="bench-shared-"))
    settings = LakeSettings.under(home)
    started = time.monotonic()
    built = simulator.build_departments(settings.departments_dir, scale=args.scale, as_of=DS)
    print(f"simulated {sum(built.rows.values()):,} records in {time.monotonic() - started:.0f}s")
    catalog, lake = load_catalog(), settings.lake()
    store = CatalogStore(settings.catalog_url)
    conns = json.loads((settings.departments_dir / "connections.json").read_text())
    for dataset_id in sorted({g["dataset_id"] for g in DEMO_GRANTS}):
        dataset = catalog.dataset(dataset_id)
        spec = conns[dataset.source.connection_id]
        conn = SourceConnection(conn_id=dataset.source.connection_id, **spec)
        extract_to_raw(dataset, conn, DS, lake=lake, store=store, batch_id="bench")
        validate_partition(dataset, DS, lake=lake, store=store, run_id="bench")
    registry = GrantRegistry(store)
    for grant in DEMO_GRANTS:
        registry.add(GrantRequest(valid_from=DS, **grant), catalog, by="bench")
    key = create_key_file(settings.var / "masking.key")
    total_rows, total_time = 0, 0.0
    for consumer in registry.consumers(DS):
        t0 = time.monotonic()
        results = publish_for_consumer(
            consumer, DS, catalog=catalog, lake=lake, store=store, run_id="bench",
            load_key=lambda: key,
        )  # fmt: skip
        elapsed = time.monotonic() - t0
        rows = sum(r.rows for r in results)
        total_rows, total_time = total_rows + rows, total_time + elapsed
        print(
            f"  {consumer:10s} {rows:>10,} rows  {elapsed:6.1f}s  {rows / elapsed:>10,.0f} rows/s"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"shared step: {total_rows:,} rows in {total_time:.1f}s; peak RSS {peak:.2f} GiB")


if __name__ == "__main__":
    main()
