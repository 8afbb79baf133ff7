"""`lake run`'s own loop over the LocalExecutor (decision 0020) schedules as Airflow does.

A small DAG written for the test runs through :func:`etl.airflow_runner.run_with_executor`
with the real LocalExecutor, its worker processes and the execution API's child: a task
that fails and its downstream left upstream_failed, a task that fails once and succeeds on
its retry, a trigger_rule all_done task after a failure, a mapped task whose instances
hand their results to a downstream task through XCom, and a task that frees its slot with
AirflowRescheduleException (as a validation finding the heavy-step lock busy does) and is
run again after its reschedule date. What each task did is written to files by the tasks.
"""

from __future__ import annotations

import textwrap
from datetime import date
from pathlib import Path

from etl.airflow_runner import (
    dag_bag,
    ensure_airflow_ready,
    highest_first,
    logical_date_for,
    run_with_executor,
)
from etl.execution_api import execution_api
from etl.settings import REPO_ROOT, LakeSettings

DAG_FILE = '''
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from airflow.sdk import dag, task
from airflow.sdk.exceptions import AirflowRescheduleException

OUT = Path({out!r})


def attempt(name: str) -> int:
    """How many times the task named ``name`` has started, this one included."""
    marker = OUT / f"{{name}}.tries"
    tries = int(marker.read_text()) + 1 if marker.exists() else 1
    marker.write_text(str(tries))
    return tries


@dag(dag_id="runner_loop_test", schedule=None, start_date=datetime(2026, 1, 1), catchup=False)
def runner_loop_test():
    @task(retries=0)
    def broken() -> None:
        attempt("broken")
        raise ValueError("broken on purpose")

    @task(retries=0)
    def after_broken() -> None:
        attempt("after_broken")

    @task(retries=0, trigger_rule="all_done")
    def cleanup() -> None:
        attempt("cleanup")

    @task(retries=1, retry_delay=timedelta(seconds=1))
    def flaky() -> str:
        if attempt("flaky") == 1:
            raise RuntimeError("first try fails")
        return "flaky ok"

    @task(retries=0)
    def double(x: int) -> int:
        attempt(f"double-{{x}}")
        return 2 * x

    @task(retries=0)
    def total(values: list[int], flaky_said: str) -> None:
        (OUT / "total").write_text(f"{{sum(values)}} {{flaky_said}}")

    @task(retries=0)
    def waits_for_lock() -> None:
        if attempt("waits_for_lock") == 1:
            later = datetime.now(timezone.utc) + timedelta(seconds=2)
            raise AirflowRescheduleException(reschedule_date=later)

    @task(retries=0)
    def quick() -> None:
        pass

    @task(retries=0, priority_weight=100, weight_rule="absolute")
    def urgent() -> None:
        pass

    @task(retries=0, priority_weight=1, weight_rule="absolute")
    def slow(n: int) -> None:
        time.sleep(2)

    quick() >> urgent()  # ready only once quick is done, after the others were
    slow.expand(n=[1, 2, 3, 4])
    failed = broken()
    failed >> after_broken()
    failed >> cleanup()
    total(double.expand(x=[1, 2, 3]), flaky())
    waits_for_lock()


runner_loop_test()
'''


def test_the_runner_loop_retries_reschedules_maps_and_fails_as_airflow_does(
    session_settings: LakeSettings, tmp_path: Path
) -> None:
    folder, out = tmp_path / "dags", tmp_path / "out"
    folder.mkdir()
    out.mkdir()
    (folder / "runner_loop_test.py").write_text(textwrap.dedent(DAG_FILE.format(out=str(out))))
    ensure_airflow_ready(session_settings)
    bag = dag_bag(folder)
    with execution_api() as api:
        api.wait_ready()
        dag_run = run_with_executor(
            bag, bag.dags["runner_loop_test"], logical_date_for(date(2026, 3, 1)), {}
        )
    instances = dag_run.get_task_instances()
    states = {(ti.task_id, ti.map_index): ti.state for ti in instances}
    assert dag_run.state == "failed"  # one task failed for good
    # a task that became ready late but weighs most starts at the next free slot, before
    # the lightest ones that were ready long before it
    started = {(ti.task_id, ti.map_index): ti.start_date for ti in instances}
    assert started[("urgent", -1)] < max(started[("slow", n)] for n in range(4))
    assert {k: v for k, v in states.items() if k[0] in ("quick", "urgent", "slow")} == {
        ("quick", -1): "success",
        ("urgent", -1): "success",
        **{("slow", n): "success" for n in range(4)},
    }
    states = {k: v for k, v in states.items() if k[0] not in ("quick", "urgent", "slow")}
    assert states == {
        ("broken", -1): "failed",
        ("after_broken", -1): "upstream_failed",
        ("cleanup", -1): "success",  # all_done: runs after its upstream failed
        ("flaky", -1): "success",
        ("double", 0): "success",
        ("double", 1): "success",
        ("double", 2): "success",
        ("total", -1): "success",
        ("waits_for_lock", -1): "success",
    }
    tries = {p.stem: int(p.read_text()) for p in out.glob("*.tries")}
    assert tries == {
        "broken": 1,
        "cleanup": 1,
        "flaky": 2,  # failed, retried after its delay, succeeded
        "double-1": 1,
        "double-2": 1,
        "double-3": 1,
        "waits_for_lock": 2,  # rescheduled, then run again after its date
    }
    assert (out / "total").read_text() == "12 flaky ok"  # XComs of every mapped instance


def test_the_execution_api_is_built_for_the_versions_the_tasks_speak() -> None:
    """In a process of its own: an in-process night earlier in the session trims the
    versions of this one, and the test must see Airflow's whole list first."""
    import json
    import subprocess
    import sys

    script = (
        "import json\n"
        "from etl.execution_api import serve_current_api_versions_only\n"
        "from airflow.api_fastapi.execution_api import versions\n"
        "from airflow.sdk.api.datamodels._generated import API_VERSION\n"
        "every = [v.value for v in versions.bundle.versions]\n"
        "serve_current_api_versions_only()\n"
        "serve_current_api_versions_only()  # once is enough: a second call keeps the first's\n"
        "kept = [v.value for v in versions.bundle.versions]\n"
        "print(json.dumps([API_VERSION, every, kept]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    ).stdout
    api_version, every, kept = json.loads(out.strip().splitlines()[-1])
    assert kept[0] == api_version == every[0]
    assert kept == every[: len(kept)] and len(kept) < len(every)


def test_the_executor_is_handed_what_fits_its_free_slots_highest_priority_first() -> None:
    from types import SimpleNamespace

    ready = [
        SimpleNamespace(task_id=t, priority_weight=w)
        for t, w in [("a", 1), ("b", 30), ("c", 2), ("d", 30)]
    ]
    assert [ti.task_id for ti in highest_first(ready, 2)] == ["b", "d"]  # ties keep their order
    assert [ti.task_id for ti in highest_first(ready, 9)] == ["b", "d", "c", "a"]
    assert highest_first(ready, 0) == [] and highest_first(ready, -1) == []  # slots all taken
