"""A real writer process for the crash and two-writer tests (run as ``python -m``).

It extracts and validates one dataset into a lake, and can stop at a named point of one
step — ``data`` (data files half written), ``metadata`` (an Iceberg metadata file written,
its catalog pointer not yet moved), ``between`` (one table committed, the next not),
``record`` (every Iceberg commit done, the store's commit point not yet written) or
``commit`` (staged, before any commit) — by writing a marker file and then waiting: for
ever (the test SIGKILLs it) or until a release file appears. No monkeypatched exception:
the test kills or releases a real process.

    python -m tests.lake_writer LAKE CATALOG_URL DEPARTMENTS DATASET DATE RUN \\
        [--steps extract,validate] [--pause STEP:POINT MARKER [RELEASE]]
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date
from pathlib import Path

from catalog.definitions import load_catalog
from catalog.errors import LakeError
from etl.extract import extract_to_raw
from etl.validate import validate_partition
from etl.zones import Lake
from tests.helpers import connections


def _install_pause(lake: Lake, point: str, marker: Path, release: Path | None) -> None:
    def pause() -> None:
        marker.write_text(point)
        while release is None or not release.exists():
            time.sleep(0.05)

    if point == "data":
        import pyarrow.parquet as pq

        original = Lake._write_data_files
        original_batch = pq.ParquetWriter.write_batch

        def write_batch(self, *args, **kwargs):  # noqa: ANN001
            original_batch(self, *args, **kwargs)
            pause()

        def write(self, *args):  # noqa: ANN001
            pq.ParquetWriter.write_batch = write_batch  # only the lake's data files
            try:
                return original(self, *args)
            finally:
                pq.ParquetWriter.write_batch = original_batch

        Lake._write_data_files = write
    elif point == "metadata":
        from pyiceberg.catalog import MetastoreCatalog as Catalog

        original_write = Catalog._write_metadata

        def write_metadata(metadata, io, metadata_path):  # noqa: ANN001
            original_write(metadata, io, metadata_path)
            pause()

        Catalog._write_metadata = staticmethod(write_metadata)
    elif point in ("between", "commit"):
        original_commit = Lake._commit_iceberg
        calls = []

        def commit(self, one, run_id):  # noqa: ANN001
            calls.append(one)
            if point == "commit" or len(calls) == 2:
                pause()
            return original_commit(self, one, run_id)

        Lake._commit_iceberg = commit
    elif point == "record":
        original_record = type(lake.store).record_snapshots

        def record(self, records):  # noqa: ANN001
            pause()
            return original_record(self, records)

        type(lake.store).record_snapshots = record
    else:
        raise SystemExit(f"unknown pause point {point}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    for name in ("lake", "catalog_url", "departments", "dataset", "ds", "run"):
        parser.add_argument(name)
    parser.add_argument("--steps", default="extract,validate")
    parser.add_argument("--pause", nargs="+", default=None)
    parser.add_argument("--work", default=None)
    args = parser.parse_args(argv)
    lake = Lake(args.lake, args.catalog_url)
    dataset = load_catalog().dataset(args.dataset)
    ds = date.fromisoformat(args.ds)
    pause_step, pause_point = args.pause[0].split(":") if args.pause else (None, None)
    try:
        for step in args.steps.split(","):
            if step == pause_step:
                release = Path(args.pause[2]) if len(args.pause) > 2 else None
                _install_pause(lake, pause_point, Path(args.pause[1]), release)
            if step == "extract":
                conn = connections(Path(args.departments))[dataset.source.connection_id]
                extract_to_raw(dataset, conn, ds, lake=lake, store=lake.store, batch_id=args.run)
            else:
                work = Path(args.work) if args.work else None
                validate_partition(
                    dataset, ds, lake=lake, store=lake.store, run_id=args.run, work_dir=work
                )
    except LakeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
