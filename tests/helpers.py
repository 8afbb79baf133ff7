"""Helpers shared by the tests: the session's dates and scale, the test PostgreSQL server,
the simulator's connections, and random valid identifiers (python-stdnum is the oracle there).

Tests import from here, never from each other or from ``conftest.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import numpy as np

from catalog.identifiers import make_org_codes, make_resident_ids, make_usccs
from etl.connections import SourceConnection

DEMO_DATE = date(2026, 11, 28)
TEST_SCALE = 0.002  # ≈ 16k source records: every source kind, every kind of dirt, seconds to build
REPO = Path(__file__).resolve().parent.parent


def postgres_url() -> str | None:
    """URL of the test PostgreSQL server that `make test` starts, if there is one."""
    url_file = REPO / "var" / "test-postgres.url"
    url = os.environ.get("YIMEN_TEST_PG_URL") or (
        url_file.read_text().strip() if url_file.exists() else None
    )
    return url or None


def connections(departments_dir: Path) -> dict[str, SourceConnection]:
    """The simulator's connections.json, read the way Airflow's file backend reads it."""
    raw = json.loads((departments_dir / "connections.json").read_text())
    return {
        conn_id: SourceConnection(conn_id=conn_id, **{k: v for k, v in spec.items()})
        for conn_id, spec in raw.items()
    }


def with_control_file(data_file: Path, rows: int) -> Path:
    """Write the control file (rows, SHA-256) a department sends beside a hand-made drop."""
    from simulator.writers import write_control_file

    write_control_file(data_file, rows)
    return data_file


def drop_connection(departments_dir: Path, dataset_id: str) -> SourceConnection:
    """The file-drop connection of ``dataset_id`` in a (copied) departments folder."""
    from catalog.definitions import load_catalog

    dataset = load_catalog().dataset(dataset_id)
    folder = departments_dir / dataset.department
    return SourceConnection(dataset.source.connection_id, "fs", extra={"path": str(folder)})


def hostile_copy(
    departments_dir: Path,
    work: Path,
    dataset_id: str,
    kind: str,
    ds: date = DEMO_DATE,
    control: str | None = None,
) -> SourceConnection:
    """Copy the departments to ``work``, make one hostile delivery there, return its drop."""
    import shutil

    import simulator

    shutil.copytree(departments_dir, work, dirs_exist_ok=True)
    simulator.make_hostile_delivery(work, dataset_id, kind, ds, control=control)  # type: ignore[arg-type]
    return drop_connection(work, dataset_id)


USCC_ALPHABET = list("0123456789ABCDEFGHJKLMNPQRTUWXY")


def resident_ids(rng: np.random.Generator, n: int, divisions: list[str]) -> np.ndarray:
    """IDs of people born 1930–2019 under the given division codes."""
    days = rng.integers(0, 365 * 90, n).astype("timedelta64[D]") + np.datetime64("1930-01-01")
    births = np.char.replace(days.astype("U10"), "-", "").astype(np.int64)
    codes = rng.choice([int(c) for c in divisions], n)
    return make_resident_ids(codes, births, rng.integers(0, 1000, n))


def usccs(rng: np.random.Generator, n: int, divisions: list[str]) -> np.ndarray:
    bodies = ["".join(r) for r in rng.choice(USCC_ALPHABET, (n, 8))]
    orgs = make_org_codes(np.array(bodies))
    return make_usccs(rng.choice(["91", "92", "93"], n), rng.choice(divisions, n), orgs)


def extract_and_validate(
    datasets, departments_dir: Path, ds: date, *, lake, store, run_id: str, work_dir: Path
) -> dict:
    """A night's extract + validate of ``datasets`` into a test lake (the real steps)."""
    from etl.extract import extract_to_raw
    from etl.validate import validate_partition

    conns = connections(departments_dir)
    results = {}
    for dataset in datasets:
        conn = conns[dataset.source.connection_id]
        extract_to_raw(dataset, conn, ds, lake=lake, store=store, batch_id=run_id)
        results[dataset.id] = validate_partition(
            dataset, ds, lake=lake, store=store, run_id=run_id,
            docs_dir=work_dir / "docs" / dataset.id, work_dir=work_dir / "tmp",
        )  # fmt: skip
    return results


def busy_departments(tmp_path: Path) -> Path:
    """Small simulated departments whose daily step changes plenty (updates, inserts,
    deletes), for tests of windows and readers across days."""
    import simulator

    out = tmp_path / "departments"
    simulator.build_departments(
        out,
        scale=0.002,
        as_of=DEMO_DATE,
        ground_truth_dir=tmp_path / "truth",
        daily=simulator.DailyRates(update=0.05, insert=0.01, delete=0.01),
    )
    return out


def lock_held_elsewhere(
    lock_file: Path, release_when: tuple[Path, str] | None = None
) -> subprocess.Popen:
    """Another process holding ``lock_file``'s ``flock`` (a heavy step of another task);
    returns once the lock is held. The kernel drops the lock when the process ends.

    It holds the lock until it is killed, or with ``release_when`` (a SQLite file and a
    query) until the query's answer is true (at most 120 s): it then prints the UTC time
    and exits. It polls the database itself, so no thread of the test's process is inside
    SQLite when the executor forks its workers from that process (a fork then would
    inherit SQLite's lock, held, and the forked tasks would hang on their first query).
    """
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    database, query = release_when or ("", "")
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(lock_file), str(database), query],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "locked"
    return holder


_HOLDER = """
import datetime, fcntl, sqlite3, sys, time
lock_file, database, query = sys.argv[1:4]
held = open(lock_file, "a")
fcntl.flock(held, fcntl.LOCK_EX)
print("locked", flush=True)
if not database:
    sys.stdin.read()
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    try:
        with sqlite3.connect(database, timeout=30) as db:
            if db.execute(query).fetchone()[0]:
                break
    except sqlite3.OperationalError:  # not created yet
        pass
    time.sleep(0.2)
print(datetime.datetime.now(datetime.UTC).replace(tzinfo=None).isoformat(), flush=True)
"""
