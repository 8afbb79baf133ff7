"""Operating limits: task and source timeouts, spill files after a kill, the night's
summary, the Airflow UI's exposure."""

from __future__ import annotations

import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pyarrow as pa
import pytest
from sqlalchemy import text

from catalog.definitions import load_catalog
from catalog.errors import SourceError
from catalog.figures import QualityFigures
from catalog.store import CatalogStore, PartitionRecord
from etl.connections import SourceConnection
from etl.extract import extract_to_raw
from etl.readers import ArrowSqlReader, SqlReader
from etl.settings import REPO_ROOT, LakeSettings
from etl.validate import validate_partition
from etl.zones import RAW_SOURCES, Lake
from tests.helpers import DEMO_DATE, connections, postgres_url

CATALOG = load_catalog()


def test_every_task_has_an_execution_timeout() -> None:
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(REPO_ROOT / "dags")).dags["yimen_nightly"]
    for task in dag.tasks:
        assert task.execution_timeout is not None, task.task_id
        assert task.execution_timeout.total_seconds() <= 4 * 3600, task.task_id


def test_source_connections_carry_connect_and_statement_timeouts(tmp_path: Path) -> None:
    pg = SourceConnection("db", "postgres", host="h", extra={"statement_timeout": 60})
    assert pg.connect_args() == {"connect_timeout": 30, "options": "-c statement_timeout=60000"}
    assert SourceConnection("db", "mysql", extra={"connect_timeout": 5}).connect_args() == {
        "connect_timeout": 5,
        "read_timeout": 1800,
    }
    # SQLite: a database the department's system holds locked fails the read, it does not
    # hang. The system is another process, as in life (POSIX locks do not separate the
    # SQLite copies inside one process: the ADBC driver links its own).
    db = tmp_path / "locked.db"
    with sqlite3.connect(db) as setup:
        setup.execute("CREATE TABLE taxpayer (taxpayer_id TEXT, updated_at TEXT)")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys\n"
            f"c = sqlite3.connect({str(db)!r}, isolation_level=None)\n"
            "c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        conn = SourceConnection("dishui_db", "sqlite", host=str(db), extra={"connect_timeout": 0})
        assert conn.connect_args() == {"timeout": 0}
        for reader in (SqlReader, ArrowSqlReader):  # the DB-API and the ADBC path alike
            with pytest.raises(SourceError, match="database is locked"):
                reader(CATALOG.dataset("dishui.taxpayer"), conn, (None, None), 10, DEMO_DATE)
    finally:
        holder.communicate("")


@pytest.mark.skipif(postgres_url() is None, reason="no test PostgreSQL (make test starts one)")
def test_a_postgresql_source_runs_under_the_statement_timeout(departments) -> None:
    conn = connections(departments.out_dir)["gongan_db"]
    conn = SourceConnection(**{**conn.__dict__, "extra": {"statement_timeout": 1}})
    reader = SqlReader(CATALOG.dataset("gongan.population"), conn, (None, None), 10, DEMO_DATE)
    with reader.engine.connect() as c:
        assert c.execute(text("SHOW statement_timeout")).scalar() == "1s"
        with pytest.raises(Exception, match="statement timeout"):
            c.execute(text("SELECT pg_sleep(3)"))
    reader.engine.dispose()
    with conn.adbc_connect() as arrow, arrow.cursor() as cursor:  # the ADBC path too
        cursor.execute("SELECT current_setting('statement_timeout')")
        assert cursor.fetchone() == ("1s",)
        with pytest.raises(Exception, match="statement timeout"):
            cursor.execute("SELECT pg_sleep(3)")
            cursor.fetchall()


def _largish_raw_partition(departments, root: Path, copies: int = 12) -> None:
    """The session's GBK delivery extracted, then repeated into ~48k rows (new keys)."""
    dataset = CATALOG.dataset("renshe.insured_person")
    conn = connections(departments.out_dir)[dataset.source.connection_id]
    lake = Lake(str(root / "lake"), f"sqlite:///{root}/c.db")
    store = lake.store
    result = extract_to_raw(dataset, conn, DEMO_DATE, lake=lake, store=store, batch_id="big")
    one = lake.read_partition(result.path)
    tables = []
    for n in range(copies):
        keys = pa.compute.binary_join_element_wise(one["insured_no"], f"-{n}", "")
        tables.append(one.set_column(0, "insured_no", keys))
    big = pa.concat_tables(tables)
    big = big.set_column(
        big.schema.get_field_index("_row_number"),
        "_row_number",
        pa.array(range(1, big.num_rows + 1), pa.int64()),
    )
    manifest = lake.write_partition(result.path, big.to_batches(50_000), big.schema, private=True)
    store.record_partition(
        "big",
        PartitionRecord(RAW_SOURCES, dataset.id, DEMO_DATE, result.path, manifest.rows, "x"),
    )


VALIDATE = """
import sys
from datetime import date
from pathlib import Path
from catalog.definitions import load_catalog
from catalog.store import CatalogStore
from etl.validate import validate_partition
from etl.zones import Lake
root = Path(sys.argv[1])
validate_partition(
    load_catalog().dataset("renshe.insured_person"), date.fromisoformat(sys.argv[2]),
    lake=Lake(str(root / "lake"), f"sqlite:///{root}/c.db"), store=CatalogStore(f"sqlite:///{root}/c.db"),
    run_id="killed", work_dir=root / "tmp",
)
"""


def test_spill_files_of_a_killed_validation_are_removed_by_the_next(
    departments, tmp_path: Path
) -> None:
    _largish_raw_partition(departments, tmp_path)
    work = tmp_path / "tmp"
    child = subprocess.Popen(
        [sys.executable, "-c", VALIDATE, str(tmp_path), DEMO_DATE.isoformat()], cwd=REPO_ROOT
    )
    spilling: list[Path] = []
    deadline = time.monotonic() + 300  # a bound on waiting, not a timing assertion
    while not spilling and child.poll() is None and time.monotonic() < deadline:
        spilling = [p.parent for p in work.glob("dedup-*/*.arrows")]
        time.sleep(0.005)
    assert spilling, "the validation finished before it spilled"
    os.kill(child.pid, signal.SIGKILL)  # as the kernel's OOM killer or `kill -9` would
    child.wait()
    leftovers = sorted(work.glob("*-*"))
    assert spilling[0] in leftovers and f"-{child.pid}-" in spilling[0].name
    assert stat.S_IMODE(spilling[0].stat().st_mode) == 0o700
    for file in spilling[0].glob("*.arrows"):  # personal data: the owner's only
        assert stat.S_IMODE(file.stat().st_mode) == 0o600

    result = validate_partition(
        CATALOG.dataset("renshe.insured_person"),
        DEMO_DATE,
        lake=Lake(str(tmp_path / "lake"), f"sqlite:///{tmp_path}/c.db"),
        store=CatalogStore(f"sqlite:///{tmp_path}/c.db"),
        run_id="next",
        work_dir=work,
    )
    assert result.conserved and result.delivered > 40_000
    assert not any(p.exists() for p in leftovers)
    assert list(work.iterdir()) == []  # and the run's own spill folders are gone too


def test_a_living_validations_spill_folder_is_left_alone(tmp_path: Path) -> None:
    from etl.dedup import RowSpill, remove_orphaned_spills

    spill = RowSpill(tmp_path)
    spill.add(pa.table({"x": [1]}))
    assert remove_orphaned_spills(tmp_path) == [] and spill.dir.exists()
    spill.close()
    assert not spill.dir.exists()


def test_the_summary_shows_only_this_runs_figures(tmp_path: Path, capsys) -> None:
    from etl.cli import _print_night

    settings = LakeSettings.under(tmp_path)
    store = CatalogStore(settings.catalog_url)
    ds = date(2026, 11, 28)
    earlier = QualityFigures("renshe.insured_person", ds, 4000, 3990, 10, 0, 30, 2)
    store.record_quality("earlier-run", earlier)
    store.record_partition(
        "earlier-run", PartitionRecord(RAW_SOURCES, "renshe.insured_person", ds, "/p", 4000, "f")
    )
    store.record_error("this-run", "extract renshe.insured_person", "no delivery")
    store.record_error("this-run", "quality gate", "not validated")
    _print_night(settings, ds, "this-run")
    shown = capsys.readouterr().out
    line = next(x for x in shown.splitlines() if "renshe.insured_person" in x)
    assert "FAILED (extract)" in line
    assert "4,000" not in line and "3,990" not in line  # the earlier run's figures
    assert "gate" not in shown


def test_the_airflow_ui_listens_on_localhost_with_a_fernet_key_per_installation(
    session_settings: LakeSettings,
) -> None:
    from airflow.configuration import conf
    from cryptography.fernet import Fernet

    assert conf.get("api", "host") == "127.0.0.1"
    key = os.environ["AIRFLOW__CORE__FERNET_KEY"]
    assert Fernet(key.encode()).decrypt(Fernet(key.encode()).encrypt(b"x")) == b"x"
    stored = session_settings.var / "airflow" / "fernet_key"
    assert stored.read_text().strip() == key
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert conf.get("logging", "file_task_handler_new_file_permissions") == "0o600"
    assert conf.get("logging", "file_task_handler_new_folder_permissions") == "0o700"
    from airflow.cli.cli_config import ARG_API_SERVER_HOSTNAME  # `airflow api-server --host`

    assert ARG_API_SERVER_HOSTNAME.kwargs["default"] == "127.0.0.1"


def test_a_staged_raw_partition_is_closed_to_others_while_it_is_written(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"), f"sqlite:///{tmp_path}/c.db")
    path = f"{tmp_path}/lake/raw/sources/renshe/insured_person/dt=2026-11-28"
    seen: list[int] = []

    def batches():
        yield pa.record_batch({"name": ["陈大文"]})
        table = Path(path).parent  # mid-write: the Iceberg table's folder and the zone's
        seen.extend(stat.S_IMODE(p.stat().st_mode) for p in (table, table.parent.parent))
        yield pa.record_batch({"name": ["何军荣"]})

    before = os.umask(0o022)  # a caller with a loose umask (a cron shell, a test runner)
    try:
        lake.write_partition(path, batches(), pa.schema([("name", pa.string())]), private=True)
    finally:
        os.umask(before)
    assert seen == [0o750, 0o750]  # nobody else can reach the files before their final modes
    assert stat.S_IMODE(Path(path).stat().st_mode) == 0o750
    assert {stat.S_IMODE(f.stat().st_mode) for f in Path(path).iterdir()} == {0o640}
