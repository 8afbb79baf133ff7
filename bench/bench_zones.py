"""Benchmark: the raw zones' write and read, folder protocol against Iceberg tables.

Simulates the departments at a scale, extracts every dataset once to get the delivered rows
in memory, then writes and reads exactly those rows through both implementations of the
zones module: the folder protocol as it was before the Iceberg tables (``git show
cd4f5bf:etl/zones.py``, main just before issue 7 was merged, loaded as a module of its
own) and the Iceberg tables of this tree. Prints write, rewrite (replace the same date),
read and streaming-read times, sizes on disk, and the time of ``lake maintain``. Not part
of the test run; at most scale 0.125 on a shared machine.

    .venv/bin/python bench/bench_zones.py --scale 0.125
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

DS = date(2026, 11, 28)
FOLDER_PROTOCOL = "cd4f5bf"  # the last commit whose etl/zones.py wrote folders + manifests


def _folder_zones(workdir: Path, ref: str):
    """The folder-protocol zones module of ``ref``, importable beside this tree's."""
    source = subprocess.run(
        ["git", "show", f"{ref}:etl/zones.py"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    path = workdir / "zones_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("zones_before", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["zones_before"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _delivered(workdir: Path, scale: float) -> dict:
    """Every dataset's delivery for DS, as extracted (Arrow tables in memory)."""
    import simulator
    from catalog.definitions import load_catalog
    from etl.extract import extract_to_raw
    from etl.settings import LakeSettings
    from etl.zones import RAW_SOURCES
    from tests.helpers import connections

    settings = LakeSettings.under(workdir / "source")
    if not (settings.departments_dir / "connections.json").exists():
        simulator.build_departments(settings.departments_dir, scale=scale, as_of=DS)
    lake = settings.lake()
    conns = connections(settings.departments_dir)
    tables = {}
    for dataset in load_catalog().datasets:
        conn = conns[dataset.source.connection_id]
        extract_to_raw(dataset, conn, DS, lake=lake, store=lake.store, batch_id="bench")
        tables[dataset.id] = (
            dataset,
            lake.read_partition(lake.dataset_partition(RAW_SOURCES, dataset, DS)),
        )
    return tables


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _run(name: str, lake, tables: dict, zone_root: Path) -> dict:
    paths = {i: lake.dataset_partition("raw/sources", d, DS) for i, (d, _t) in tables.items()}
    figures = {"implementation": name, "rows": sum(t.num_rows for _d, t in tables.values())}
    for phase in ("write", "rewrite"):
        started = time.perf_counter()
        for dataset_id, (_dataset, table) in tables.items():
            lake.write_partition(paths[dataset_id], table.to_batches(), table.schema, private=True)
        figures[f"{phase}_s"] = round(time.perf_counter() - started, 2)
    started = time.perf_counter()
    rows = sum(lake.read_partition(p).num_rows for p in paths.values())
    figures["read_s"] = round(time.perf_counter() - started, 2)
    started = time.perf_counter()
    streamed = sum(b.num_rows for p in paths.values() for b in lake.partition_batches(p))
    figures["stream_read_s"] = round(time.perf_counter() - started, 2)
    assert rows == streamed == figures["rows"]
    figures["bytes_on_disk"] = _size(zone_root)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.125)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--before", default=FOLDER_PROTOCOL, help="git ref of the folder code")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-zones-"))
    workdir.mkdir(parents=True, exist_ok=True)
    from etl.zones import Lake

    tables = _delivered(workdir, args.scale)
    results = []

    before = workdir / "before"
    shutil.rmtree(before, ignore_errors=True)
    folder_zones = _folder_zones(workdir, args.before)
    results.append(_run("folders", folder_zones.Lake(str(before)), tables, before))

    after = workdir / "after"
    shutil.rmtree(after, ignore_errors=True)
    (workdir / "after.db").unlink(missing_ok=True)
    lake = Lake(str(after), f"sqlite:///{workdir / 'after.db'}")
    figures = _run("iceberg", lake, tables, after)
    started = time.perf_counter()
    reports = lake.maintain(now=lake_now() + timedelta(days=30), orphan_age=timedelta(0))
    figures["maintain_s"] = round(time.perf_counter() - started, 2)
    figures["maintain_expired"] = sum(r.snapshots_expired for r in reports)
    figures["maintain_orphans"] = sum(r.orphans_removed for r in reports)
    figures["bytes_after_maintain"] = _size(after)
    results.append(figures)
    for r in results:
        print(json.dumps(r))
    old, new = results
    for key in ("write_s", "rewrite_s", "read_s", "stream_read_s"):
        ratio = new[key] / old[key]
        print(f"{key:14s} folders {old[key]:7.2f}  iceberg {new[key]:7.2f}  ({ratio:.2f}x)")


def lake_now():
    from datetime import UTC, datetime

    return datetime.now(UTC)


if __name__ == "__main__":
    main()
