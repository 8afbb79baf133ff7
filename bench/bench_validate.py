"""Benchmark: validation alone, per dataset, on a first and an incremental night.

Validation is what the night does between extraction and unification: standardise, run
the GX suite, quarantine, deduplicate, change detection on snapshot drops, Data Docs.
This bench re-uses a lake whose raw zone already holds two nights, so it times exactly
that step (each dataset in its own process, as the night's tasks are; peak RSS is that
process's). Not part of the test run.

    # once: simulate, extract night 1, advance the simulation a day, extract night 2
    .venv/bin/python bench/bench_validate.py --scale 0.125 --home /tmp/vs-1m --prepare
    # then, as often as needed (validates night 1, then night 2, every dataset)
    .venv/bin/python bench/bench_validate.py --home /tmp/vs-1m [--profile /tmp/vs-prof]
    # one dataset's chain on night 2, extract then validate, each in its own process, 3 times
    .venv/bin/python bench/bench_validate.py --home /tmp/vs-1m --chain renshe.insured_person

``--lake-root`` validates a lake that lives elsewhere (say a full-scale one another bench
left) into a *copy* of its catalog DB under ``--home``: the original catalog never sees
the new snapshots, so that lake stays as it was for its owner. ``--profile DIR`` runs each
validation under pyinstrument (the ``bench`` extra) and writes its text profile to DIR.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
FIRST = date(2026, 11, 28)


# what `lake run` imports before its executor forks the tasks (etl/airflow_runner.py),
# so a validation here pays what a night's task pays, not the imports
NIGHT_PRELOADS = (
    "etl.validate",
    "duckdb",
    "pyiceberg.catalog.sql",
    "pyiceberg.expressions",
    "opencc",
    "encodings.gbk",
)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _settings(home: Path, lake_root: str | None):
    from dataclasses import replace

    from etl.settings import LakeSettings

    settings = LakeSettings.under(home)
    return replace(settings, lake_root=lake_root) if lake_root else settings


def prepare_step(home: Path, scale: float) -> None:
    """Simulate, extract the first night, advance a day, extract the second night."""
    import simulator
    from etl.connections import SourceConnection
    from etl.nightly import Night, extract_dataset, open_night

    settings = _settings(home, None)
    simulator.build_departments(
        settings.departments_dir,
        scale=scale,
        as_of=FIRST,
        ground_truth_dir=settings.ground_truth_dir,
    )
    for ds in (FIRST, FIRST + timedelta(days=1)):
        if ds != FIRST:
            simulator.advance_day(settings.departments_dir)
        night = Night.open(ds, f"bench-validate-{ds}", settings)
        open_night(night)
        specs = json.loads((settings.departments_dir / "connections.json").read_text())
        for d in night.catalog.datasets:
            spec = specs[d.source.connection_id]
            extract_dataset(night, d.id, SourceConnection(conn_id=d.source.connection_id, **spec))
    print(json.dumps({"step": "prepare"}))


def _cpu_and_sys() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime, usage.ru_stime


def extract_step(home: Path, dataset_id: str, ds: date) -> None:
    """Extract one dataset's delivery for ``ds`` again, as the night's task does; CPU s
    (user + system: page faults of fresh memory are a good part of it) and peak RSS."""
    from etl.connections import SourceConnection
    from etl.nightly import Night, extract_dataset

    settings = _settings(home, None)
    night = Night.open(ds, f"bench-validate-{ds}", settings)
    for name in (*NIGHT_PRELOADS, "etl.extract"):
        importlib.import_module(name)
    night.lake.iceberg  # noqa: B018 - the night opens the Iceberg catalog before its tasks
    dataset = night.catalog.dataset(dataset_id)
    specs = json.loads((settings.departments_dir / "connections.json").read_text())
    conn_id = dataset.source.connection_id
    connection = SourceConnection(conn_id=conn_id, **specs[conn_id])
    (cpu_started, sys_started), started = _cpu_and_sys(), time.perf_counter()
    extract_dataset(night, dataset_id, connection)
    (cpu, system), seconds = _cpu_and_sys(), time.perf_counter() - started
    print(
        json.dumps(
            {
                "step": "extract",
                "dataset": dataset_id,
                "seconds": round(seconds, 2),
                "cpu_s": round(cpu - cpu_started, 2),
                "sys_s": round(system - sys_started, 2),
                "peak_rss_mb": round(_peak_rss_mb()),
            }
        )
    )


def validate_step(
    home: Path, lake_root: str | None, dataset_id: str, ds: date, profile: Path | None
) -> None:
    """Validate one dataset's partition as the night's task does (Data Docs included)."""
    from catalog.definitions import load_catalog
    from catalog.errors import BreakerTripped
    from catalog.store import CatalogStore
    from etl.validate import validate_partition

    settings = _settings(home, lake_root)
    dataset = load_catalog().dataset(dataset_id)
    store = CatalogStore(settings.catalog_url)
    lake = settings.lake()
    for name in NIGHT_PRELOADS:  # the night's tasks start with these imported (0015)
        importlib.import_module(name)
    profiler = None
    if profile is not None:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.002)
        profiler.start()
    started, cpu_started = time.perf_counter(), _cpu_seconds()
    try:
        result = validate_partition(
            dataset,
            ds,
            lake=lake,
            store=store,
            run_id=f"bench-validate-{ds}",
            docs_dir=settings.var / "quality" / "docs" / dataset_id,
            work_dir=settings.var / "tmp",
        )
        rows, quarantined, unchanged = result.delivered, result.quarantined, result.unchanged
    except BreakerTripped:  # still a full validation pass: report its figures
        figures = store.quality_of(dataset_id, ds)
        rows, quarantined, unchanged = figures.delivered, figures.quarantined, figures.unchanged
    seconds, cpu = time.perf_counter() - started, _cpu_seconds() - cpu_started
    if profiler is not None:
        profiler.stop()
        profile.mkdir(parents=True, exist_ok=True)
        (profile / f"{ds}-{dataset_id}.txt").write_text(
            profiler.output_text(unicode=True, color=False, show_all=False)
        )
    print(
        json.dumps(
            {
                "dataset": dataset_id,
                "rows": rows,
                "quarantined": quarantined,
                "unchanged": unchanged,
                "seconds": round(seconds, 2),
                "cpu_s": round(cpu, 2),
                "peak_rss_mb": round(_peak_rss_mb()),
            }
        )
    )


def page_step(home: Path, lake_root: str | None) -> None:
    """The close of the night's quality page (where Data Docs are rendered, since 0013)."""
    from catalog.store import CatalogStore
    from etl.quality_report import write_quality_index

    settings = _settings(home, lake_root)
    store = CatalogStore(settings.catalog_url)
    started = time.perf_counter()
    write_quality_index(store, settings.var / "quality" / "index.html")
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": round(seconds, 2), "peak_rss_mb": round(_peak_rss_mb())}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=REPO / "var" / "bench-validate")
    parser.add_argument("--scale", type=float, default=0.125)
    parser.add_argument("--prepare", action="store_true", help="simulate and extract two nights")
    parser.add_argument("--lake-root", help="validate this lake into a copy of its catalog DB")
    parser.add_argument("--profile", type=Path, help="write pyinstrument profiles here")
    parser.add_argument("--nights", type=int, default=2, choices=[1, 2])
    parser.add_argument(
        "--chain", help="extract + validate this dataset on night 2, three times (CPU s)"
    )
    parser.add_argument(
        "--step", choices=["prepare", "extract", "validate", "page"], help=argparse.SUPPRESS
    )
    parser.add_argument("--dataset", help=argparse.SUPPRESS)
    parser.add_argument("--date", help=argparse.SUPPRESS)
    args = parser.parse_args()
    home = args.home.resolve()
    if args.step == "prepare":
        return prepare_step(home, args.scale)
    if args.step == "page":
        return page_step(home, args.lake_root)
    if args.step == "extract":
        return extract_step(home, args.dataset, date.fromisoformat(args.date))
    if args.step == "validate":
        return validate_step(
            home, args.lake_root, args.dataset, date.fromisoformat(args.date), args.profile
        )

    def child(*extra: str) -> dict:
        command = [sys.executable, __file__, "--home", str(home), *extra]
        if args.lake_root:
            command += ["--lake-root", args.lake_root]
        if args.profile:
            command += ["--profile", str(args.profile)]
        out = subprocess.run(command, check=True, capture_output=True, text=True, env=os.environ)
        return json.loads(out.stdout.strip().splitlines()[-1])

    if args.prepare:
        subprocess.run(["rm", "-rf", str(home / "var")], check=True)
        started = time.perf_counter()
        child("--step", "prepare", "--scale", str(args.scale))
        print(f"prepared two nights at scale {args.scale} in {time.perf_counter() - started:.0f}s")
    if args.chain:
        ds = (FIRST + timedelta(days=1)).isoformat()
        for _ in range(3):  # the machine is shared: the lowest CPU seconds are the figure
            for step in ("extract", "validate"):
                r = child("--step", step, "--dataset", args.chain, "--date", ds)
                system = f" (system {r['sys_s']:.2f})" if "sys_s" in r else ""
                print(
                    f"{step:8s} {args.chain} {ds}: {r['seconds']:6.2f} s, "
                    f"CPU {r['cpu_s']:6.2f} s{system}, peak RSS {r['peak_rss_mb']:,} MB"
                )
        return
    from catalog.definitions import load_catalog

    for night in range(args.nights):
        ds = FIRST + timedelta(days=night)
        total_s, total_cpu, total_rows, peak = 0.0, 0.0, 0, 0
        print(
            f"\nvalidate {ds}: {'dataset':34s} {'rows':>10s} {'unchanged':>10s} "
            f"{'quarantined':>11s} {'seconds':>8s} {'CPU s':>6s} {'peak RSS MB':>12s}"
        )
        for dataset in load_catalog().datasets:
            r = child("--step", "validate", "--dataset", dataset.id, "--date", ds.isoformat())
            total_s += r["seconds"]
            total_cpu += r["cpu_s"]
            total_rows += r["rows"]
            peak = max(peak, r["peak_rss_mb"])
            print(
                f"{'':20s}{r['dataset']:34s} {r['rows']:>10,} {r['unchanged']:>10,} "
                f"{r['quarantined']:>11,} {r['seconds']:>8.2f} {r['cpu_s']:>6.2f} "
                f"{r['peak_rss_mb']:>12,}"
            )
        page = child("--step", "page")
        print(
            f"{'':20s}{'Σ (one dataset at a time)':34s} {total_rows:>10,} {'':>23s} "
            f"{total_s:>8.1f} {total_cpu:>6.1f} {peak:>12,}"
        )
        print(
            f"{'':20s}{'+ quality page and Data Docs':34s} {'':>35s} "
            f"{page['seconds']:>8.1f} {'':>6s} {page['peak_rss_mb']:>12,}"
        )


if __name__ == "__main__":
    main()
