"""The DuckDB database a night's unification works in: bounded memory, spills to disk.

Unification joins and groups every mention of the night (7.5 million person mentions at full
scale). Held as pandas frames that took 13 GB; in DuckDB the same work runs on both cores
within a fixed memory limit, spilling to a private scratch file that is removed afterwards
(it holds personal data: owner-only, like the raw zone). docs/decisions/0014 says why.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from catalog.files import owner_only_dir


@dataclass(frozen=True)
class ParquetFiles:
    """Parquet files DuckDB reads in place, with the columns taken (name → file column)."""

    paths: list[str]
    columns: dict[str, str]

    def select(self) -> str:
        cols = ", ".join(f'"{src}" AS "{name}"' for name, src in self.columns.items())
        files = ", ".join("'" + p.replace("'", "''") + "'" for p in self.paths)
        return f"SELECT {cols} FROM read_parquet([{files}])"


Loadable = pd.DataFrame | pa.Table | Iterable[pa.Table] | ParquetFiles
log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")
BATCH_ROWS = 262_144


class Workspace:
    """One DuckDB connection; tables are created by loading frames/Arrow or by SQL."""

    def __init__(self, con: duckdb.DuckDBPyConnection, folder: Path | None = None) -> None:
        self.con = con
        self.folder = folder
        self.spilled: dict[str, Path] = {}

    def take(
        self, name: str, columns: list[str], rows: pa.Array | pa.ChunkedArray | np.ndarray
    ) -> pa.Table:
        """``columns`` of a table whose rows are numbered 0… (``row``) at ``rows``, in that
        order (a null row number gives nulls).

        A spilled table's file is read one row group at a time, only the groups that hold
        wanted rows: the millions of values of a whole column are never held at once.
        """
        if isinstance(rows, pa.ChunkedArray):
            rows = rows.combine_chunks()
        rows = pa.array(rows, pa.int64())
        if name not in self.spilled:  # a table: join the wanted rows, in the order asked
            self.con.register("_wanted", pa.table({"row": rows, "at": np.arange(len(rows))}))
            try:
                return self.arrow(f"""
                    SELECT {", ".join(f"t.{c}" for c in columns)}
                    FROM _wanted w LEFT JOIN {name} t USING (row) ORDER BY w.at
                """)
            finally:
                self.con.unregister("_wanted")
        valid = rows.is_valid().to_numpy(zero_copy_only=False)
        wanted = rows.fill_null(0).to_numpy()
        order = np.argsort(wanted, kind="stable")
        in_order = wanted[order]
        file = pq.ParquetFile(self.spilled[name])
        parts, start = [], 0
        for group in range(file.num_row_groups):
            stop = start + file.metadata.row_group(group).num_rows
            lo, hi = np.searchsorted(in_order, [start, stop])
            if hi > lo:
                values = file.read_row_group(group, columns=columns)
                parts.append(values.take(pa.array(in_order[lo:hi] - start)))
            start = stop
        found = pa.concat_tables(parts) if parts else file.schema_arrow.empty_table()
        back = np.empty_like(order)
        back[order] = np.arange(len(order))
        return found.select(columns).take(pa.array(back, mask=~valid))

    def row_batches(self, name: str, columns: list[str]) -> Iterator[pa.RecordBatch]:
        """``columns`` of a table whose rows are numbered 0…, in row order, in batches."""
        if name in self.spilled:
            yield from pq.ParquetFile(self.spilled[name]).iter_batches(BATCH_ROWS, columns=columns)
            return
        ordered = self.arrow(f"SELECT {', '.join(columns)} FROM {name} ORDER BY row")
        yield from ordered.to_batches(BATCH_ROWS)

    def load_spilled(self, name: str, data: Loadable, empty: pa.Table | None = None) -> int:
        """Load a long stream as view ``name`` over a Parquet file in the scratch folder.

        Millions of rows stay on disk (compressed, read column by column as queries need
        them) instead of in DuckDB's memory; without a scratch folder (tests) it is a table.
        """
        if isinstance(data, ParquetFiles):
            self.execute(f"CREATE OR REPLACE VIEW {name} AS {data.select()}")
            return -1
        if self.folder is None:
            return self.load(name, data, empty)
        if isinstance(data, pd.DataFrame):
            data = pa.Table.from_pandas(data, preserve_index=False)
        batches = [data] if isinstance(data, pa.Table) else data
        path = self.folder / f"{name}.parquet"
        writer, rows = None, 0
        try:
            for batch in batches:
                if writer is None:
                    # spilled for a few minutes only: the cheapest encoding to write
                    writer = pq.ParquetWriter(
                        path,
                        batch.schema,
                        compression="none",
                        use_dictionary=False,
                        write_statistics=False,
                    )
                writer.write_table(batch)
                rows += batch.num_rows
        finally:
            if writer is not None:
                writer.close()
        if writer is None:
            if empty is None:
                raise ValueError(f"nothing to load into {name}")
            pq.write_table(empty, path)
        self.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM read_parquet('{path}')")
        self.spilled[name] = path
        return rows

    def load(self, name: str, data: Loadable, empty: pa.Table | None = None) -> int:
        """(Re)create table ``name`` from a frame, an Arrow table or a stream of Arrow tables.

        A stream that yields nothing loads ``empty`` (the columns it would have had).
        """
        self.con.execute(f"DROP TABLE IF EXISTS {name}")
        parts = [data] if isinstance(data, (pd.DataFrame, pa.Table)) else data
        rows, created = 0, False
        for part in parts:
            self.con.register("_incoming", part)
            verb = f"INSERT INTO {name}" if created else f"CREATE TABLE {name} AS"
            self.con.execute(f"{verb} SELECT * FROM _incoming")
            self.con.unregister("_incoming")
            rows += len(part)
            created = True
        if not created:
            if empty is None:
                raise ValueError(f"nothing to load into {name}")
            return self.load(name, empty)
        return rows

    def execute(self, sql: str, params: list | None = None) -> None:
        with _timed(sql):
            self.con.execute(sql, params or []).fetchall()  # finished: the connection is free

    def frame(self, sql: str, params: list | None = None) -> pd.DataFrame:
        """A query's result as pandas, through Arrow (strings stay Arrow-backed)."""
        with _timed(sql):
            if params:
                return self.con.execute(sql, params).df()
            return self.con.sql(sql).to_arrow_table().to_pandas()

    def scalar(self, sql: str, params: list | None = None):
        with _timed(sql):
            return self.con.execute(sql, params or []).fetchall()[0][0]

    def arrow(self, sql: str) -> pa.Table:
        with _timed(sql):
            return self.con.sql(sql).to_arrow_table()


@contextmanager
def _timed(sql: str) -> Iterator[None]:
    """Each statement's wall time in the debug log (where a step's seconds go, at scale)."""
    if not log.isEnabledFor(logging.DEBUG):
        yield
        return
    started = time.monotonic()
    yield
    head = " ".join(sql.split())[:90]
    log.debug("%.2f s  %s", time.monotonic() - started, head)


@contextmanager
def workspace(
    scratch: Path | None = None,
    memory_limit: str = "1GB",
    threads: int | None = None,
    database: Callable[[Path], Path] | None = None,
) -> Iterator[Workspace]:
    """A workspace in a private scratch file under ``scratch`` (in memory without one).

    ``database``: put a database file into the (private) folder and work in it instead of
    in memory (an incremental night's copy of the kept state).
    """
    threads = threads or min(2, os.cpu_count() or 1)
    # every result that needs an order says ORDER BY; the rest may come in any order, which
    # lets DuckDB stream and parallelise without buffering for order
    config = {"memory_limit": memory_limit, "threads": threads, "preserve_insertion_order": False}
    if scratch is None:
        con = duckdb.connect(":memory:", config=config)
        try:
            yield Workspace(con)
        finally:
            con.close()
        return
    remove_stale_workspaces(Path(scratch))
    folder = Path(scratch) / f"unify-{os.getpid()}-{uuid.uuid4().hex}"
    owner_only_dir(folder)
    config["temp_directory"] = str(folder)  # an in-memory database spills its tables here
    try:
        path = ":memory:" if database is None else str(database(folder))
        con = duckdb.connect(path, config=config)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    try:
        yield Workspace(con, folder)
    finally:
        con.close()
        for path in sorted(folder.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        folder.rmdir()


def remove_stale_workspaces(scratch: Path) -> list[Path]:
    """Remove workspaces left by a process that died (killed mid-step): they hold personal
    data. A workspace names its process; one whose process still runs is left alone."""
    removed = []
    for folder in scratch.glob("unify-*-*") if scratch.exists() else []:
        pid = folder.name.split("-")[1]
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (what it left behind is then still in use)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def in_order(
    fn: Callable[[T], R], items: Iterable[T], workers: int = 2, ahead: int = 2
) -> Iterator[R]:
    """``map(fn, items)`` on ``workers`` threads, in order, at most ``ahead`` items in flight.

    For column work (Arrow compute and numpy release the GIL) over a stream too long to
    hold: unlike ``Executor.map`` it does not submit the whole stream up front.
    """
    with ThreadPoolExecutor(workers) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) > ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def exact_batches(batches: Iterable[pa.RecordBatch], size: int) -> Iterator[pa.RecordBatch]:
    """The same rows in batches of exactly ``size`` (the last one shorter).

    What is written then does not depend on how the rows happened to be chunked on the way
    (a partition read fresh or from the mention cache): equal rows, equal files.
    """
    pending: list[pa.RecordBatch] = []
    rows = 0
    for batch in batches:
        pending.append(batch)
        rows += batch.num_rows
        while rows >= size:
            table = pa.Table.from_batches(pending)
            yield from table.slice(0, size).combine_chunks().to_batches()
            pending, rows = table.slice(size).to_batches(), rows - size
    if rows:
        yield from pa.Table.from_batches(pending).combine_chunks().to_batches()


class Stopwatch:
    """Wall seconds per named part of a step (recorded with the step's figures)."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.monotonic()

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.laps[name] = round(now - self._last, 1)
        self._last = now

    def restart(self) -> None:
        """The next lap counts from now (the time since the last one is not a part)."""
        self._last = time.monotonic()
