"""Benchmark: a first night and an incremental night, end to end through `lake run`.

Simulates the departments at a scale, runs the first night (`lake run`, Airflow's
``dag.test()``), advances the simulation one day and runs that night: the night the city
pays for every day (SQL sources by watermark, snapshot drops by change detection). For
each night: wall time, peak RSS of the `lake run` process tree (sampled from /proc), and
every task's duration from Airflow's metadata DB. Not part of the test run.

    .venv/bin/python bench/bench_week.py --scale 0.125   # ≈ 1 million records
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _tree_rss_mb(root: int) -> float:
    """Resident memory of a process and all its descendants, in MB (Linux /proc)."""
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            total += int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
            for task in Path(f"/proc/{pid}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, AttributeError):
            continue
    return total / 1024


def _measured(args: list[str], env: dict[str, str]) -> tuple[str, float, float]:
    """Run a `lake` command; its output, wall seconds and peak RSS of its process tree."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "etl.cli", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    peak = 0.0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.wait(0.2):
            peak = max(peak, _tree_rss_mb(proc.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = proc.communicate()
    stop.set()
    sampler.join()
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"lake {' '.join(args)} failed:\n{out[-3000:]}")
    return out, seconds, peak


def _task_seconds(home: Path, run_id: str) -> dict[str, float]:
    """Each task's duration in the run, from Airflow's metadata DB."""
    with sqlite3.connect(home / "var" / "airflow" / "airflow.db") as db:
        rows = db.execute(
            "SELECT task_id, duration FROM task_instance WHERE run_id = ? ORDER BY task_id",
            (run_id,),
        ).fetchall()
    return {task: round(seconds or 0.0, 2) for task, seconds in rows}


def _night(home: Path, env: dict[str, str], ds: str, kind: str) -> dict:
    out, seconds, peak = _measured(["run", "--date", ds], env)
    run_id = re.search(r"\(run (\S+)\)", out).group(1)
    tasks = _task_seconds(home, run_id)
    steps = {
        step: round(sum(s for t, s in tasks.items() if t.endswith(f".{step}")), 1)
        for step in ("extract", "validate")
    }
    figures = [line for line in out.splitlines() if line.startswith("  ") and "," in line]
    return {
        "night": kind,
        "ds": ds,
        "wall_s": round(seconds, 1),
        "peak_rss_mb": round(peak),
        "task_seconds_sum": steps,
        "tasks": tasks,
        "figures": figures[-8:],
    }


def _say(step: str, seconds: float, peak: float) -> None:
    print(json.dumps({"step": step, "seconds": round(seconds, 1), "peak_rss_mb": round(peak)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.125)
    parser.add_argument("--workdir", type=Path, default=REPO / "var" / "bench-week")
    parser.add_argument("--date", default="2026-11-28")
    args = parser.parse_args()
    home = args.workdir.resolve()
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YIMEN_", "AIRFLOW"))}
    env["YIMEN_HOME"] = str(home)

    _out, seconds, peak = _measured(
        ["simulate", "--scale", str(args.scale), "--date", args.date], env
    )
    _say("simulate", seconds, peak)
    first = _night(home, env, args.date, "first")
    print(json.dumps(first, ensure_ascii=False))
    _out, seconds, peak = _measured(["simulate", "--advance"], env)
    _say("advance", seconds, peak)
    next_day = _out.split("as of ")[1].split()[0]
    incremental = _night(home, env, next_day, "incremental")
    print(json.dumps(incremental, ensure_ascii=False))
    print(f"\nscale {args.scale}: night          wall    peak RSS   Σ extract   Σ validate")
    for night in (first, incremental):
        sums = night["task_seconds_sum"]
        print(
            f"  {night['night']:12s} {night['ds']}  {night['wall_s']:6.1f} s  "
            f"{night['peak_rss_mb']:6d} MB  {sums['extract']:8.1f} s  {sums['validate']:8.1f} s"
        )


if __name__ == "__main__":
    main()
