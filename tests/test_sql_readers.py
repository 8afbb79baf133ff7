"""The Arrow (ADBC) SQL reader delivers exactly what the generic DB-API reader delivers.

Same simulated department system, two lakes: one extracted through ADBC (the default for
SQLite and PostgreSQL), one through SQLAlchemy/DB-API (``{"reader": "dbapi"}``, the path any
other database takes). First load, an incremental night and a rerun of the first date
inside its recorded window must give the same rows, row numbers, windows and counts.
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from catalog.definitions import load_catalog
from catalog.errors import SourceError
from catalog.store import CatalogStore
from etl.connections import SourceConnection
from etl.extract import ExtractResult, extract_to_raw
from etl.readers import ArrowSqlReader, SqlReader, open_source
from etl.settings import LakeSettings
from tests.helpers import DEMO_DATE, busy_departments, connections, postgres_url

CATALOG = load_catalog()
POPULATION = CATALOG.dataset("gongan.population")
BATCH_ROWS = 50  # many batches on test data: type inference and the window cross batches


def _content_fingerprint(settings: LakeSettings, result: ExtractResult) -> str:
    """SHA-256 of the partition's rows in order, without the run's own stamp and clock."""
    table = settings.lake().read_partition(result.path)
    table = table.drop_columns(["_extracted_at", "_batch_id"])
    digest = hashlib.sha256()
    for batch in table.to_batches():
        digest.update(pa.ipc.serialize_pandas(batch.to_pandas()).to_pybytes())
    return digest.hexdigest()


def _night(settings: LakeSettings, conn: SourceConnection, ds, run: str) -> ExtractResult:
    return extract_to_raw(
        POPULATION,
        conn,
        ds,
        lake=settings.lake(),
        store=CatalogStore(settings.catalog_url),
        batch_id=run,
        batch_rows=BATCH_ROWS,
    )


def _both_readers_agree(tmp_path: Path, departments_dir: Path, conn: SourceConnection) -> None:
    """Three nights through each reader; every partition and window identical."""
    import simulator

    arrow, dbapi = (LakeSettings.under(tmp_path / name) for name in ("arrow", "dbapi"))
    generic = replace(conn, extra={**conn.extra, "reader": "dbapi"})
    assert conn.arrow_driver() is not None and generic.arrow_driver() is None
    assert isinstance(open_source(POPULATION, conn, DEMO_DATE), ArrowSqlReader)
    assert isinstance(open_source(POPULATION, generic, DEMO_DATE), SqlReader)
    day2 = DEMO_DATE + timedelta(days=1)
    results: dict[str, list[ExtractResult]] = {"arrow": [], "dbapi": []}
    for night, ds in [("first", DEMO_DATE), ("incremental", day2)]:
        if night == "incremental":
            simulator.advance_day(departments_dir)
        results["arrow"].append(_night(arrow, conn, ds, night))
        results["dbapi"].append(_night(dbapi, generic, ds, night))
    simulator.advance_day(departments_dir)  # later changes exist when the first date reruns
    results["arrow"].append(_night(arrow, conn, DEMO_DATE, "rerun"))
    results["dbapi"].append(_night(dbapi, generic, DEMO_DATE, "rerun"))

    for a, d in zip(results["arrow"], results["dbapi"], strict=True):
        assert a.rows == d.rows > 0
        assert (a.low_watermark, a.high_watermark) == (d.low_watermark, d.high_watermark)
        assert a.null_watermark_rows == d.null_watermark_rows > 0
        assert _content_fingerprint(arrow, a) == _content_fingerprint(dbapi, d)
    first, incremental, rerun = results["arrow"]
    assert incremental.rows < first.rows and incremental.low_watermark == first.high_watermark
    # the rerun keeps its recorded window: rows changed since then belong to later nights
    assert rerun.high_watermark == first.high_watermark and 0 < rerun.rows < first.rows


def _dirty(conn_url: str) -> None:
    """Rows a first batch can mislead a type guess with, and rows with no watermark."""
    with create_engine(conn_url).begin() as db:
        keys = [r[0] for r in db.execute(text("SELECT person_no FROM population ORDER BY 1"))]
        # a column NULL for the first batches, text later; and watermark-less rows
        db.execute(
            text("UPDATE population SET ethnicity = NULL WHERE person_no <= :k"), {"k": keys[120]}
        )
        db.execute(
            text("UPDATE population SET updated_at = NULL WHERE person_no = :k"), {"k": keys[7]}
        )
        db.execute(
            text("UPDATE population SET updated_at = '2026/11/28 09:00:00' WHERE person_no = :k"),
            {"k": keys[9]},
        )


def test_sqlite_arrow_and_dbapi_readers_deliver_identical_partitions(tmp_path: Path) -> None:
    out = busy_departments(tmp_path)
    conn = connections(out)["gongan_db"]
    assert conn.conn_type == "sqlite"
    _dirty(str(conn.sqlalchemy_url()))
    _both_readers_agree(tmp_path, out, conn)


@pytest.mark.skipif(postgres_url() is None, reason="no test PostgreSQL (make test starts one)")
def test_postgresql_arrow_and_dbapi_readers_deliver_identical_partitions(tmp_path: Path) -> None:
    import simulator

    # a database of its own: the session's departments keep theirs in yimen_source
    server = make_url(postgres_url())
    own = server.set(database="yimen_readers_test")
    with create_engine(server, isolation_level="AUTOCOMMIT").connect() as admin:
        admin.execute(text("DROP DATABASE IF EXISTS yimen_readers_test"))
        admin.execute(text("CREATE DATABASE yimen_readers_test"))
    out = tmp_path / "departments"
    url = own.render_as_string(hide_password=False)
    simulator.build_departments(
        out,
        scale=0.002,
        as_of=DEMO_DATE,
        sql_urls={"gongan_db": url},
        ground_truth_dir=tmp_path / "truth",
        daily=simulator.DailyRates(update=0.05, insert=0.01, delete=0.01),
    )
    conn = connections(out)["gongan_db"]
    assert conn.conn_type == "postgres"
    _dirty(url)
    _both_readers_agree(tmp_path, out, conn)


def test_sqlite_text_that_is_not_utf8_is_one_clear_line(tmp_path: Path) -> None:
    db = tmp_path / "gongan.db"
    with sqlite3.connect(db) as raw:
        raw.execute("CREATE TABLE population (person_no TEXT, name TEXT, updated_at TEXT)")
        raw.execute(
            "INSERT INTO population VALUES ('1', CAST(X'B9FA' AS TEXT), '2026-11-28 01:00:00')"
        )
    conn = SourceConnection("gongan_db", "sqlite", host=str(db))
    reader = open_source(POPULATION, conn, DEMO_DATE)
    with pytest.raises(SourceError) as err:
        list(reader.batches())
    assert str(err.value).startswith("gongan.population: cannot read sqlite")
    assert "\n" not in str(err.value)


def test_a_missing_sqlite_database_is_one_clear_line_and_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "nope.db"
    conn = SourceConnection("gongan_db", "sqlite", host=str(missing))
    with pytest.raises(SourceError) as err:
        open_source(POPULATION, conn, DEMO_DATE)
    assert "no SQLite database at" in str(err.value) and "\n" not in str(err.value)
    assert not missing.exists()
