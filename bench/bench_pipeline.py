"""Benchmark: simulate the departments at a scale, extract each source, then validate it.

Prints rows/second and peak memory (RSS) per source for extraction (raw zone) and for
standardise + validate + quarantine + dedup (clean zone). Each step runs in its own process
so its peak memory is its own. Not part of the test run.

    .venv/bin/python bench/bench_pipeline.py --scale 0.125   # ≈ 1 million records
    .venv/bin/python bench/bench_pipeline.py --scale 1.0     # ≈ 8 million records
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _settings(workdir: Path):
    from etl.settings import LakeSettings

    return LakeSettings.under(workdir)


def simulate_step(workdir: Path, scale: float, ds: date) -> None:
    import simulator

    settings = _settings(workdir)
    started = time.perf_counter()
    summary = simulator.build_departments(
        settings.departments_dir, scale=scale, as_of=ds, ground_truth_dir=settings.ground_truth_dir
    )
    seconds = time.perf_counter() - started
    rows = sum(summary.rows.values())
    print(
        json.dumps(
            {
                "step": "simulate",
                "rows": rows,
                "seconds": round(seconds, 1),
                "rows_per_s": round(rows / seconds),
                "peak_rss_mb": round(_peak_rss_mb()),
            }
        )
    )


def extract_step(workdir: Path, dataset_id: str, ds: date) -> None:
    from etl.airflow_runner import apply_airflow_environment

    settings = _settings(workdir)
    apply_airflow_environment(settings)
    from catalog.definitions import load_catalog
    from catalog.store import CatalogStore
    from etl.connections import lookup_airflow_connection
    from etl.extract import extract_to_raw

    dataset = load_catalog().dataset(dataset_id)
    connection = lookup_airflow_connection(dataset.source.connection_id)
    store = CatalogStore(settings.catalog_url)
    baseline = _peak_rss_mb()
    started = time.perf_counter()
    result = extract_to_raw(
        dataset, connection, ds, lake=settings.lake(), store=store, batch_id=f"bench-{ds}"
    )
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "step": "extract",
                "dataset": dataset_id,
                "rows": result.rows,
                "seconds": round(seconds, 2),
                "rows_per_s": round(result.rows / seconds),
                "peak_rss_mb": round(_peak_rss_mb()),
                "rss_above_imports_mb": round(_peak_rss_mb() - baseline),
            }
        )
    )


def validate_step(workdir: Path, dataset_id: str, ds: date) -> None:
    from catalog.definitions import load_catalog
    from catalog.errors import BreakerTripped
    from catalog.store import CatalogStore
    from etl.validate import validate_partition

    settings = _settings(workdir)
    dataset = load_catalog().dataset(dataset_id)
    import great_expectations  # noqa: F401 - import cost is not validation cost

    baseline = _peak_rss_mb()
    started = time.perf_counter()
    try:
        result = validate_partition(
            dataset,
            ds,
            lake=settings.lake(),
            store=CatalogStore(settings.catalog_url),
            run_id=f"bench-{ds}",
            work_dir=settings.var / "tmp",
        )
        rows, quarantined = result.delivered, result.quarantined
    except BreakerTripped:  # still a full validation pass: report its figures
        (figures,) = [
            q for q in CatalogStore(settings.catalog_url).quality(ds) if q.dataset_id == dataset_id
        ]
        rows, quarantined = figures.delivered, f"{figures.quarantined} (breaker tripped)"
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "step": "validate",
                "dataset": dataset_id,
                "rows": rows,
                "quarantined": quarantined,
                "seconds": round(seconds, 2),
                "rows_per_s": round(rows / seconds),
                "peak_rss_mb": round(_peak_rss_mb()),
                "rss_above_imports_mb": round(_peak_rss_mb() - baseline),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.125)
    parser.add_argument("--workdir", type=Path, default=REPO / "var" / "bench")
    parser.add_argument("--date", default="2026-11-28")
    parser.add_argument(
        "--step", choices=["simulate", "extract", "validate"], help=argparse.SUPPRESS
    )
    parser.add_argument("--dataset", help=argparse.SUPPRESS)
    parser.add_argument(
        "--skip-simulate",
        action="store_true",
        help="reuse the departments already simulated in --workdir",
    )
    args = parser.parse_args()
    ds = date.fromisoformat(args.date)
    if args.step == "simulate":
        return simulate_step(args.workdir, args.scale, ds)
    if args.step == "extract":
        return extract_step(args.workdir, args.dataset, ds)
    if args.step == "validate":
        return validate_step(args.workdir, args.dataset, ds)

    from catalog.definitions import load_catalog

    def child(*extra: str) -> dict:
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--workdir",
                str(args.workdir),
                "--date",
                args.date,
                "--scale",
                str(args.scale),
                *extra,
            ],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ},
        )
        return json.loads(out.stdout.strip().splitlines()[-1])

    print(f"scale {args.scale} in {args.workdir}")
    if args.skip_simulate:  # same departments, but a first night: fresh lake and catalog
        for leftover in ("lake", "catalog.db", "tmp", "quality"):
            subprocess.run(["rm", "-rf", str(args.workdir / "var" / leftover)], check=True)
    else:
        subprocess.run(["rm", "-rf", str(args.workdir / "var")], check=True)
        sim = child("--step", "simulate")
        print(
            f"simulate: {sim['rows']:,} rows in {sim['seconds']}s "
            f"({sim['rows_per_s']:,} rows/s), peak RSS {sim['peak_rss_mb']:,} MB"
        )
    for step in ("extract", "validate"):
        total_rows, total_s, peak = 0, 0.0, 0
        print(
            f"\n{step}: {'source':34s} {'rows':>11s} {'seconds':>8s} {'rows/s':>10s} "
            f"{'peak RSS MB':>12s}"
        )
        for dataset in load_catalog().datasets:
            r = child("--step", step, "--dataset", dataset.id)
            total_rows += r["rows"]
            total_s += r["seconds"]
            peak = max(peak, r["peak_rss_mb"])
            print(
                f"{'':10s}{r['dataset']:34s} {r['rows']:>11,} {r['seconds']:>8.1f} "
                f"{r['rows_per_s']:>10,} {r['peak_rss_mb']:>12,}"
            )
        print(
            f"{'':10s}{'total (one source at a time)':34s} {total_rows:>11,} {total_s:>8.1f} "
            f"{round(total_rows / total_s):>10,} {peak:>12,}"
        )


if __name__ == "__main__":
    main()
