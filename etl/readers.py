"""Streaming readers, one per kind of department system (SQL, CSV, JSON Lines, Excel).

Each reader yields ``pyarrow.RecordBatch``es whose columns are all strings, exactly as
delivered: no parsing of dates or numbers here, so nothing is lost before validation.
Memory is bounded by ``batch_rows`` (SQL, Excel) or the block size (CSV, JSON Lines).
"""

from __future__ import annotations

import codecs
import itertools
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Protocol
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
from sqlalchemy import (
    and_,
    bindparam,
    column,
    create_engine,
    literal_column,
    or_,
    select,
    table,
)
from sqlalchemy.exc import SQLAlchemyError

from catalog.definitions import DatasetDef
from catalog.errors import SourceError, database_reason, shown_column, shown_url
from etl.connections import SourceConnection

BLOCK_SIZE = 16 << 20  # bytes per CSV / JSON block
LAKE_TZ = ZoneInfo("Asia/Shanghai")


class SourceReader(Protocol):
    dataset_id: str
    location: str  # file path or database/table, without credentials
    columns: list[str]

    def batches(self) -> Iterator[pa.RecordBatch]: ...


def open_source(
    dataset: DatasetDef,
    connection: SourceConnection,
    ds: date,
    *,
    window: tuple[str | None, str | None] = (None, None),
    batch_rows: int = 100_000,
) -> SourceReader:
    """The reader for this dataset's delivery on ``ds``; fails early if it is not there."""
    kind = dataset.source.kind
    if kind == "sql":
        reader = ArrowSqlReader if connection.arrow_driver() else SqlReader
        return reader(dataset, connection, window, batch_rows, ds)
    path = delivered_file(dataset, connection, ds)
    if kind == "csv":
        return CsvReader(dataset.id, path, dataset.source.encoding or "utf-8", dataset.field_names)
    if kind == "jsonl":
        return JsonLinesReader(dataset.id, path, dataset.field_names)
    if kind == "excel":
        return ExcelReader(dataset.id, path, dataset.source.sheet or "", batch_rows)
    raise SourceError(f"{dataset.id}: no reader for source kind '{kind}'")


def delivered_file(dataset: DatasetDef, connection: SourceConnection, ds: date) -> Path:
    """A file drop's data file for ``ds``; fails in one line when it is missing or 0 bytes."""
    path = drop_file(connection, dataset.source.path or "", ds)
    if not path.is_file():
        raise SourceError(f"{dataset.id}: no delivery for {ds}: {path} does not exist")
    if path.stat().st_size == 0:
        raise SourceError(f"{dataset.id}: delivery {path} is empty (0 bytes, not even a header)")
    return path


def drop_file(connection: SourceConnection, pattern: str, ds: date) -> Path:
    """The file a drop delivers for ``ds`` (placeholders: ``{ds}``, ``{ds_nodash}``)."""
    name = pattern.format(ds=ds.isoformat(), ds_nodash=ds.strftime("%Y%m%d"))
    return connection.folder() / name


def _as_string_batch(names: list[str], columns: list[pa.Array]) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays([_as_text(c) for c in columns], names=names)


def _as_text(values: pa.Array) -> pa.Array:
    """Typed database values as the text the lake reads everywhere else.

    Timestamps become ``YYYY-MM-DD HH:MM:SS`` (time-zone-aware ones in Asia/Shanghai) and
    dates ``YYYY-MM-DD``, the canonical forms validation expects; other types their
    plain string form.
    """
    kind = values.type
    if pa.types.is_timestamp(kind):
        seconds = pa.timestamp("s", tz="Asia/Shanghai" if kind.tz else None)
        return pc.strftime(values.cast(seconds, safe=False), format="%Y-%m-%d %H:%M:%S")
    if pa.types.is_date(kind):
        return pc.strftime(values, format="%Y-%m-%d")
    return values if kind == pa.string() else values.cast(pa.string())


class _WatermarkWindow:
    """What every SQL reader shares: the window's ends and the newest watermark read.

    Rows whose watermark is NULL are read by every window, first load, rerun or later
    night alike, and counted (``null_watermark_rows``): they are delivered every night
    until the source fixes them (docs/decisions/0009-null-watermarks.md).
    """

    dataset_id: str
    ds: date
    watermark: str | None
    low: str | None
    high: str | None
    _newest: object
    null_watermark_rows: int

    def __init__(
        self,
        dataset: DatasetDef,
        connection: SourceConnection,
        window: tuple[str | None, str | None],
        batch_rows: int,
        ds: date,
    ) -> None:
        self.dataset_id = dataset.id
        self.watermark = dataset.source.watermark_column
        self.low, self.high = window
        self._newest = None  # the largest well-formed watermark value read so far
        self.null_watermark_rows = 0  # rows with no watermark, read by every window
        self.ds = ds  # the partition date: the reference for "a watermark in the future"
        self.table = dataset.source.table or ""
        self.location = f"{shown_url(connection.sqlalchemy_url())}#{self.table}"
        self.batch_rows = batch_rows
        self._open(connection)

    def _open(self, connection: SourceConnection) -> None:
        """Connect and read the table's column names (each reader its own way)."""
        raise NotImplementedError

    def _track(self, values: pa.Array) -> None:
        """Remember the largest watermark value that is well formed and not in the future.

        Typed columns are compared as typed (microseconds and time zone kept); text columns
        only by their ``YYYY-MM-DD HH:MM:SS…`` values, since a stray ``2026/11/29`` sorts
        above every ISO value as text. A value beyond the day after the partition date (the
        night runs early on that day) is a clock or typing error: taken as the mark it would
        stop every later night from reading anything. Judged against the partition date,
        not the machine's clock, so a rerun or backfill of a date keeps the same window.
        """
        self.null_watermark_rows += values.null_count
        if pa.types.is_timestamp(values.type) or pa.types.is_date(values.type):
            values = values.filter(pc.less_equal(values, _day_after_like(self.ds, values.type)))
        else:
            values = values.cast(pa.string())
            ok = pc.fill_null(pc.match_substring_regex(values, ISO_DATETIME), False)
            values = values.filter(ok).filter(
                pc.less_equal(values.filter(ok), _day_after_like(self.ds, pa.string()))
            )
        newest = pc.max(values).as_py() if len(values) else None
        if newest is not None and (self._newest is None or newest > self._newest):
            self._newest = newest

    @property
    def high_watermark(self) -> str | None:
        """The newest watermark read, as text the source compares exactly (ISO, tz kept)."""
        value = self._newest
        if value is None or isinstance(value, str):
            return value
        return value.isoformat(sep=" ") if hasattr(value, "hour") else value.isoformat()


class SqlReader(_WatermarkWindow):
    """The generic path: ``SELECT *`` (incremental: ``WHERE low < <watermark> <= high``)
    streamed server-side through SQLAlchemy and a DB-API cursor, row tuples into Arrow.

    Any database SQLAlchemy reaches; :class:`ArrowSqlReader` replaces it where an ADBC
    driver exists (SQLite, PostgreSQL), since building Python row objects costs ~9 µs a
    row (27 s for public security's 3 million rows against 3 s through ADBC).
    """

    def _open(self, connection: SourceConnection) -> None:
        self.url = connection.sqlalchemy_url()
        self.engine = create_engine(self.url, connect_args=connection.connect_args())
        try:
            with self.engine.connect() as conn:
                result = conn.execute(
                    select(literal_column("*")).select_from(table(self.table)).limit(0)
                )
                self.columns = list(result.keys())
        except SQLAlchemyError as exc:
            self.engine.dispose()
            reason = database_reason(exc)
            raise SourceError(f"{self.dataset_id}: cannot read {self.location}: {reason}") from exc

    def batches(self) -> Iterator[pa.RecordBatch]:
        query = select(literal_column("*")).select_from(table(self.table))
        params, window = {}, []
        if self.low is not None and self.watermark:
            window.append(column(self.watermark) > bindparam("low"))
            params["low"] = self.low
        if self.high is not None and self.watermark:
            window.append(column(self.watermark) <= bindparam("high"))
            params["high"] = self.high
        if window:  # rows with no watermark belong to no window: every night reads them
            query = query.where(or_(and_(*window), column(self.watermark).is_(None)))
        self.null_watermark_rows = 0
        try:
            with self.engine.connect() as conn:
                result = conn.execution_options(
                    stream_results=True, yield_per=self.batch_rows
                ).execute(query, params)
                for rows in result.partitions(self.batch_rows):
                    arrays = [_as_arrow(c) for c in zip(*rows, strict=True)]
                    if self.watermark in self.columns:
                        self._track(arrays[self.columns.index(self.watermark)])
                    yield _as_string_batch(self.columns, arrays)
        except SQLAlchemyError as exc:
            reason = database_reason(exc)
            raise SourceError(f"{self.dataset_id}: cannot read {self.location}: {reason}") from exc
        finally:
            self.engine.dispose()


class ArrowSqlReader(_WatermarkWindow):
    """Reads through an ADBC driver: the database fills Arrow buffers, no Python rows.

    Same query, window and watermark rules as :class:`SqlReader` (a test compares their
    partitions' fingerprints). SQLite values are read as SQLite's own text
    (``CAST(… AS TEXT)``): the ADBC SQLite driver guesses a column's type from the first
    batch and fails when a later batch disagrees (a column NULL for 100,000 rows, then
    text), so one leading row of empty strings fixes every column as text and is dropped.
    For the TEXT columns department systems use, that is exactly what the DB-API path
    delivers; a REAL column would show SQLite's 15-digit form. PostgreSQL columns arrive
    typed (binary COPY) and become text as in the DB-API path. The window's ends are
    written into the statement as quoted literals, so the database compares them against
    the column's own type as it does a bound text parameter.
    """

    def _open(self, connection: SourceConnection) -> None:
        self.connection = connection
        self.sqlite = connection.arrow_driver() == "sqlite"
        self.columns = []
        with self._session() as cursor:
            cursor.execute(f"SELECT * FROM {_quoted_name(self.table)} LIMIT 0")
            self.columns = [d[0] for d in cursor.description]
            cursor.fetch_arrow_table()

    @contextmanager
    def _session(self) -> Iterator:
        """A cursor on a fresh connection; any driver error as one line naming the source."""
        from adbc_driver_manager import Error as AdbcError

        failures = (AdbcError, pa.ArrowException, OSError)
        try:
            conn = self.connection.adbc_connect()
        except (*failures, SourceError) as exc:
            raise SourceError(
                f"{self.dataset_id}: cannot read {self.location}: {database_reason(exc)}"
            ) from exc
        try:
            with conn.cursor() as cursor:
                if self.sqlite:
                    cursor.adbc_statement.set_options(
                        **{"adbc.sqlite.query.batch_rows": str(self.batch_rows)}
                    )
                yield cursor
        except failures as exc:
            raise SourceError(
                f"{self.dataset_id}: cannot read {self.location}: {database_reason(exc)}"
            ) from exc
        finally:
            conn.close()

    def _query(self) -> str:
        names = [_quoted(c) for c in self.columns]
        source = _quoted_name(self.table)
        if self.sqlite:
            typed = ", ".join(f"CAST({n} AS TEXT) AS {n}" for n in names)
            query = f"SELECT 0 AS {_quoted(_SENTINEL)}, {typed} FROM {source}"
        else:
            query = f"SELECT {', '.join(names)} FROM {source}"
        window, mark = [], _quoted(self.watermark or "")
        if self.low is not None and self.watermark:
            window.append(f"{mark} > {_literal(self.low)}")
        if self.high is not None and self.watermark:
            window.append(f"{mark} <= {_literal(self.high)}")
        if window:  # rows with no watermark belong to no window: every night reads them
            query += f" WHERE ({' AND '.join(window)}) OR {mark} IS NULL"
        if self.sqlite:  # the leading all-text row (see the class docstring)
            empty = ", ".join(f"'' AS {n}" for n in names)
            query = f"SELECT 1 AS {_quoted(_SENTINEL)}, {empty} UNION ALL {query}"
        return query

    def batches(self) -> Iterator[pa.RecordBatch]:
        self.null_watermark_rows = 0
        with self._session() as cursor:
            cursor.execute(self._query())
            first = True
            for batch in cursor.fetch_record_batch():
                if self.sqlite:
                    if first and (batch.num_rows == 0 or batch.column(0)[0].as_py() != 1):
                        raise SourceError(f"{self.dataset_id}: {self.location}: rows out of order")
                    batch = batch.slice(1) if first else batch
                    batch = batch.drop_columns([_SENTINEL])
                    batch.validate(full=True)  # SQLite text need not be UTF-8
                first = False
                if batch.num_rows == 0:
                    continue
                arrays = list(batch.columns)
                if self.watermark in self.columns:
                    self._track(arrays[self.columns.index(self.watermark)])
                yield _as_string_batch(self.columns, arrays)


_SENTINEL = "_lake_first_row"  # the leading row's marker column (SQLite)


def _quoted(name: str) -> str:
    """A column name, double-quoted for SQL."""
    return '"' + name.replace('"', '""') + '"'


def _quoted_name(name: str) -> str:
    """A (possibly schema-qualified) table name, double-quoted for SQL."""
    return ".".join(_quoted(part) for part in name.split("."))


def _literal(value: str) -> str:
    """A watermark as a SQL string literal (standard quoting, no backslash escapes)."""
    return "'" + value.replace("'", "''") + "'"


ISO_DATETIME = r"^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}"


def _day_after_like(ds: date, kind: pa.DataType) -> pa.Scalar:
    """The end of the day after ``ds`` in Shanghai, typed like a watermark column."""
    end = datetime.combine(ds + timedelta(days=2), datetime.min.time(), tzinfo=LAKE_TZ)
    if pa.types.is_timestamp(kind):
        if kind.tz is None:
            return pa.scalar(end.replace(tzinfo=None), kind)
        return pa.scalar(end, kind)
    if pa.types.is_date(kind):
        return pa.scalar(end.date(), kind)
    return pa.scalar(end.strftime("%Y-%m-%d %H:%M:%S"))


def _as_arrow(values: tuple) -> pa.Array:
    """A column of database values; a column mixing types (SQLite allows it) becomes text."""
    try:
        return pa.array(values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else str(v) for v in values], pa.string())


# Encodings whose multi-byte characters hold no byte below 0x30 (GB2312, GBK: lead and
# trail bytes ≥ 0x40; GB18030's four-byte forms: 0x30-0x39 in second and fourth place), so
# no byte of a character can be read as a comma, a quote, CR or LF: the CSV parser splits
# the delivered bytes as they are, and only the columns that hold such characters are
# decoded, after the parse (see :func:`_decoded`).
CSV_SAFE_ENCODINGS = frozenset({"gb2312", "gbk", "gb18030"})
REPEATS_SAMPLE = 16_384  # first values of a column looked at to decode it once per value


class CsvReader:
    """A CSV drop in its declared encoding; every column read as a string."""

    def __init__(
        self, dataset_id: str, path: Path, encoding: str, field_names: list[str] | None = None
    ) -> None:
        self.dataset_id, self.path = dataset_id, path
        self.location = str(path)
        self.field_names = field_names or []
        # pyarrow skips a UTF-8 BOM itself and decodes UTF-8 natively (fast path).
        name = codecs.lookup(encoding).name
        self.codec = name
        self.encoding = "utf8" if name in {"utf-8", "utf-8-sig"} else encoding
        self.columns = self._header(encoding)

    def _header(self, encoding: str) -> list[str]:
        with open(self.path, "rb") as f:
            first = f.readline()
        try:
            line = first.decode(encoding).lstrip("\ufeff").rstrip("\r\n")
        except UnicodeDecodeError as exc:
            raise SourceError(
                f"{self.dataset_id}: {self.path} is not {encoding} as declared "
                f"(header byte {exc.start}: {first[exc.start : exc.start + 2]!r})"
            ) from exc
        return [c.strip().strip('"') for c in line.split(",")]

    def batches(self) -> Iterator[pa.RecordBatch]:
        """The delivery's rows; a GBK-family file is parsed as bytes and decoded per column
        (:data:`CSV_SAFE_ENCODINGS`): pyarrow would otherwise decode the whole file through
        Python's codec before parsing it (≈ 70 % of the parse's CPU for a GBK register),
        where most bytes are ASCII digits, dates and codes that need no decoding."""
        by_column = self.codec in CSV_SAFE_ENCODINGS
        kind = pa.binary() if by_column else pa.string()
        reader = pacsv.open_csv(
            self.path,
            read_options=pacsv.ReadOptions(
                use_threads=False,  # row numbers in parse errors; the stream is serial anyway
                encoding="utf8" if by_column else self.encoding,
                block_size=BLOCK_SIZE,
                skip_rows=1,
                column_names=self.columns,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={c: kind for c in self.columns},
                null_values=[""],  # only empty cells are missing; "NULL" or "NA" stay text
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
            ),
        )
        if not by_column:
            yield from reader
            return
        row = 2  # the file's line of the batch's first row (after the header)
        for batch in reader:
            columns = []
            for position, values in enumerate(batch.columns, start=1):
                try:
                    columns.append(_decoded(values, self.codec))
                except _NotDecodable as exc:
                    column = shown_column(self.columns[position - 1], position, self.field_names)
                    raise SourceError(
                        f"{self.dataset_id}: {self.path} row {row + exc.index}, {column}: "
                        f"not {self.codec} as declared"
                    ) from None
            row += batch.num_rows
            yield pa.RecordBatch.from_arrays(columns, names=batch.schema.names)


class _NotDecodable(Exception):
    """A value that is not valid in the declared encoding; ``index``: its row in the batch."""

    def __init__(self, index: int) -> None:
        super().__init__(f"value {index} not decodable")
        self.index = index


def _decoded(values: pa.Array, codec: str) -> pa.Array:
    """Delivered bytes as UTF-8 text, each value exactly as ``bytes.decode(codec)`` gives it.

    A column of ASCII bytes only (IDs, dates, amounts, codes) is the same bytes in UTF-8:
    reinterpreted, not copied. In a column where few values hold other bytes (full-width
    digits in IDs or dates), only those values are decoded and put in place.
    """
    values = _plain_binary(values)
    data = _value_bytes(values)
    high = np.flatnonzero(data >= 0x80)
    if len(high) == 0:
        return values.view(pa.string())
    if len(high) * 4 > len(data):  # text (names, addresses): decode it all
        return _all_decoded(values, codec)
    rows = np.unique(np.searchsorted(_offsets(values), high, side="right") - 1)
    if len(rows) * 4 > len(values):
        return _all_decoded(values, codec)
    try:
        decoded = _all_decoded(values.take(pa.array(rows)), codec)
    except _NotDecodable as exc:
        raise _NotDecodable(int(rows[exc.index])) from None
    mask = np.zeros(len(values), dtype=bool)
    mask[rows] = True
    return pc.replace_with_mask(values.view(pa.string()), pa.array(mask), decoded)


def _all_decoded(values: pa.Array, codec: str) -> pa.Array:
    """Every value decoded: once per distinct value when the first ones repeat (sexes,
    statuses), else in one call of the codec over all of them (:func:`_joined_decoded`)."""
    sample = values.slice(0, REPEATS_SAMPLE)
    if pc.count_distinct(sample).as_py() * 2 <= len(sample):
        encoded = values.dictionary_encode()
        try:
            dictionary = _joined_decoded(encoded.dictionary, codec)
        except _NotDecodable as exc:  # the first row holding that value
            indices = encoded.indices.to_numpy(zero_copy_only=False)
            raise _NotDecodable(int(np.flatnonzero(indices == exc.index)[0])) from None
        return dictionary.take(encoded.indices)
    return _joined_decoded(values, codec)


def _one_decoded(value: bytes | None, index: int, codec: str) -> str | None:
    try:
        return None if value is None else value.decode(codec)
    except UnicodeDecodeError:
        raise _NotDecodable(index) from None


def _plain_binary(values: pa.Array) -> pa.Array:
    """``values`` as a binary array whose buffers start at its first value (offset 0)."""
    if values.offset or values.type != pa.binary():
        return pa.concat_arrays([values.cast(pa.binary())])
    return values


def _offsets(values: pa.Array) -> np.ndarray:
    """The value offsets of a plain binary array (:func:`_plain_binary`)."""
    return np.frombuffer(values.buffers()[1], np.int32, len(values) + 1)


def _value_bytes(values: pa.Array) -> np.ndarray:
    """The bytes of a plain binary array's values, concatenated."""
    offsets = _offsets(values)
    if values.buffers()[2] is None or offsets[-1] == 0:
        return np.zeros(0, np.uint8)
    return np.frombuffer(values.buffers()[2], np.uint8, offsets[-1])


def _joined_decoded(values: pa.Array, codec: str) -> pa.StringArray:
    """Decode every value in one codec call: joined by LF, decoded, encoded as UTF-8, cut at
    the LFs again. Equal to decoding each value: LF is one byte that no character of these
    encodings contains, so the codec starts each value afresh, and a value ending inside a
    character fails as it would alone (its LF is no trail byte). A CSV value holds no LF
    (pyarrow's parser ends the row there); if one ever did, each value is decoded alone."""
    n = len(values)
    if n == 0:
        return pa.array([], pa.string())
    values = _plain_binary(values)
    whole = pa.ListArray.from_arrays(pa.array([0, n], pa.int32()), values.fill_null(b""))
    joined = pc.binary_join(whole, b"\n")[0].as_buffer()
    try:
        text = joined.to_pybytes().decode(codec).encode("utf-8")
    except UnicodeDecodeError as exc:
        before = np.frombuffer(joined, np.uint8, exc.start)
        raise _NotDecodable(int(np.count_nonzero(before == 0x0A))) from None
    out = np.frombuffer(text, np.uint8)
    lf = out == 0x0A
    ends = np.flatnonzero(lf)
    if len(ends) != n - 1:  # a value held a LF after all: one decode per value
        return pa.array([_one_decoded(v, i, codec) for i, v in enumerate(values.to_pylist())])
    new_offsets = np.empty(n + 1, dtype=np.int32)
    new_offsets[0], new_offsets[-1] = 0, len(out) - (n - 1)
    new_offsets[1:-1] = ends + 1 - np.arange(1, n, dtype=np.int32)
    body = out[~lf]
    return pa.StringArray.from_buffers(
        n,
        pa.py_buffer(new_offsets),
        pa.py_buffer(body),
        values.buffers()[0],
        values.null_count,
    )


class JsonLinesReader:
    """A JSON Lines drop. The first record's keys are the delivered columns.

    A record with a key the first one lacks, or a value of another JSON type than the
    first record's, is an error (never silently dropped or coerced); a file of blank lines
    is a delivery with no records.
    """

    def __init__(self, dataset_id: str, path: Path, field_names: list[str]) -> None:
        self.dataset_id, self.path = dataset_id, path
        self.location = str(path)
        first = self._first_record()
        self.empty = first is None
        self.columns = list(first) if first is not None else list(field_names)
        # values are read as the first record types them (text stays text, so IDs keep
        # their leading zeros and X), then turned into text like every other source
        self.schema = pa.schema(
            [pa.field(n, _json_type((first or {}).get(n))) for n in self.columns]
        )

    def _first_record(self) -> dict | None:
        with open(self.path, "rb") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError as exc:
                    raise SourceError(
                        f"{self.dataset_id}: {self.path} line {number} is not JSON: {exc}"
                    ) from exc
                if not isinstance(record, dict):
                    raise SourceError(f"{self.dataset_id}: {self.path} line {number} is no object")
                return record
        return None

    def batches(self) -> Iterator[pa.RecordBatch]:
        if self.empty:
            return
        reader = pajson.open_json(
            self.path,
            read_options=pajson.ReadOptions(block_size=BLOCK_SIZE),
            parse_options=pajson.ParseOptions(
                explicit_schema=self.schema, unexpected_field_behavior="error"
            ),
        )
        for batch in reader:
            yield _as_string_batch(self.columns, [batch.column(c) for c in self.columns])


def _json_type(value: object) -> pa.DataType:
    if isinstance(value, bool):
        return pa.bool_()
    if isinstance(value, int):
        return pa.int64()
    if isinstance(value, float):
        return pa.float64()
    return pa.string()


class ExcelReader:
    """The catalog's data sheet of an .xlsx drop, chosen by name, into bounded batches.

    By name, never by position: clerks put a notes sheet in front of the data.
    python-calamine 0.9 has no streaming reader: opening a sheet loads all its cells into
    calamine's memory (measured: +105 MB RSS for the full-scale 200k-row × 8-column
    taxpayer sheet, 195 MB peak while iterating; linear in cells). ``iter_rows`` then
    hands out one Python row at a time, so the Python objects stay bounded by
    ``batch_rows``. A province-size workbook needs a streaming xlsx reader.
    """

    def __init__(self, dataset_id: str, path: Path, sheet: str, batch_rows: int) -> None:
        from python_calamine import CalamineWorkbook, WorksheetNotFound

        self.dataset_id, self.path, self.batch_rows = dataset_id, path, batch_rows
        self.location = f"{path}#{sheet}"
        try:
            book = CalamineWorkbook.from_path(str(path))
        except Exception as exc:  # calamine raises its own error types for broken files
            raise SourceError(f"{dataset_id}: {path} is not a readable .xlsx: {exc}") from exc
        try:
            self.sheet = book.get_sheet_by_name(sheet)
        except WorksheetNotFound as exc:  # sheet names may be a clerk's notes: count only
            raise SourceError(
                f"{dataset_id}: {path} has no sheet '{sheet}' "
                f"({len(book.sheet_names)} sheet(s) in the workbook)"
            ) from exc
        except Exception as exc:
            raise SourceError(f"{dataset_id}: {path} is not a readable .xlsx: {exc}") from exc
        self.rows = self.sheet.iter_rows()
        header = next(self.rows, None)
        if header is None:
            raise SourceError(f"{dataset_id}: {path} has no header row")
        names = [str(c).strip() if c is not None else "" for c in header]
        while names and not names[-1]:  # calamine pads rows to the sheet's widest row
            names.pop()
        self.columns = names

    def batches(self) -> Iterator[pa.RecordBatch]:
        number = 2  # the sheet row of the chunk's first row (the header is row 1)
        while chunk := list(itertools.islice(self.rows, self.batch_rows)):
            batch = self._batch(chunk, number)
            number += len(chunk)
            if batch.num_rows:
                yield batch

    def _batch(self, chunk: list[list], number: int) -> pa.RecordBatch:
        """A chunk of sheet rows as text columns, column by column (no Python per cell
        for a column of text, the common case): blank lines dropped, as CSV and JSON Lines
        skip them; a value beyond the header's columns is an error naming its row."""
        width = len(self.columns)
        cells = [_sheet_text(column) for column in itertools.zip_longest(*chunk)]
        cells += [pa.nulls(len(chunk), pa.string())] * (width - len(cells))
        filled = [pc.is_valid(column) for column in cells]
        beyond = _any(filled[width:], len(chunk))
        if pc.any(beyond).as_py():
            row = number + pc.index(beyond, True).as_py()
            raise SourceError(
                f"{self.dataset_id}: {self.path} row {row} has values beyond the "
                f"{width} header columns"
            )
        batch = pa.RecordBatch.from_arrays(cells[:width], names=self.columns)
        return batch.filter(_any(filled[:width], len(chunk)))


def _any(masks: list[pa.Array], rows: int) -> pa.Array:
    """Row by row: is any of ``masks`` true (all false when there are none)."""
    found = pa.array(np.zeros(rows, dtype=bool)) if not masks else masks[0]
    for mask in masks[1:]:
        found = pc.or_(found, mask)
    return found


def _sheet_text(values: tuple) -> pa.Array:
    """One column of sheet cells as text, empty cells as nulls (:func:`_cell`). A column of
    text and empty cells, what the departments' sheets hold, converts in one Arrow call;
    one that holds typed cells (numbers, dates) goes cell by cell."""
    try:
        text = pa.array(values, pa.string())
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        return pa.array([_cell(v) for v in values], pa.string())
    return pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)


def _cell(value: object) -> str | None:
    """Excel cells come back typed; the raw zone keeps text, empty cells become nulls."""
    if value is None or value == "":
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
