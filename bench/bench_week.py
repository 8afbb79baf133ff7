"""Benchmark: a first night and an incremental night, end to end through `lake run`.

Simulates the departments at a scale, runs the first night (`lake run`, Airflow's
``dag.test()`` with the LocalExecutor, as users run it), advances the simulation one day
and runs that night: the night the city pays for every day (SQL sources by watermark,
snapshot drops by change detection). For each night: wall time; peak memory of the whole
`lake run` process tree (executor workers, task processes and the execution API child
included), sampled from /proc as the sum of RSS (shared pages counted in every process
that maps them) and of PSS (shared pages split between them: what the tree really holds);
every task's wall time from Airflow's task instances; the critical path, the chain of
tasks each waiting for the one before, and the gaps along it (each split where the loop
scheduled the next task: noticing the upstream's end, then waiting for a slot); and the
seconds of `lake run` before its DAG run was created and after it ended. Not part of the
test run.

    .venv/bin/python bench/bench_week.py --scale 0.125   # ≈ 1 million records
    .venv/bin/python bench/bench_week.py --scale 0.125 --sequential   # one task at a time
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
import zlib
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _tree_memory_mb(root: int) -> tuple[float, float]:
    """RSS and PSS of a process and all its descendants, in MB (Linux /proc)."""
    rss = pss = 0
    todo = [root]
    while todo:
        pid = todo.pop()
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            rss += int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
            pss += int(re.search(r"^Pss:\s+(\d+)", rollup, re.M).group(1))
            for task in Path(f"/proc/{pid}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, AttributeError):
            continue
    return rss / 1024, pss / 1024


def _measured(
    args: list[str], env: dict[str, str], peak_at: list | None = None, span: list | None = None
) -> tuple[str, float, float, float]:
    """Run a `lake` command; its output, wall seconds, and peak RSS and PSS of its tree.

    ``peak_at``, when given, receives the moment (UTC) the tree's PSS peaked, to name the
    tasks that were running then; ``span`` the moments (UTC) the command started and ended,
    to set against the DAG run's own start and end."""
    started = time.perf_counter()
    if span is not None:
        span[:] = [_utc_now()]
    proc = subprocess.Popen(
        [sys.executable, "-m", "etl.cli", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    peak_rss = peak_pss = 0.0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak_rss, peak_pss
        while not stop.wait(0.2):
            rss, pss = _tree_memory_mb(proc.pid)
            if pss > peak_pss and peak_at is not None:
                peak_at[:] = [datetime.now(UTC).replace(tzinfo=None)]
            peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = proc.communicate()
    stop.set()
    sampler.join()
    seconds = time.perf_counter() - started
    if span is not None:
        span.append(_utc_now())
    if proc.returncode != 0:
        sys.exit(f"lake {' '.join(args)} failed:\n{out[-3000:]}")
    return out, seconds, peak_rss, peak_pss


def _utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)  # as Airflow's SQLite DB stores times


def _run_span(home: Path, run_id: str) -> tuple[datetime, datetime]:
    """When the DAG run was created and when it ended, from Airflow's metadata DB.

    ``dag.test()`` records the logical date as the run's start_date; its run_after is the
    moment it created the run."""
    with sqlite3.connect(home / "var" / "airflow" / "airflow.db") as db:
        created, ended = db.execute(
            "SELECT run_after, end_date FROM dag_run WHERE run_id = ?", (run_id,)
        ).fetchone()
    return _when(created), _when(ended)


def _task_times(home: Path, run_id: str) -> dict[str, tuple[datetime, datetime]]:
    """Each task instance's start and end in the run, from Airflow's metadata DB."""
    rows = _airflow_rows(
        home,
        "SELECT task_id, map_index, start_date, end_date FROM task_instance "
        "WHERE run_id = ? AND start_date IS NOT NULL ORDER BY start_date",
        run_id,
    )
    return {
        task + (f"[{index}]" if index >= 0 else ""): (_when(start), _when(end or start))
        for task, index, start, end in rows
    }


def _reschedules(home: Path, run_id: str) -> dict[str, int]:
    """How often each task gave its slot back to run later (a validation that found the
    heavy-step lock busy): the wait is between its tries, outside its task time."""
    rows = _airflow_rows(
        home,
        "SELECT ti.task_id, count(*) FROM task_reschedule r "
        "JOIN task_instance ti ON ti.id = r.ti_id WHERE ti.run_id = ? GROUP BY ti.task_id",
        run_id,
    )
    return dict(rows)


def _airflow_rows(home: Path, sql: str, run_id: str) -> list[tuple]:
    """Rows about one run from the lake's Airflow metadata DB (SQLite)."""
    with sqlite3.connect(home / "var" / "airflow" / "airflow.db") as db:
        return db.execute(sql, (run_id,)).fetchall()


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace(" ", "T"))


def _upstream(home: Path) -> dict[str, list[str]]:
    """Each task's direct upstream tasks, from the DAG as Airflow serialized it."""
    with sqlite3.connect(home / "var" / "airflow" / "airflow.db") as db:
        data, packed = db.execute(
            "SELECT data, data_compressed FROM serialized_dag ORDER BY created_at DESC LIMIT 1"
        ).fetchone()
    dag = json.loads(data) if data else json.loads(zlib.decompress(packed))
    upstream: dict[str, list[str]] = {}
    for task in dag["dag"]["tasks"]:
        fields = task.get("__var", task)
        upstream.setdefault(fields["task_id"], [])
        for downstream in fields.get("downstream_task_ids", []):
            upstream.setdefault(downstream, []).append(fields["task_id"])
    return upstream


def critical_path(
    times: dict[str, tuple[datetime, datetime]], upstream: dict[str, list[str]]
) -> list[str]:
    """The chain that ended last: from the last task to finish back through the upstream
    task each one waited for (of its upstream tasks, the one that finished last)."""

    def instances(task: str) -> list[str]:  # a mapped task: each of its instances
        return [n for n in times if n == task or n.startswith(task + "[")]

    path = [max(times, key=lambda n: times[n][1])]
    while True:
        before = [n for up in upstream.get(path[-1].split("[")[0], []) for n in instances(up)]
        if not before:
            return path[::-1]
        path.append(max(before, key=lambda n: times[n][1]))


def gaps_along(
    path: list[str],
    times: dict[str, tuple[datetime, datetime]],
    scheduled: dict[str, datetime],
) -> list[tuple[str, float, float]]:
    """For each task of the path after the first: seconds from its upstream's end to its
    start, and of those, seconds until the night's loop scheduled it (the loop noticing
    the end); the rest is the wait for a free executor slot and its process starting."""
    return [
        (
            f"{before} → {after}",
            round((times[after][0] - times[before][1]).total_seconds(), 2),
            round((scheduled.get(after, times[after][0]) - times[before][1]).total_seconds(), 2),
        )
        for before, after in zip(path, path[1:], strict=False)
    ]


def _scheduled_times(home: Path, run_id: str) -> dict[str, datetime]:
    """When the night's loop last scheduled each task instance (Airflow's scheduled_dttm)."""
    rows = _airflow_rows(
        home,
        "SELECT task_id, map_index, scheduled_dttm FROM task_instance "
        "WHERE run_id = ? AND scheduled_dttm IS NOT NULL",
        run_id,
    )
    return {task + (f"[{index}]" if index >= 0 else ""): _when(at) for task, index, at in rows}


def _night(home: Path, env: dict[str, str], ds: str, kind: str, sequential: bool) -> dict:
    args = ["run", "--date", ds] + (["--sequential"] if sequential else [])
    peak_at: list[datetime] = []
    span: list[datetime] = []
    out, seconds, peak_rss, peak_pss = _measured(args, env, peak_at, span)
    run_id = re.search(r"\(run (\S+)\)", out).group(1)
    times = _task_times(home, run_id)
    tasks = {t: round((end - start).total_seconds(), 2) for t, (start, end) in times.items()}
    path = critical_path(times, _upstream(home))
    gaps = gaps_along(path, times, _scheduled_times(home, run_id))
    created, ended = _run_span(home, run_id)
    first_start = min(s for s, _ in times.values())
    last_end = max(e for _, e in times.values())
    # the night's wall, piece by piece: `lake run` before the DAG run exists (imports,
    # Airflow's DB, the DAG, the execution API, preloading), the run before its first
    # task starts, the critical path's tasks and the gaps between them, the run after its
    # last task, and `lake run` after the run ended (executor and API stop, the summary)
    outside = {
        "before_run_s": round((created - span[0]).total_seconds(), 1),
        "run_to_first_task_s": round((first_start - created).total_seconds(), 1),
        "last_task_to_run_end_s": round((ended - last_end).total_seconds(), 1),
        "after_run_s": round((span[1] - ended).total_seconds(), 1),
    }
    in_tasks = max(e for _, e in times.values()) - min(s for s, _ in times.values())
    steps = {
        step: round(sum(s for t, s in tasks.items() if t.endswith(f".{step}")), 1)
        for step in ("extract", "validate")
    }
    figures = [line for line in out.splitlines() if line.startswith("  ") and "," in line]
    # `lake run`'s own CPU figure (its process and its ended children): what the night
    # cost whatever else the machine was doing, unlike the wall time
    cpu = re.search(r"\bCPU (\d+)s", out)
    return {
        "night": kind,
        "ds": ds,
        "wall_s": round(seconds, 1),
        "cpu_s": int(cpu.group(1)) if cpu else None,
        "first_task_to_last_s": round(in_tasks.total_seconds(), 1),
        "peak_rss_mb": round(peak_rss),
        "peak_pss_mb": round(peak_pss),
        "running_at_peak": sorted(
            t for t, (s, e) in times.items() if peak_at and s <= peak_at[0] <= e
        ),
        "task_seconds_sum": steps,
        "tasks": tasks,
        "critical_path": [(t, tasks[t]) for t in path],
        "critical_path_task_s": round(sum(tasks[t] for t in path), 1),
        "critical_path_gaps": gaps,
        "critical_path_gap_s": round(sum(g for _, g, _ in gaps), 1),
        "critical_path_noticed_s": round(sum(n for _, _, n in gaps), 1),
        "outside_tasks": outside,
        "rescheduled": _reschedules(home, run_id),
        "figures": figures[-8:],
    }


def _print_night(night: dict) -> None:
    print(f"\n{night['night']} night {night['ds']}: task wall seconds (Airflow task instances)")
    for task, seconds in sorted(night["tasks"].items(), key=lambda kv: -kv[1]):
        print(f"  {seconds:8.2f}  {task}")
    chain = " → ".join(f"{t} {s:.1f}" for t, s in night["critical_path"])
    print(f"  critical path ({night['critical_path_task_s']:.1f} s in tasks): {chain}")
    gaps = ", ".join(f"{g:.2f} ({n:.2f})" for _, g, n in night["critical_path_gaps"])
    print(
        f"  gaps along it ({night['critical_path_gap_s']:.1f} s; in brackets until the loop "
        f"scheduled the next task, {night['critical_path_noticed_s']:.1f} s): {gaps}"
    )
    outside = night["outside_tasks"]
    print(
        f"  outside the tasks: {outside['before_run_s']:.1f} s before the DAG run, "
        f"{outside['run_to_first_task_s']:.1f} s run → first task, "
        f"{outside['last_task_to_run_end_s']:.1f} s last task → run end, "
        f"{outside['after_run_s']:.1f} s after the run"
    )
    print(f"  running when the tree's PSS peaked: {', '.join(night['running_at_peak']) or '-'}")
    tries = ", ".join(f"{t} ×{n}" for t, n in night["rescheduled"].items())
    print(f"  rescheduled (heavy-step lock busy): {tries or 'none'}")


def _say(step: str, seconds: float, peak_rss: float, peak_pss: float) -> None:
    figures = {"seconds": round(seconds, 1), "peak_rss_mb": round(peak_rss)}
    print(json.dumps({"step": step, **figures, "peak_pss_mb": round(peak_pss)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.125)
    parser.add_argument("--workdir", type=Path, default=REPO / "var" / "bench-week")
    parser.add_argument("--date", default="2026-11-28")
    parser.add_argument(
        "--sequential", action="store_true", help="one task at a time (`lake run --sequential`)"
    )
    args = parser.parse_args()
    home = args.workdir.resolve()
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    # the lake's own home, not the caller's; the machine's memory setting passes through
    machine = {"YIMEN_HEAVY_STEP_ROWS"}
    env = {
        k: v
        for k, v in os.environ.items()
        if k in machine or not k.startswith(("YIMEN_", "AIRFLOW"))
    }
    env["YIMEN_HOME"] = str(home)

    _out, *measured = _measured(["simulate", "--scale", str(args.scale), "--date", args.date], env)
    _say("simulate", *measured)
    first = _night(home, env, args.date, "first", args.sequential)
    print(json.dumps(first, ensure_ascii=False))
    _out, *measured = _measured(["simulate", "--advance"], env)
    _say("advance", *measured)
    next_day = _out.split("as of ")[1].split()[0]
    incremental = _night(home, env, next_day, "incremental", args.sequential)
    print(json.dumps(incremental, ensure_ascii=False))
    for night in (first, incremental):
        _print_night(night)
    mode = "one task at a time" if args.sequential else "LocalExecutor, concurrent"
    print(
        f"\nscale {args.scale} ({mode}): night  wall (first→last task)  CPU  peak RSS / PSS"
        "   Σ extract  Σ validate  critical path (gaps)  outside the run"
    )
    for night in (first, incremental):
        sums = night["task_seconds_sum"]
        print(
            f"  {night['night']:12s} {night['ds']}  {night['wall_s']:6.1f} s "
            f"({night['first_task_to_last_s']:5.1f} s)  {night['cpu_s'] or 0:4d} s  "
            f"{night['peak_rss_mb']:6d} / "
            f"{night['peak_pss_mb']:5d} MB  {sums['extract']:7.1f} s  {sums['validate']:7.1f} s"
            f"  {night['critical_path_task_s']:7.1f} s ({night['critical_path_gap_s']:4.1f} s)"
            f"  {_outside_run(night):5.1f} s"
        )


def _outside_run(night: dict) -> float:
    """Seconds of `lake run` before its DAG run was created and after it ended."""
    return night["outside_tasks"]["before_run_s"] + night["outside_tasks"]["after_run_s"]


if __name__ == "__main__":
    main()
