"""Batch sinks: write a department view the way that department's system delivers it.

Every sink takes pandas batches whose columns are text (missing = NaN/None) and streams
them out, so memory is bounded by one batch whatever the scale.
"""

from __future__ import annotations

import io
import json
import sqlite3
from datetime import date, datetime, time
from pathlib import Path
from typing import Protocol

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import xlsxwriter
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from etl.contract import control_path, file_sha256


class Sink(Protocol):
    def write(self, batch: pd.DataFrame) -> None: ...
    def close(self) -> None: ...


def write_control_file(data_file: Path, rows: int) -> Path:
    """The control file a department sends beside a drop: ``{"file", "rows", "sha256"}``.

    ``rows`` counts data rows (no header line; JSON Lines: records; .xlsx: rows of the
    data sheet below its header). Written after the data file is complete, as the
    departments' exchange tools do.
    """
    target = control_path(data_file)
    body = {"file": data_file.name, "rows": rows, "sha256": file_sha256(data_file)}
    target.write_text(json.dumps(body) + "\n", encoding="utf-8")
    return target


def to_arrow(batch: pd.DataFrame) -> pa.Table:
    """All columns as arrow strings (nulls kept): the one representation every sink uses."""
    table = pa.Table.from_pandas(batch, preserve_index=False)
    return table.cast(pa.schema([(c, pa.string()) for c in table.column_names]))


def rows(batch: pd.DataFrame) -> list[tuple]:
    table = to_arrow(batch)
    return list(zip(*(col.to_pylist() for col in table.columns), strict=True))


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class SqliteSink:
    """A legacy system's table in SQLite: every column TEXT, bulk-loaded in one go."""

    def __init__(self, path: Path, table: str, columns: list[str], key: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=OFF")
        self.table, self.columns = table, columns
        cols = ", ".join(f"{quote(c)} TEXT" + (" PRIMARY KEY" if c == key else "") for c in columns)
        self.conn.execute(f"DROP TABLE IF EXISTS {quote(table)}")
        self.conn.execute(f"CREATE TABLE {quote(table)} ({cols})")
        marks = ", ".join("?" * len(columns))
        self.insert = f"INSERT INTO {quote(table)} VALUES ({marks})"

    def write(self, batch: pd.DataFrame) -> None:
        self.conn.execute("BEGIN")
        self.conn.executemany(self.insert, rows(batch))
        self.conn.execute("COMMIT")

    def close(self) -> None:
        index = quote(f"ix_{self.table}_updated_at")
        self.conn.execute(f"CREATE INDEX {index} ON {quote(self.table)} (updated_at)")
        self.conn.execute("PRAGMA journal_mode=DELETE")
        self.conn.close()


class SqlAlchemySink:
    """Same table in any SQLAlchemy database (PostgreSQL in CI); COPY when psycopg is used."""

    def __init__(self, url: str, table: str, columns: list[str], key: str) -> None:
        self.engine = create_engine(url)
        self.table, self.columns = table, columns
        cols = ", ".join(f"{quote(c)} TEXT" + (" PRIMARY KEY" if c == key else "") for c in columns)
        with self.engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {quote(table)}")
            conn.exec_driver_sql(f"CREATE TABLE {quote(table)} ({cols})")

    def write(self, batch: pd.DataFrame) -> None:
        data = rows(batch)
        raw = self.engine.raw_connection()
        try:
            cur = raw.cursor()
            if hasattr(cur, "copy"):  # psycopg 3
                names = ", ".join(quote(c) for c in self.columns)
                with cur.copy(f"COPY {quote(self.table)} ({names}) FROM STDIN") as copy:
                    for row in data:
                        copy.write_row(row)
            else:
                marks = ", ".join(["%s"] * len(self.columns))
                cur.executemany(f"INSERT INTO {quote(self.table)} VALUES ({marks})", data)
            raw.commit()
        finally:
            raw.close()

    def close(self) -> None:
        t = self.table
        with self.engine.begin() as conn:
            conn.exec_driver_sql(
                f"CREATE INDEX {quote('ix_' + t + '_updated_at')} ON {quote(t)} (updated_at)"
            )
        self.engine.dispose()


class CsvSink:
    """CSV with a header row, comma, standard quoting, in the declared encoding."""

    def __init__(self, path: Path, encoding: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.rows = path, 0
        self.file = path.open("wb")
        self.encoding = encoding.lower()
        self.first = True
        if self.encoding in ("utf-8-sig", "utf_8_sig"):
            self.file.write(b"\xef\xbb\xbf")

    def write(self, batch: pd.DataFrame) -> None:
        buf = io.BytesIO()
        options = pacsv.WriteOptions(include_header=self.first, quoting_style="needed")
        pacsv.write_csv(to_arrow(batch), buf, write_options=options)
        data = buf.getvalue()
        if self.encoding not in ("utf-8", "utf8", "utf-8-sig", "utf_8_sig"):
            data = data.decode("utf-8").encode(self.encoding)
        self.file.write(data)
        self.first = False
        self.rows += len(batch)

    def close(self) -> None:
        self.file.close()
        write_control_file(self.path, self.rows)


class JsonlSink:
    """JSON Lines, UTF-8, one object per line, every value a string or null."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.rows = path, 0
        self.file = path.open("wb")

    def write(self, batch: pd.DataFrame) -> None:
        if not len(batch):
            return
        text = batch.to_json(orient="records", lines=True, force_ascii=False)
        self.file.write(text.rstrip("\n").encode("utf-8") + b"\n")
        self.rows += len(batch)

    def close(self) -> None:
        self.file.close()
        write_control_file(self.path, self.rows)


class XlsxSink:
    """An .xlsx workbook streamed with XlsxWriter; every cell a string (IDs keep 0s and X).

    ``notes`` puts a notes sheet in front of the data sheet, as clerks' exports often do;
    ``header=False`` leaves the header row out (a hostile delivery).
    """

    def __init__(
        self,
        path: Path,
        columns: list[str],
        created: date,
        *,
        sheet: str = "taxpayer",
        notes: list[str] | None = None,
        header: bool = True,
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.book = xlsxwriter.Workbook(
            str(path), {"constant_memory": True, "strings_to_numbers": False}
        )
        # a fixed creation time keeps the file byte-identical for the same seed
        self.book.set_properties({"created": datetime.combine(created, time(23, 0))})
        if notes:
            notes_sheet = self.book.add_worksheet("说明")
            for number, line in enumerate(notes):
                notes_sheet.write_string(number, 0, line)
        self.sheet = self.book.add_worksheet(sheet)
        if header:
            self.sheet.write_row(0, 0, columns)
        self.first_row = self.row = 1 if header else 0

    def write(self, batch: pd.DataFrame) -> None:
        write_string = self.sheet.write_string
        for record in rows(batch):
            for col, value in enumerate(record):
                if value is not None:
                    write_string(self.row, col, value)
            self.row += 1

    def close(self) -> None:
        self.book.close()
        write_control_file(self.path, self.row - self.first_row)


class ParquetSink:
    """Ground truth and simulator state: plain Parquet, written batch by batch."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.tmp = path.with_suffix(".parquet.tmp")
        self.writer: pq.ParquetWriter | None = None

    def write(self, batch: pd.DataFrame) -> None:
        table = to_arrow(batch)
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.tmp, table.schema)
        self.writer.write_table(table)

    def close(self) -> None:
        if self.writer is None:
            return
        self.writer.close()
        self.tmp.replace(self.path)


def sql_connection_entry(url: str) -> dict[str, object]:
    """Airflow connection fields for a SQLAlchemy URL (postgres in CI)."""
    u = make_url(url)
    backend = u.get_backend_name()
    if backend == "sqlite":
        return {"conn_type": "sqlite", "host": u.database}
    return {
        "conn_type": "postgres" if backend.startswith("postgres") else backend,
        "host": u.host,
        "port": u.port,
        "login": u.username,
        "password": u.password,
        "schema": u.database,
    }


def write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
