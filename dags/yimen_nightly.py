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
`publish_public` then writes the open data (`public/`: de-identified microdata behind the
k-anonymity gate, statistics, `catalog.jsonld`, `index.html`) behind the leak scan;
unification will sit between the gate and it. `close_night` always runs and records the
outcome. Task bodies are one-line calls into `etl.nightly`.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import TaskGroup, dag, get_current_context, task
from airflow.timetables.interval import CronDataIntervalTimetable

from catalog.definitions import load_catalog
from etl.settings import SOURCE_POOL

FAILED_STATES = {"failed", "upstream_failed"}


def _night():
    """The task's :class:`etl.nightly.Night`: settings read here, at the edge, once."""
    from etl.nightly import Night, partition_date
    from etl.settings import LakeSettings

    ctx = get_current_context()
    dag_run = ctx["dag_run"]
    ds = partition_date(ctx.get("data_interval_start"), ctx.get("logical_date"), dag_run.conf)
    return Night.open(ds, dag_run.run_id, LakeSettings.from_env())


def _masking_key():
    """The masking master key, read here at the edge: an Airflow Variable, else the env."""
    import os

    from airflow.sdk import Variable

    from masking.keys import ENV_KEY, MasterKey

    stored = Variable.get("yimen_masking_key", default=None)
    return MasterKey.from_env({ENV_KEY: stored} if stored else os.environ)


def _fail_fast_if_asked(exc: Exception) -> None:
    """`lake run` asks for no retries: a person is waiting for the answer."""
    from airflow.sdk.exceptions import AirflowFailException

    if get_current_context()["dag_run"].conf.get("fail_fast"):
        raise AirflowFailException(str(exc)) from exc


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
    @task
    def open_night() -> str:
        from etl.nightly import open_night

        return open_night(_night())

    @task(
        pool=SOURCE_POOL,
        retries=3,
        retry_delay=timedelta(minutes=2),
        retry_exponential_backoff=True,
        max_retry_delay=timedelta(minutes=30),
    )
    def extract(dataset_id: str) -> dict:
        from etl.connections import lookup_airflow_connection
        from etl.nightly import extract_dataset

        night = _night()
        try:
            conn_id = night.catalog.dataset(dataset_id).source.connection_id
            return extract_dataset(night, dataset_id, lookup_airflow_connection(conn_id))
        except Exception as exc:
            _fail_fast_if_asked(exc)
            raise

    @task(retries=1)
    def validate(dataset_id: str) -> dict:
        from catalog.errors import BreakerTripped
        from etl.nightly import validate_dataset

        night = _night()
        try:
            return validate_dataset(night, dataset_id)
        except BreakerTripped as exc:  # a data problem: retrying cannot help
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(str(exc)) from exc
        except Exception as exc:
            _fail_fast_if_asked(exc)
            raise

    @task(retries=0)
    def quality_gate() -> dict:
        from etl.nightly import quality_gate

        return quality_gate(_night())

    @task(retries=0)
    def publish_public() -> dict:
        from etl.nightly import publish_public

        return publish_public(_night())

    @task(retries=0)
    def shared_consumers() -> list[str]:
        from etl.nightly import shared_consumers

        return shared_consumers(_night())

    @task(retries=1, map_index_template="{{ consumer }}")
    def publish_shared(consumer: str) -> dict:
        from etl.nightly import publish_shared

        try:
            return publish_shared(_night(), consumer, _masking_key)
        except Exception as exc:
            _fail_fast_if_asked(exc)
            raise

    @task(trigger_rule="all_done", retries=0)
    def close_night() -> dict:
        from etl.nightly import close_night

        night = _night()
        ti = get_current_context()["ti"]
        states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[night.run_id]).get(night.run_id, {})
        failed = [task for task, state in states.items() if state in FAILED_STATES]
        return close_night(night, failed)

    opened = open_night()
    gate = quality_gate()
    published = publish_public()
    closed = close_night()
    for dataset in load_catalog().datasets:
        with TaskGroup(
            group_id=f"{dataset.department}__{dataset.code}",
            tooltip=f"{dataset.title} ({dataset.id})",
        ):
            extracted = extract.override(task_id="extract")(dataset.id)
            validated = validate.override(task_id="validate")(dataset.id)
            extracted >> validated
        opened >> extracted
        validated >> gate
        # close only when every step is done, whatever its outcome (not at the first failure)
        [extracted, validated] >> closed
    # unification plugs in after `gate`; shared extracts: one mapped task per consumer;
    # the open data does not wait for them (a failed consumer extract does not stop it)
    consumers = shared_consumers()
    shared = publish_shared.expand(consumer=consumers)
    gate >> consumers
    shared >> closed
    gate >> published >> closed
    gate >> closed


yimen_nightly()
