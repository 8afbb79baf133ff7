"""
### yimen_nightly — one night of the city data lake

Built from the catalog (`catalog/definitions/*.yaml`): one task group per department
dataset, each extracting that day's delivery into `raw/sources/<dept>/<dataset>/dt=<ds>/`.
The partition date `ds` is the start of the run's data interval in Asia/Shanghai (the run
at 02:00 on D+1 processes day D; a manual trigger processes the last complete night), or
`conf["ds"]` when given.

Each dataset group extracts, then standardises, validates (Great Expectations suite from
the catalog), quarantines and deduplicates into `raw/clean/` and `raw/quarantine/`. The
`quality_gate` task passes only when every dataset validated within its quarantine limit;
`unify` then builds unified persons and enterprises with their crosswalks in
`raw/unified/` (no unification after a tripped breaker); after it, one mapped
`publish_shared` task per consumer department writes its masked extracts
(`shared/<consumer>/…`). Beside unify, after the same gate, `publish_public` writes the
open data from the clean zone (`public/`: de-identified microdata behind the
k-anonymity gate, statistics, `catalog.jsonld`, `index.html`) behind the leak scan; on a
large night it takes turns with a rebuilding unify on the heavy-step lock. `quality_page`
renders the Data Docs and the quality page once every validation has ended and the open
data is out; `close_night` always runs and records the outcome.

The biggest datasets' tasks start first (priority = the catalog's `expected_rows`, an
.xlsx row counted 5×: `DatasetDef.expected_work`).
Deliveries of `YIMEN_HEAVY_STEP_ROWS` rows or more (3 million by default) are validated
one at a time (memory), and so are a rebuilding unify and the open data of a night that
large; a validation that finds another one running is rescheduled a few seconds later,
so it does not hold an executor slot while it waits.
Task bodies are one-line calls into `etl.nightly`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pendulum
from airflow.sdk import TaskGroup, dag, get_current_context, task
from airflow.timetables.interval import CronDataIntervalTimetable

from catalog.definitions import DatasetDef, load_catalog
from catalog.files import OWNER_ONLY_UMASK
from etl.settings import SOURCE_POOL

FAILED_STATES = {"failed", "upstream_failed"}


def _night():
    """The task's :class:`etl.nightly.Night`: settings read here, at the edge, once."""
    from etl.nightly import Night, partition_date
    from etl.settings import LakeSettings

    os.umask(OWNER_ONLY_UMASK)  # logs, spill files and pages this task writes: owner-only
    ctx = get_current_context()
    dag_run = ctx["dag_run"]
    ds = partition_date(ctx.get("data_interval_start"), ctx.get("logical_date"), dag_run.conf)
    return Night.open(ds, dag_run.run_id, LakeSettings.from_env())


def _masking_key():
    """The masking master key, read here at the edge: an Airflow Variable, else the env."""
    from airflow.sdk import Variable

    from masking.keys import ENV_KEY, MasterKey

    stored = Variable.get("yimen_masking_key", default=None)
    return MasterKey.from_env({ENV_KEY: stored} if stored else os.environ)


def _biggest_first(dataset: DatasetDef) -> dict:
    """Priority of a dataset's tasks: its expected work (thousands of CSV-row equivalents:
    the catalog's expected rows, an .xlsx row counted 5×).

    When more tasks are ready than the executor has slots it starts the highest first: the
    longest chains are the night's critical path (their validations gate unify), and the
    small ones fill the slots around them and after them.
    """
    return {"priority_weight": 1 + dataset.expected_work // 1000, "weight_rule": "absolute"}


@contextmanager
def _masked_failure() -> Iterator[None]:
    """Fail the task with the same masked one-line text the store keeps, and nothing else.

    Airflow logs a failing task's exception with its whole chain, and a library error deep
    in that chain quotes delivered values (a CSV row, a cell): the chain is cut here
    (``from None``). A tripped breaker (a data problem) and `lake run` (a person is
    waiting) fail at once; anything else may be retried.
    """
    from airflow.sdk.exceptions import AirflowRescheduleException

    try:
        yield
    except AirflowRescheduleException:
        raise  # not a failure: the task asked to run again later
    except Exception as exc:
        from airflow.sdk.exceptions import AirflowFailException

        from catalog.errors import BreakerTripped, LakeError, shown_error

        text = shown_error(exc)
        fail_fast = get_current_context()["dag_run"].conf.get("fail_fast")
        if isinstance(exc, BreakerTripped) or fail_fast:
            raise AirflowFailException(text) from None
        raise LakeError(text) from None


@dag(
    dag_id="yimen_nightly",
    schedule=CronDataIntervalTimetable("0 2 * * *", timezone="Asia/Shanghai"),
    start_date=pendulum.datetime(2026, 1, 1, tz="Asia/Shanghai"),
    catchup=False,
    max_active_runs=1,
    tags=["yimen", "nightly"],
    doc_md=__doc__,
    default_args={"owner": "platform-team", "retries": 2, "retry_delay": timedelta(minutes=1)},
)
def yimen_nightly():
    @task(execution_timeout=timedelta(minutes=10))
    def open_night() -> str:
        from etl.nightly import open_night

        with _masked_failure():
            return open_night(_night())

    @task(
        pool=SOURCE_POOL,
        retries=3,
        retry_delay=timedelta(minutes=2),
        retry_exponential_backoff=True,
        max_retry_delay=timedelta(minutes=30),
        execution_timeout=timedelta(hours=2),  # a hung source read frees its pool slot
    )
    def extract(dataset_id: str) -> dict:
        from etl.connections import lookup_airflow_connection
        from etl.nightly import extract_dataset

        with _masked_failure():
            night = _night()
            conn_id = night.catalog.dataset(dataset_id).source.connection_id
            return extract_dataset(night, dataset_id, lookup_airflow_connection(conn_id))

    @task(retries=1, execution_timeout=timedelta(hours=2))
    def validate(dataset_id: str) -> dict:
        from etl.nightly import HeavyStepBusy, validate_dataset

        with _masked_failure():  # a tripped breaker fails at once: retrying cannot help
            try:
                return validate_dataset(_night(), dataset_id, wait_for_heavy_step=False)
            except HeavyStepBusy as busy:  # give the slot back; Airflow runs it again later
                from airflow.sdk.exceptions import AirflowRescheduleException

                again = pendulum.now("UTC").add(seconds=busy.retry_in_s)
                raise AirflowRescheduleException(again) from None

    @task(retries=0, execution_timeout=timedelta(minutes=10))
    def quality_gate() -> dict:
        from etl.nightly import quality_gate

        with _masked_failure():
            return quality_gate(_night())

    # beside unify (it reads the clean zone only); before the shared extracts if ever they
    # are ready together
    @task(retries=0, execution_timeout=timedelta(hours=1), priority_weight=10)
    def publish_public() -> dict:
        from etl.nightly import give_way_to_unify, publish_public

        give_way_to_unify()  # beside unify, on the CPU it leaves idle
        with _masked_failure():  # a blocked dataset or a leak-scan finding: one line
            return publish_public(_night())

    @task(retries=0, execution_timeout=timedelta(hours=1))
    def unify() -> dict:
        from etl.nightly import unify

        with _masked_failure():
            return unify(_night())

    @task(retries=0, execution_timeout=timedelta(minutes=10))
    def shared_consumers() -> list[str]:
        from etl.nightly import shared_consumers

        with _masked_failure():
            return shared_consumers(_night())

    @task(retries=1, map_index_template="{{ consumer }}", execution_timeout=timedelta(hours=1))
    def publish_shared(consumer: str) -> dict:
        from etl.nightly import publish_shared

        with _masked_failure():  # a leak-scan block fails this consumer only
            return publish_shared(_night(), consumer, _masking_key)

    @task(trigger_rule="all_done", retries=0, execution_timeout=timedelta(minutes=30))
    def quality_page() -> str:
        from etl.nightly import give_way_to_unify, quality_page

        give_way_to_unify()
        with _masked_failure():
            return quality_page(_night())

    @task(trigger_rule="all_done", retries=0, execution_timeout=timedelta(minutes=30))
    def close_night() -> dict:
        from etl.nightly import close_night

        with _masked_failure():
            night = _night()
            ti = get_current_context()["ti"]
            states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[night.run_id])
            failed = [
                t for t, state in states.get(night.run_id, {}).items() if state in FAILED_STATES
            ]
            return close_night(night, failed)

    opened = open_night()
    gate = quality_gate()
    published = publish_public()
    page = quality_page()
    closed = close_night()
    for dataset in load_catalog().datasets:
        with TaskGroup(
            group_id=f"{dataset.department}__{dataset.code}",
            tooltip=f"{dataset.title} ({dataset.id})",
        ):
            first = _biggest_first(dataset)
            extracted = extract.override(task_id="extract", **first)(dataset.id)
            validated = validate.override(task_id="validate", **first)(dataset.id)
            extracted >> validated
        opened >> extracted
        validated >> gate
        # the quality page and the close only when every step is done, whatever its
        # outcome (not at the first failure)
        [extracted, validated] >> page
        [extracted, validated] >> closed
    # unification runs only when the gate passed; shared extracts after it, one mapped
    # task per consumer department
    unified = unify()
    consumers = shared_consumers()
    shared = publish_shared.expand(consumer=consumers)
    gate >> unified >> consumers
    shared >> closed
    # the open data reads the clean zone only, and the quality page the validations' figures:
    # beside unify, taking turns with a rebuild on the heavy-step lock (decision 0024)
    gate >> published >> page >> closed
    unified >> closed


yimen_nightly()
