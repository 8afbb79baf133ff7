"""Benchmark: the whole public step (issue 12) on simulated departments.

Simulates the departments, extracts and validates the open-able datasets (not timed
here: bench_pipeline.py measures them), then runs ``publish_open_data`` — current clean
state, public rules, k-anonymity gate, statistics, leak scan of every staged file, commit,
DCAT catalogue and portal page — in its own process, so its peak RSS is its own. Prints
one JSON line with wall time, peak RSS and, per dataset, the achieved k, suppression and
highest risk. Not part of the test run.

    .venv/bin/python bench/bench_public.py                  # scale 0.125
    .venv/bin/python bench/bench_public.py --scale 1.0      # the issue's full-scale target

``--replay HOME --date D`` measures instead what an incremental night's publication costs
on a lake ``bench/bench_week.py`` left (``HOME`` its ``--workdir``, ``D`` its incremental
night): the store copied aside, the night's own public partitions struck from the copy,
``publish_open_data`` run again for ``D`` (so it keeps and rebuilds what that night did),
with its wall and CPU seconds, peak RSS, the tables it rebuilt and kept, and each part's
seconds. It starts from the kept states (decision 0021) the lake's nights left, unless
``--no-kept-state``. A kept state's version covers ``etl/publish_public.py`` by its bytes:
after an edit, replay the night before first (it writes the states with this code), or
the replay measures a night that reads the whole clean zone (decision 0026).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DS = date(2026, 11, 28)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def prepare(workdir: Path, scale: float) -> None:
    """Simulate, extract and validate the open-able datasets into ``workdir``."""
    import simulator
    from catalog.definitions import load_catalog
    from catalog.store import CatalogStore
    from etl.extract import extract_to_raw
    from etl.validate import validate_partition
    from etl.zones import Lake
    from tests.helpers import connections

    simulator.build_departments(
        workdir / "departments", scale=scale, as_of=DS, ground_truth_dir=workdir / "truth"
    )
    lake = Lake(str(workdir / "lake"), f"sqlite:///{workdir / 'catalog.db'}")
    store = CatalogStore(f"sqlite:///{workdir / 'catalog.db'}")
    conns = connections(workdir / "departments")
    for ds in load_catalog().datasets:
        if ds.openable:
            extract_to_raw(
                ds, conns[ds.source.connection_id], DS, lake=lake, store=store, batch_id="b"
            )
            validate_partition(
                ds,
                DS,
                lake=lake,
                store=store,
                run_id="b",
                docs_dir=workdir / "docs",
                work_dir=workdir / "tmp",
            )


def publish(workdir: Path) -> None:
    from catalog.definitions import load_catalog
    from catalog.store import CatalogStore
    from etl.publish_public import publish_open_data
    from etl.zones import Lake

    catalog = load_catalog()
    lake = Lake(str(workdir / "lake"), f"sqlite:///{workdir / 'catalog.db'}")
    store = CatalogStore(f"sqlite:///{workdir / 'catalog.db'}")
    baseline = _peak_rss_mb()
    started = time.perf_counter()
    result = publish_open_data(catalog, lake, store, DS, "bench")
    wall = time.perf_counter() - started
    public = Path(lake.root) / "public"
    print(
        json.dumps(
            {
                "step": "publish_public",
                "wall_s": round(wall, 1),
                "peak_rss_mb": round(_peak_rss_mb()),
                "rss_above_imports_mb": round(_peak_rss_mb() - baseline),
                "public_bytes": sum(p.stat().st_size for p in public.rglob("*") if p.is_file()),
                "datasets": {
                    name: {
                        k: report[k]
                        for k in (
                            "rows_published",
                            "achieved_k",
                            "generalisation",
                            "suppressed_rows",
                            "suppressed_share",
                            "highest_risk",
                            "average_risk",
                        )
                    }
                    for name, report in result.published.items()
                    if "achieved_k" in report
                },
                "statistics_tables": sum(1 for n in result.published if n.startswith("stats/")),
            },
            ensure_ascii=False,
        )
    )


def replay(home: Path, ds: date, kept: bool) -> None:
    """``publish_open_data`` for ``ds`` again, as the night ran it (see the module doc)."""
    import shutil
    import sqlite3

    from catalog.definitions import load_catalog
    from catalog.store import CatalogStore
    from etl.publish_public import publish_open_data
    from etl.zones import PUBLIC, Lake

    var = home / "var"
    copy = Path(tempfile.mkdtemp(prefix="replay-")) / "catalog.db"
    with sqlite3.connect(var / "catalog.db") as source, sqlite3.connect(copy) as target:
        source.backup(target)
    with sqlite3.connect(copy) as db:
        db.execute("DELETE FROM partitions WHERE zone = ? AND ds = ?", (PUBLIC, ds.isoformat()))
    catalog = load_catalog()
    lake = Lake(str(var / "lake"), f"sqlite:///{copy}")
    store = CatalogStore(f"sqlite:///{copy}")
    cpu, started = time.process_time(), time.perf_counter()
    states = var / "cache" / "public-state" if kept else None
    result = publish_open_data(catalog, lake, store, ds, "replay", state_dir=states)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    shutil.rmtree(copy.parent)
    print(
        json.dumps(
            {
                "step": "publish_public (replay)",
                "ds": ds.isoformat(),
                "wall_s": round(wall, 2),
                "cpu_s": round(cpu, 2),
                "peak_rss_mb": round(_peak_rss_mb()),
                "rebuilt": sorted(result.published),
                "kept": sorted(result.unchanged),
                "parts_wall_cpu_s": {
                    what: [round(wall, 2), round(cpu, 2)]
                    for what, (wall, cpu) in result.seconds.items()
                },
            },
            ensure_ascii=False,
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.125)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--step", choices=["prepare", "publish"], default=None)
    parser.add_argument("--replay", type=Path, default=None, help="a bench_week workdir")
    parser.add_argument("--date", type=date.fromisoformat, default=None)
    parser.add_argument(
        "--no-kept-state", action="store_true", help="replay without the kept states (0021)"
    )
    args = parser.parse_args()
    if args.replay:
        return replay(args.replay.resolve(), args.date, not args.no_kept_state)
    if args.step == "prepare":
        return prepare(args.workdir, args.scale)
    if args.step == "publish":
        return publish(args.workdir)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-public-"))
    me = [sys.executable, __file__, "--workdir", str(workdir), "--scale", str(args.scale)]
    started = time.perf_counter()
    subprocess.run([*me, "--step", "prepare"], check=True)
    print(
        json.dumps(
            {
                "step": "prepare",
                "scale": args.scale,
                "wall_s": round(time.perf_counter() - started, 1),
            }
        )
    )
    subprocess.run([*me, "--step", "publish"], check=True)
    print(f"portal: {workdir / 'lake' / 'public' / 'index.html'}")


if __name__ == "__main__":
    main()
