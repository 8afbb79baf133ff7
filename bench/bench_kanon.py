"""Benchmark: the k-anonymity gate alone on simulated residents (issue 12).

Four quasi-identifiers as in ``gongan.population``: birth date, sex, division code
(current, retired and a few town codes, weighted like Jiangmen's districts) and ethnicity
with a realistic skew (汉族 ≈ 99 %). The table is simulated and written to Parquet first;
the gate then runs in its own process, so its peak RSS is its own (plus reading the file).
Prints one JSON line per step. Not part of the test run.

    .venv/bin/python bench/bench_kanon.py                    # 3 million rows, k = 5
    .venv/bin/python bench/bench_kanon.py --rows 300000 --k 10 --pandas
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# Districts by population share (roughly Jiangmen's), then retired and town codes, rare.
DIVISIONS = {
    "440703": 0.16,  # 蓬江区
    "440704": 0.07,  # 江海区
    "440705": 0.19,  # 新会区
    "440781": 0.19,  # 台山市
    "440783": 0.15,  # 开平市
    "440784": 0.10,  # 鹤山市
    "440785": 0.10,  # 恩平市
    "440721": 0.01,  # 新会县 (retired, old IDs)
    "440782": 0.01,  # 新会市 (retired)
    "440702": 0.005,  # 城区 (retired)
    "440703001": 0.005,  # a town code
    "440106": 0.01,  # registered elsewhere (Guangzhou)
}
ETHNICITY = {
    "汉族": 0.9915,
    "壮族": 0.003,
    "瑶族": 0.0015,
    "土家族": 0.001,
    "苗族": 0.001,
    "回族": 0.0005,
    "满族": 0.0004,
    "侗族": 0.0004,
    "畲族": 0.0003,
    "蒙古族": 0.0002,
    "黎族": 0.0001,
    "朝鲜族": 0.0001,
}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def simulated_residents(rows: int, seed: int = 12):
    """A pyarrow table of residents: birth dates over 1925-2024 shaped like an age pyramid."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    age_days = np.clip(rng.gamma(shape=3.2, scale=13.0, size=rows) * 365.25, 0, 99 * 365)
    births = (np.datetime64("2024-12-31") - age_days.astype("timedelta64[D]")).astype(
        "datetime64[D]"
    )

    def choice(weights: dict[str, float]) -> pa.Array:
        p = np.array(list(weights.values()))
        return pa.array(rng.choice(list(weights), size=rows, p=p / p.sum()))

    return pa.table(
        {
            "person": pa.array(np.arange(rows)),
            "birth_date": pa.array(births, type=pa.date32()),
            "sex": pa.array(rng.choice(["男", "女"], size=rows)),
            "division_code": choice(DIVISIONS),
            "ethnicity": choice(ETHNICITY),
            "income": pa.array(rng.integers(1000, 40000, size=rows)),
        }
    )


def gate_step(path: Path, k: int, max_suppression: float, as_pandas: bool) -> None:
    import pyarrow.parquet as pq

    from masking.kanon import (
        birth_date_hierarchy,
        categorical_hierarchy,
        division_hierarchy,
        k_anonymise,
        reidentification_risk,
    )

    table = pq.read_table(path)
    if as_pandas:
        table = table.to_pandas()
    baseline = _peak_rss_mb()
    qis = {
        "birth_date": birth_date_hierarchy(),
        "sex": categorical_hierarchy("sex"),
        "division_code": division_hierarchy(),
        "ethnicity": categorical_hierarchy("ethnicity"),
    }
    started = time.perf_counter()
    before = reidentification_risk(table, list(qis))
    risk_seconds = time.perf_counter() - started
    started = time.perf_counter()
    result = k_anonymise(table, qis, k=k, max_suppression=max_suppression, dataset="bench")
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "step": "k_anonymise",
                "input": "pandas" if as_pandas else "arrow",
                "rows": len(table),
                "quasi_identifiers": len(qis),
                "seconds": round(seconds, 2),
                "peak_rss_mb": round(_peak_rss_mb()),
                "rss_before_gate_mb": round(baseline),
                "raw_highest_risk": before.highest_risk,
                "raw_records_at_risk": round(before.records_at_risk, 4),
                "raw_risk_seconds": round(risk_seconds, 2),
                **result.report(),
            },
            ensure_ascii=False,
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3_000_000)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--max-suppression", type=float, default=0.05)
    parser.add_argument("--pandas", action="store_true", help="feed a DataFrame, not a Table")
    parser.add_argument("--step-gate", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step_gate:
        gate_step(args.step_gate, args.k, args.max_suppression, args.pandas)
        return

    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory(prefix="bench-kanon-") as tmp:
        path = Path(tmp) / "residents.parquet"
        started = time.perf_counter()
        pq.write_table(simulated_residents(args.rows), path)
        seconds = time.perf_counter() - started
        print(json.dumps({"step": "simulate", "rows": args.rows, "seconds": round(seconds, 2)}))
        command = [sys.executable, __file__, "--step-gate", str(path), "--k", str(args.k)]
        command += ["--max-suppression", str(args.max_suppression)]
        command += ["--pandas"] if args.pandas else []
        subprocess.run(command, check=True)


if __name__ == "__main__":
    main()
