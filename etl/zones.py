"""The one home for the lake's zones: names, paths, metadata columns, schemas and I/O.

Zones (docs/architecture.md §5): ``raw/sources`` (as delivered), ``raw/clean``,
``raw/quarantine`` and ``raw/unified`` (platform team only), ``shared/<consumer>`` (masked
extracts per grant) and ``public`` (open data). Every step builds its paths and schemas here,
never in another step.

The raw zones are Apache Iceberg tables (pyiceberg, decision 0010): one table per zone and
dataset at ``<root>/raw/<zone>/<dept>/<dataset>/`` (data files under ``dt=<date>/``, Iceberg
metadata under ``metadata/``), partitioned by ``dt``, registered in a ``SqlCatalog`` in the
catalog store's database. Writing a date's partition is one Iceberg commit per table (the
date's old files out, the new ones in); the snapshot ids of everything a step wrote are then
recorded in the store in one transaction (:meth:`CatalogStore.record_snapshots`), and that
row is the commit point: every reader here reads the snapshot the store names, so it sees
the old night or the new one, never a mix, whatever happened to a writer in between. A
second writer of the same date gets a one-line :class:`PartitionError` and removes nothing.

The consumer zones (``shared/``, ``public/``) stay plain folders: a partition is written
under a temporary prefix with its manifest last, then moved into place.

Steps see one facade, :class:`Lake`: partition "paths" (``<root>/<zone>/<parts…>/dt=<ds>``)
name partitions in every zone, and ``stage_partition``/``commit``/``read_manifest``/
``partition_batches`` work the same whatever is behind them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from catalog.definitions import DatasetDef, FieldDef
from catalog.errors import PartitionError, one_line
from catalog.files import OWNER_DIR_MODE
from catalog.store import CatalogStore, LakeSnapshot, SnapshotRecord, tune_sqlite

if TYPE_CHECKING:  # pyiceberg is imported when a raw table is first touched
    from pyiceberg.catalog.sql import SqlCatalog
    from pyiceberg.table import Table

RAW_SOURCES = "raw/sources"
RAW_CLEAN = "raw/clean"
RAW_QUARANTINE = "raw/quarantine"
RAW_UNIFIED = "raw/unified"
SHARED = "shared"
PUBLIC = "public"
RAW_ZONES = (RAW_SOURCES, RAW_CLEAN, RAW_QUARANTINE, RAW_UNIFIED)

METADATA_FIELDS = [  # added at extraction, carried through every raw zone
    pa.field("_source", pa.string()),
    pa.field("_batch_id", pa.string()),
    pa.field("_extracted_at", pa.timestamp("us", tz="UTC")),
    pa.field("_row_number", pa.int64()),
]
QUARANTINE_FIELDS = [pa.field("_rules", pa.string()), pa.field("_reason", pa.string())]
NORMALISED_SUFFIX = "_norm"  # the matching form of an enterprise name, beside the name
READ_BATCH_ROWS = 250_000

_CLEAN_TYPES = {
    "string": pa.string(),
    "date": pa.date32(),
    "datetime": pa.timestamp("us"),  # Iceberg timestamps are microseconds
    "integer": pa.int64(),
    "decimal": pa.decimal128(18, 2),
}

MANIFEST = "_manifest.json"  # consumer zones' folders (and the old raw layout)
PARTITION_COLUMN = "dt"  # the Iceberg partition column of every raw table (identity)
SNAPSHOT_PROPERTY = "yimen."  # prefix of the lake's own snapshot summary properties
ORPHAN_SAFETY_AGE = timedelta(hours=6)  # a running writer's files are younger than this
DEFAULT_RETENTION_NIGHTS = 14
REBUILD_HINT = (
    "rebuild it: `lake demo` starts a fresh demo lake, or move var/lake and the catalog "
    "database aside and run `lake simulate` + `lake run`"
)
DELIVERY_CSV = "data.csv"
ROWS_PER_FILE = 2_000_000
ROWS_PER_ROW_GROUP = 250_000  # large row groups: fewer, bigger column chunks read faster
RAW_DIR_MODE, RAW_FILE_MODE = 0o750, 0o640  # raw zone is for the platform team only


@dataclass(frozen=True)
class Manifest:
    """What a committed partition holds: rows, fingerprint, and what the step said about it.

    For a raw partition it is read from the store's commit point (the Iceberg snapshot the
    store names); for a consumer-zone folder from its ``_manifest.json``.
    """

    path: str
    rows: int
    files: list[str]
    fingerprint: str
    written_at: str
    extra: dict = field(default_factory=dict)
    snapshot_id: int | None = None
    previous_snapshot_id: int | None = None  # what the last rerun of this date replaced


@dataclass(frozen=True)
class PartitionRef:
    """A partition path, parsed: ``<root>/<zone>/<parts…>/dt=<ds>``."""

    zone: str
    parts: tuple[str, ...]
    ds: date

    @property
    def is_raw(self) -> bool:
        return self.zone in RAW_ZONES

    @property
    def table(self) -> str:
        """The store's name of the table: ``<dept>/<dataset>`` (``person`` in unified)."""
        return "/".join(self.parts)

    @property
    def identifier(self) -> tuple[str, ...]:
        """The Iceberg identifier: ``raw_clean.<dept>.<dataset>``."""
        return (self.zone.replace("/", "_"), *self.parts)


@dataclass(frozen=True)
class StagedPartition:
    """A fully written partition waiting for :meth:`Lake.commit` (not visible to readers).

    Raw zones: data files written into the Iceberg table's ``dt=`` folder but not yet in
    any snapshot. Consumer zones: a temporary folder beside the final path (``tmp``).
    """

    tmp: str | None
    manifest: Manifest | None
    ref: PartitionRef | None = None
    table: Table | None = None
    data_files: tuple = ()
    columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class MaintenanceReport:
    """What ``lake maintain`` did to one table."""

    table: str
    snapshots_expired: int
    snapshots_kept: int
    orphans_removed: int
    bytes_removed: int


class Lake:
    """The lake root and its zones: the one facade steps write and read partitions through.

    ``catalog_url`` is the catalog store's database: the raw zones' Iceberg catalog and their
    commit points live there. ``storage`` holds FileIO properties for object storage
    (``s3.endpoint``, ``s3.region`` …) read from the environment at the edge, never YAML.
    """

    def __init__(
        self, root: str, catalog_url: str, *, storage: dict[str, str] | None = None
    ) -> None:
        self.storage = dict(storage or {})
        if "://" in root:
            self.fs, base = _object_store(root, self.storage)
            self.uri = root.rstrip("/")
        else:
            self.fs, base = pafs.LocalFileSystem(), os.path.abspath(root)
            self.uri = "file://" + base
        self.root = base.rstrip("/")
        self.is_local = isinstance(self.fs, pafs.LocalFileSystem)
        self.catalog_url = catalog_url
        self.store = CatalogStore(catalog_url)

    @cached_property
    def iceberg(self) -> SqlCatalog:
        """pyiceberg's SQL catalog in the store's database (tables ``iceberg_tables`` …)."""
        from pyiceberg.catalog.sql import SqlCatalog
        from sqlalchemy.exc import DBAPIError

        def connect() -> SqlCatalog:
            return SqlCatalog("yimen", uri=self.catalog_url, warehouse=self.uri, **self.storage)

        try:
            catalog = connect()
        except DBAPIError as exc:  # another task created the catalog's tables just now
            if "already exists" not in str(exc) and "duplicate key" not in str(exc):
                raise
            catalog = connect()
        tune_sqlite(catalog.engine)
        return catalog

    # -- paths ---------------------------------------------------------------------------

    def partition_path(self, zone: str, *parts: str, ds: date) -> str:
        return "/".join([self.root, zone, *parts, f"dt={ds.isoformat()}"])

    def dataset_partition(self, zone: str, dataset: DatasetDef, ds: date) -> str:
        """``<zone>/<dept>/<dataset>/dt=<ds>`` of a raw zone (sources, clean, quarantine)."""
        return self.partition_path(zone, dataset.department, dataset.code, ds=ds)

    def unified_partition(self, table: str, ds: date) -> str:
        """``raw/unified/<table>/dt=<ds>`` (person, enterprise, their crosswalks …)."""
        return self.partition_path(RAW_UNIFIED, table, ds=ds)

    def shared_partition(self, consumer: str, dataset: DatasetDef, ds: date) -> str:
        """``shared/<consumer>/<dataset id>/dt=<ds>``: one consumer department's extract."""
        return self.partition_path(SHARED, consumer, dataset.id, ds=ds)

    def public_partition(self, name: str, ds: date) -> str:
        """``public/<name>/dt=<ds>``: open microdata or a statistics table."""
        return self.partition_path(PUBLIC, name, ds=ds)

    def ref(self, path: str) -> PartitionRef:
        """Parse a partition path built by this lake back into zone, parts and date."""
        inner = path[len(self.root) + 1 :] if path.startswith(self.root + "/") else None
        if inner:
            *rest, last = inner.split("/")
            zone = next((z for z in (*RAW_ZONES, SHARED, PUBLIC) if inner.startswith(z + "/")), "")
            parts = tuple(rest[len(zone.split("/")) :]) if zone else ()
            if zone and parts and last.startswith("dt="):
                try:
                    return PartitionRef(zone, parts, date.fromisoformat(last[3:]))
                except ValueError:
                    pass
        raise PartitionError(f"{path} is not a partition path of the lake at {self.root}")

    def table_location(self, ref: PartitionRef) -> str:
        """Where a raw table lives: today's visible ``<zone>/<dept>/<dataset>/`` folder."""
        return "/".join([self.uri, ref.zone, *ref.parts])

    # -- reading -------------------------------------------------------------------------

    def read_manifest(self, path: str) -> Manifest | None:
        """The committed partition's facts, or None when none was committed (here)."""
        if not path.startswith(self.root + "/"):
            return None  # recorded for another lake root: nothing of it is committed here
        ref = self.ref(path)
        if not ref.is_raw:
            return _read_folder_manifest(self.fs, path)
        record = self.store.snapshot(ref.zone, ref.table, ref.ds)
        if record is None:
            self._refuse_old_layout(path)
            return None
        return _manifest_of(path, record)

    def read_partition(self, path: str) -> pa.Table:
        """Read a committed partition (the snapshot the store names, only its date)."""
        ref = self.ref(path)
        if not ref.is_raw:
            return _read_folder_partition(self.fs, path)
        record = self._committed(path, ref)
        tables = list(self._scan(ref, record))
        return pa.concat_tables(tables) if tables else self._empty(ref, record)

    def partition_batches(
        self, path: str, batch_rows: int = READ_BATCH_ROWS, columns: list[str] | None = None
    ) -> Iterator[pa.Table]:
        """Stream a committed partition in bounded batches (only ``columns``, if given)."""
        ref = self.ref(path)
        if not ref.is_raw:
            yield from _folder_batches(self.fs, path, batch_rows, columns)
            return
        record = self._committed(path, ref)
        yield from _rebatch_tables(self._scan(ref, record, columns=columns), batch_rows)

    def local_files(self, path: str) -> list[str] | None:
        """The local Parquet files of a committed raw partition, for engines that read them
        directly (DuckDB); None when they are not plain local files written by the lake."""
        ref = self.ref(path)
        if not ref.is_raw or not self.is_local:
            return None
        record = self._committed(path, ref)
        if record.snapshot_id is None or record.rows == 0:
            return []
        table = self.iceberg.load_table(ref.identifier)
        from pyiceberg.expressions import EqualTo

        scan = table.scan(
            row_filter=EqualTo(PARTITION_COLUMN, ref.ds.isoformat()),
            snapshot_id=record.snapshot_id,
        )
        tasks = list(scan.plan_files())
        if not all(_holds_columns(table.io, t, list(record.columns)) for t in tasks):
            return None
        return [_local(t.file.file_path) for t in tasks]

    def partition_columns(self, path: str) -> list[str]:
        """The column names a committed partition holds (its delivery's), without its rows."""
        ref = self.ref(path)
        if not ref.is_raw:
            manifest = _read_folder_manifest(self.fs, path)
            if manifest is None or not manifest.files:
                return []
            with self.fs.open_input_file(f"{path}/{manifest.files[0]}") as handle:
                return pq.read_schema(handle).names
        record = self.store.snapshot(ref.zone, ref.table, ref.ds)
        return list(record.columns) if record is not None else []

    def read_snapshot(self, path: str, snapshot_id: int | None) -> pa.Table:
        """A raw partition as a given (earlier) snapshot held it: time travel for reruns."""
        ref = self.ref(path)
        record = self._committed(path, ref)
        if snapshot_id is None:
            return self._empty(ref, record)
        tables = list(self._scan(ref, record, snapshot_id))
        return pa.concat_tables(tables) if tables else self._empty(ref, record)

    def _committed(self, path: str, ref: PartitionRef) -> LakeSnapshot:
        record = self.store.snapshot(ref.zone, ref.table, ref.ds)
        if record is None:
            self._refuse_old_layout(path)
            raise PartitionError(f"partition {path} was never committed: it is missing")
        return record

    def _scan(
        self,
        ref: PartitionRef,
        record: LakeSnapshot,
        snapshot_id: int | None = None,
        columns: list[str] | None = None,
    ) -> Iterator[pa.Table]:
        from pyiceberg.exceptions import NoSuchTableError
        from pyiceberg.expressions import EqualTo

        snapshot_id = snapshot_id or record.snapshot_id
        if snapshot_id is None or (record.rows == 0 and snapshot_id == record.snapshot_id):
            return
        try:
            table = self.iceberg.load_table(ref.identifier)
        except NoSuchTableError as exc:
            raise PartitionError(f"{'.'.join(ref.identifier)}: {REBUILD_HINT}") from exc
        if table.snapshot_by_id(snapshot_id) is None:
            raise PartitionError(
                f"{'.'.join(ref.identifier)} {ref.ds}: snapshot {snapshot_id} has expired"
            )
        wanted = [c for c in record.columns if columns is None or c in columns]
        scan = table.scan(
            row_filter=EqualTo(PARTITION_COLUMN, ref.ds.isoformat()),
            selected_fields=tuple(wanted),
            snapshot_id=snapshot_id,
        )
        tasks = list(scan.plan_files())  # the date's files in that snapshot (partition-pruned)
        if all(_holds_columns(table.io, t, wanted) for t in tasks):
            # the lake's own files: one write, the record's columns by name, no row deletes;
            # read them as written (plain strings, no row filter needed): ~1.5x faster
            for task in tasks:
                with table.io.new_input(task.file.file_path).open() as handle:
                    parquet = pq.ParquetFile(handle)
                    for batch in parquet.iter_batches(READ_BATCH_ROWS, columns=wanted):
                        yield pa.Table.from_batches([batch])
            return
        for batch in scan.to_arrow_batch_reader():  # anything else: pyiceberg resolves it
            yield _narrow(pa.Table.from_batches([batch]))

    def _empty(self, ref: PartitionRef, record: LakeSnapshot) -> pa.Table:
        """A zero-row table with the partition's columns (types from the Iceberg schema)."""
        from pyiceberg.io.pyarrow import schema_to_pyarrow

        table = self.iceberg.load_table(ref.identifier)
        full = _narrow_schema(schema_to_pyarrow(table.schema(), include_field_ids=False))
        return pa.schema([full.field(c) for c in record.columns]).empty_table()

    def _refuse_old_layout(self, path: str) -> None:
        """A raw partition folder with a manifest is the pre-Iceberg layout: never read it."""
        if _exists(self.fs, f"{path}/{MANIFEST}"):
            raise PartitionError(
                f"{self.root} holds the old folder layout ({path}); {REBUILD_HINT}"
            )

    # -- writing -------------------------------------------------------------------------

    def write_partition(
        self,
        path: str,
        batches: Iterable[pa.RecordBatch],
        schema: pa.Schema,
        *,
        private: bool = False,
        extra: dict | Callable[[], dict] | None = None,
        run_id: str = "",
    ) -> Manifest:
        """Write ``batches`` as the partition at ``path``; atomically replace what was there.

        ``extra`` goes into the manifest (e.g. the watermark window or row arithmetic); a
        callable is asked for it after the batches are written, so it can report on them.
        ``private`` makes files readable by the owner and group only (raw zone).
        """
        staged = self.stage_partition(path, batches, schema, private=private, extra=extra)
        self.commit([staged], run_id=run_id)
        return staged.manifest

    def stage_partition(
        self,
        path: str,
        batches: Iterable[pa.RecordBatch],
        schema: pa.Schema,
        *,
        private: bool = False,
        extra: dict | Callable[[], dict] | None = None,
    ) -> StagedPartition:
        """Write a complete partition's data files, not yet visible to any reader.

        Several staged partitions are then committed together, so a step that writes a pair
        (clean + quarantine) replaces both or neither if anything fails before the commit.
        """
        ref = self.ref(path)
        if not ref.is_raw:
            return _stage_folder(self, path, batches, schema, private, extra)
        schema = _iceberg_ready(schema)
        if private and self.is_local:  # others cannot reach the files while they are written
            _close_folder(_local(self.table_location(ref)), self.root)
        table = self._table(ref, schema, private)
        written: list[str] = []
        try:
            rows = self._write_data_files(table, ref, schema, batches, written)
            data_files = tuple(_data_file(table, p) for p in written)
            manifest = Manifest(
                path=path,
                rows=rows,
                files=[p.rsplit("/", 1)[-1] for p in written],
                fingerprint=_fingerprint(table.io, written),
                written_at=datetime.now(UTC).isoformat(timespec="seconds"),
                extra=(extra() if callable(extra) else extra) or {},
            )
            if private and self.is_local:
                _restrict_write(_local(self.table_location(ref)), ref.ds, self.root)
        except BaseException:
            _delete_files(table.io, written)
            raise
        return StagedPartition(None, manifest, ref, table, data_files, tuple(schema.names))

    def commit(self, staged: list[StagedPartition], *, run_id: str = "") -> None:
        """Make staged partitions live: one Iceberg commit per table, then one store record.

        The store record is the commit point. A writer killed between the Iceberg commits
        and the record leaves snapshots no reader follows (the next write of the date
        replaces them, maintenance expires them).
        """
        records = []
        try:
            for one in staged:
                if one.ref is None:
                    continue
                snapshot_id = self._commit_iceberg(one, run_id)
                m = one.manifest
                records.append(
                    SnapshotRecord(
                        zone=one.ref.zone,
                        table=one.ref.table,
                        ds=one.ref.ds,
                        snapshot_id=snapshot_id,
                        run_id=run_id,
                        rows=m.rows,
                        fingerprint=m.fingerprint,
                        columns=list(one.columns),
                        extra=m.extra,
                    )
                )
        except BaseException:
            self.discard([s for s in staged if s.ref is not None and s.table is not None])
            raise
        if records:
            self.store.record_snapshots(records)
        for one in staged:
            if one.ref is None:
                _swap_into_place(self.fs, one.tmp, one.manifest.path)

    def discard(self, staged: list[StagedPartition]) -> None:
        """Remove staged partitions that will not be committed (their own files only)."""
        for one in staged:
            if one.ref is not None and one.table is not None:
                mine = [f.file_path for f in one.data_files]
                committed = _referenced_by_current(one.table, mine)
                _delete_files(one.table.io, [p for p in mine if p not in committed])
            elif one.tmp and _exists(self.fs, one.tmp):
                self.fs.delete_dir(one.tmp)

    def _table(self, ref: PartitionRef, schema: pa.Schema, private: bool) -> Table:
        """Load the zone's table for ``ref``, creating it or adding new columns as needed.

        Schema drift in a delivery (an added column) is a schema evolution by name: the
        table gets the column, older dates read it as null, and each date's record lists
        the columns its delivery had, so a later reader sees exactly those.
        """
        from pyiceberg.exceptions import (
            CommitFailedException,
            NamespaceAlreadyExistsError,
            NoSuchTableError,
            TableAlreadyExistsError,
        )

        wanted = _with_docs(schema).append(pa.field(PARTITION_COLUMN, pa.date32()))
        for _attempt in range(5):
            try:
                table = self.iceberg.load_table(ref.identifier)
            except NoSuchTableError:
                table = None
            if table is None:
                location = self.table_location(ref)
                if self._holds_files(location):
                    raise PartitionError(
                        f"{location} holds files but no Iceberg table (the old folder layout?); "
                        f"{REBUILD_HINT}"
                    ) from None
                try:
                    self.iceberg.create_namespace_if_not_exists(ref.identifier[:-1])
                    fresh = _iceberg_schema(wanted)
                    created = self.iceberg.create_table(
                        ref.identifier,
                        schema=fresh,
                        location=location,
                        partition_spec=_dt_spec(fresh),
                        properties=_table_properties(location),
                    )
                    if self.is_local:  # written under the task's umask, before any commit
                        _restrict_tree(f"{_local(location)}/metadata", self.root)
                    return created
                except (TableAlreadyExistsError, NamespaceAlreadyExistsError):
                    continue  # another writer created it first: load theirs
            have = set(table.schema().column_names)
            missing = [n for n in wanted.names if n not in have]
            if not missing:
                return table
            try:
                with table.update_schema() as update:
                    update.union_by_name(wanted)
                return self.iceberg.load_table(ref.identifier)
            except CommitFailedException:
                continue  # a concurrent schema change: load and look again
            except ValueError as exc:
                raise PartitionError(
                    f"{'.'.join(ref.identifier)}: the new columns do not fit the table "
                    f"({one_line(exc)})"
                ) from exc
        raise PartitionError(f"{'.'.join(ref.identifier)}: could not settle the table schema")

    def _holds_files(self, location: str) -> bool:
        path = _local(location) if self.is_local else location.split("://", 1)[1]
        info = self.fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            return False
        return bool(self.fs.get_file_info(pafs.FileSelector(path, allow_not_found=True)))

    def _write_data_files(
        self,
        table: Table,
        ref: PartitionRef,
        schema: pa.Schema,
        batches: Iterable[pa.RecordBatch],
        written: list[str],
    ) -> int:
        """Stream batches into zstd Parquet files carrying Iceberg field ids (bounded memory)."""
        iceberg_schema = table.schema()
        file_schema = pa.schema(
            [
                f.with_metadata(
                    {"PARQUET:field_id": str(iceberg_schema.find_field(f.name).field_id)}
                )
                for f in schema.append(pa.field(PARTITION_COLUMN, pa.date32()))
            ]
        )
        folder = f"{self.table_location(ref)}/{PARTITION_COLUMN}={ref.ds.isoformat()}"
        write_id = uuid.uuid4().hex[:16]
        day = pa.scalar(ref.ds, pa.date32())
        rows_in_file, total = 0, 0
        writer: pq.ParquetWriter | None = None
        stream = None
        try:
            for batch in _rebatch(batches, ROWS_PER_ROW_GROUP):
                if writer is None or rows_in_file >= ROWS_PER_FILE:
                    if writer is not None:
                        writer.close()
                        stream.close()
                    written.append(f"{folder}/{write_id}-{len(written):05d}.parquet")
                    stream = table.io.new_output(written[-1]).create(overwrite=False)
                    writer = pq.ParquetWriter(
                        stream,
                        file_schema,
                        compression="zstd",
                        use_dictionary=[*_repeating_columns(batch), PARTITION_COLUMN],
                        write_statistics=[PARTITION_COLUMN],  # see _data_file
                    )
                    rows_in_file = 0
                batch = batch.cast(schema) if batch.schema != schema else batch
                columns = [*batch.columns, pa.repeat(day, batch.num_rows)]
                writer.write_batch(
                    pa.RecordBatch.from_arrays(columns, schema=file_schema),
                    row_group_size=ROWS_PER_ROW_GROUP,
                )
                rows_in_file += batch.num_rows
                total += batch.num_rows
        finally:
            if writer is not None:
                writer.close()
                stream.close()
        return total

    def _commit_iceberg(self, one: StagedPartition, run_id: str) -> int | None:
        """Replace the date's files in one Iceberg transaction; a rival writer → PartitionError."""
        from pyiceberg.exceptions import CommitFailedException, ValidationException
        from pyiceberg.expressions import EqualTo

        ref, m, table = one.ref, one.manifest, one.table
        write_id = uuid.uuid4().hex
        properties = {
            f"{SNAPSHOT_PROPERTY}dt": ref.ds.isoformat(),
            f"{SNAPSHOT_PROPERTY}rows": str(m.rows),
            f"{SNAPSHOT_PROPERTY}fingerprint": m.fingerprint,
            f"{SNAPSHOT_PROPERTY}run-id": run_id,
            f"{SNAPSHOT_PROPERTY}write-id": write_id,
            f"{SNAPSHOT_PROPERTY}extra": json.dumps(m.extra, ensure_ascii=False, default=str),
        }
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "delete did not match any records": a new date
                with table.transaction() as tx:
                    tx.delete(EqualTo(PARTITION_COLUMN, ref.ds.isoformat()), properties)
                    if one.data_files:
                        with tx.update_snapshot(
                            snapshot_properties=properties
                        ).fast_append() as add:
                            for data_file in one.data_files:
                                add.append_data_file(data_file)
        except (ValidationException, CommitFailedException) as exc:
            raise PartitionError(
                f"{'.'.join(ref.identifier)} {ref.ds}: another writer committed this date while "
                "this one was writing; its work is kept and this write is abandoned "
                "(rerun once it has finished)"
            ) from exc
        if self.is_local:
            _restrict_write(_local(self.table_location(ref)), ref.ds, self.root)
        for snapshot in reversed(table.metadata.snapshots):
            if (
                snapshot.summary
                and snapshot.summary.get(f"{SNAPSHOT_PROPERTY}write-id") == write_id
            ):
                return snapshot.snapshot_id
        current = table.current_snapshot()
        return current.snapshot_id if current is not None else None

    # -- maintenance ---------------------------------------------------------------------

    def raw_tables(self) -> list[tuple[str, ...]]:
        """Identifiers of every raw table in the Iceberg catalog."""
        found: list[tuple[str, ...]] = []

        def walk(namespace: tuple[str, ...]) -> None:
            found.extend(tuple(t) for t in self.iceberg.list_tables(namespace))
            for child in self.iceberg.list_namespaces(namespace):
                walk(tuple(child))

        for zone in RAW_ZONES:
            top = (zone.replace("/", "_"),)
            if top in [tuple(n) for n in self.iceberg.list_namespaces()]:
                walk(top)
        return sorted(found)

    def committed_table(self, identifier: tuple[str, ...]) -> pa.Table:
        """Every committed date of one raw table (as the store names them), with ``dt``.

        What ``lake sql`` shows people: nights a writer died in the middle of are absent.
        """
        zone = identifier[0].replace("_", "/", 1)
        pieces = []
        for record in self.store.snapshots(zone=zone, table="/".join(identifier[1:])):
            path = self.partition_path(zone, *identifier[1:], ds=record.ds)
            table = self.read_partition(path)
            pieces.append(
                table.append_column(
                    PARTITION_COLUMN, pa.repeat(pa.scalar(record.ds, pa.date32()), table.num_rows)
                )
            )
        return pa.concat_tables(pieces, promote_options="default") if pieces else pa.table({})

    def maintain(
        self,
        retention: Callable[[tuple[str, ...]], int] | None = None,
        *,
        now: datetime | None = None,
        orphan_age: timedelta = ORPHAN_SAFETY_AGE,
    ) -> list[MaintenanceReport]:
        """Expire old snapshots and remove orphan files of every raw table.

        A snapshot is expired when it is older than the table's retention (nights) and no
        store record names it as a date's committed snapshot (previous snapshots of reruns
        are named too while they are within retention). Files under the table location that
        no kept snapshot or metadata version references, and older than ``orphan_age`` (so a
        running writer's staged files are safe), are deleted: killed writes leave those.
        """
        now = now or datetime.now(UTC)
        reports = []
        for identifier in self.raw_tables():
            nights = (retention or (lambda _i: DEFAULT_RETENTION_NIGHTS))(identifier)
            reports.append(self._maintain_table(identifier, nights, now, orphan_age))
        return reports

    def _maintain_table(
        self, identifier: tuple[str, ...], nights: int, now: datetime, orphan_age: timedelta
    ) -> MaintenanceReport:
        table = self.iceberg.load_table(identifier)
        zone = identifier[0].replace("_", "/", 1)
        records = self.store.snapshots(zone=zone, table="/".join(identifier[1:]))
        cutoff_ms = int((now - timedelta(days=nights)).timestamp() * 1000)
        named = {r.snapshot_id for r in records}
        named |= {
            r.previous_snapshot_id
            for r in records
            if r.committed_at.replace(tzinfo=r.committed_at.tzinfo or UTC).timestamp() * 1000
            >= cutoff_ms
        }
        current = table.current_snapshot()
        keep = named | ({current.snapshot_id} if current else set())
        expire = [
            s.snapshot_id
            for s in table.metadata.snapshots
            if s.timestamp_ms < cutoff_ms and s.snapshot_id not in keep
        ]
        if expire:
            table.maintenance.expire_snapshots().by_ids(expire).commit()
            table = self.iceberg.load_table(identifier)
        removed, size = self._remove_orphans(table, now, orphan_age)
        return MaintenanceReport(
            ".".join(identifier), len(expire), len(table.metadata.snapshots), removed, size
        )

    def _remove_orphans(
        self, table: Table, now: datetime, orphan_age: timedelta
    ) -> tuple[int, int]:
        live = _live_files(table)
        location = table.location()
        base = _local(location) if self.is_local else location.split("://", 1)[1]
        selector = pafs.FileSelector(base, recursive=True, allow_not_found=True)
        oldest = now - orphan_age
        removed, size = 0, 0
        for info in self.fs.get_file_info(selector):
            if info.type != pafs.FileType.File:
                continue
            uri = (
                ("file://" + info.path)
                if self.is_local
                else f"{self.uri.split('://')[0]}://{info.path}"
            )
            if uri in live or info.path in live:
                continue
            if (
                info.mtime is not None
                and info.mtime.replace(tzinfo=info.mtime.tzinfo or UTC) > oldest
            ):
                continue
            self.fs.delete_file(info.path)
            removed, size = removed + 1, size + (info.size or 0)
        return removed, size


def catalog_retention(datasets: Iterable[DatasetDef]) -> Callable[[tuple[str, ...]], int]:
    """Each raw table's retention in nights, from its dataset's catalog entry (default 14)."""
    nights = {(d.department, d.code): d.retention_nights for d in datasets}
    return lambda identifier: nights.get(tuple(identifier[1:3]), DEFAULT_RETENTION_NIGHTS)


def _live_files(table: Table) -> set[str]:
    """Every file a kept snapshot or metadata version of ``table`` refers to."""
    metadata = table.metadata
    live = {table.metadata_location, *(entry.metadata_file for entry in metadata.metadata_log)}
    for snapshot in metadata.snapshots:
        live.add(snapshot.manifest_list)
        for manifest in snapshot.manifests(table.io):
            if manifest.manifest_path in live:  # manifests are shared by later snapshots
                continue
            live.add(manifest.manifest_path)
            # a "deleted" entry is a file an expired snapshot held: not needed any more
            for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
                live.add(entry.data_file.file_path)
    return live | {p.removeprefix("file://") for p in live}


def _referenced_by_current(table: Table, paths: list[str]) -> set[str]:
    """Which of ``paths`` the table's current snapshot holds (after a late commit failure)."""
    try:
        current = table.refresh().current_snapshot()
    except Exception:  # noqa: BLE001 - cleaning up after a failure: keep everything then
        return set(paths)
    if current is None:
        return set()
    wanted, found = set(paths), set()
    for manifest in current.manifests(table.io):
        for entry in manifest.fetch_manifest_entry(table.io):
            if entry.data_file.file_path in wanted:
                found.add(entry.data_file.file_path)
    return found


def _holds_columns(io, task, columns: list[str]) -> bool:  # noqa: ANN001 - pyiceberg types
    """A planned file the lake wrote itself: every wanted column by name, no deletes."""
    if task.delete_files:
        return False
    with io.new_input(task.file.file_path).open() as handle:
        names = set(pq.ParquetFile(handle).schema_arrow.names)
    return all(c in names for c in columns)


def _manifest_of(path: str, record: LakeSnapshot) -> Manifest:
    return Manifest(
        path=path,
        rows=record.rows,
        files=[],
        fingerprint=record.fingerprint,
        written_at=record.committed_at.isoformat(timespec="seconds"),
        extra=record.extra or {},
        snapshot_id=record.snapshot_id,
        previous_snapshot_id=record.previous_snapshot_id,
    )


def _object_store(root: str, storage: dict[str, str]) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem of an object-store root, configured like pyiceberg's FileIO."""
    scheme, rest = root.split("://", 1)
    if scheme in ("s3", "s3a") and storage:
        endpoint = storage.get("s3.endpoint")
        fs = pafs.S3FileSystem(
            endpoint_override=endpoint.split("://", 1)[-1] if endpoint else None,
            scheme=endpoint.split("://", 1)[0] if endpoint and "://" in endpoint else "https",
            region=storage.get("s3.region"),
            access_key=storage.get("s3.access-key-id"),
            secret_key=storage.get("s3.secret-access-key"),
        )
        return fs, rest
    return pafs.FileSystem.from_uri(root)


def _iceberg_ready(schema: pa.Schema) -> pa.Schema:
    """Arrow types Iceberg stores as they are: timestamps at microseconds, plain strings."""
    fields = []
    for f in schema:
        if pa.types.is_timestamp(f.type) and f.type.unit != "us":
            f = f.with_type(pa.timestamp("us", tz=f.type.tz))
        elif pa.types.is_large_string(f.type):
            f = f.with_type(pa.string())
        fields.append(f)
    return pa.schema(fields, metadata=schema.metadata)


def _with_docs(schema: pa.Schema) -> pa.Schema:
    """Carry each field's openness level, PII kind and description into the Iceberg doc."""
    fields = []
    for f in schema:
        meta = {k.decode(): v.decode() for k, v in (f.metadata or {}).items()}
        described = {k: v for k, v in meta.items() if k in ("level", "pii", "masking")}
        doc = "; ".join([*(f"{k}={v}" for k, v in described.items()), meta.get("description", "")])
        fields.append(f.with_metadata({"doc": doc.strip("; ")}) if doc.strip("; ") else f)
    return pa.schema(fields)


def _iceberg_schema(schema: pa.Schema):
    """The Iceberg schema of an Arrow schema, with field ids from 1 (docs kept)."""
    from pyiceberg.catalog import Catalog
    from pyiceberg.schema import assign_fresh_schema_ids

    return assign_fresh_schema_ids(Catalog._convert_schema_if_needed(schema))


def _dt_spec(schema):  # noqa: ANN001 - a pyiceberg Schema
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.transforms import IdentityTransform

    source_id = schema.find_field(PARTITION_COLUMN).field_id
    return PartitionSpec(
        PartitionField(
            source_id=source_id, field_id=1000, transform=IdentityTransform(), name=PARTITION_COLUMN
        )
    )


# Column statistics (min, max, nulls) only for the partition column: Iceberg takes a data
# file's partition value from them, and no reader of the raw zone prunes on any other column
# (every read is of one date's files, whole; rows lie in key-hash order, so a row group's
# bounds span nearly every value anyway). Statistics of every string column cost ≈ 13 % of
# a Parquet write's CPU (500 k delivered rows: 0.47 → 0.41 CPU s) for nothing.
STATISTICS_PROPERTIES = {
    "write.metadata.metrics.default": "none",
    f"write.metadata.metrics.column.{PARTITION_COLUMN}": "full",
}


def _table_properties(location: str) -> dict[str, str]:
    return {
        "write.data.path": location,  # Spark and friends write dt=… folders here too
        "write.parquet.compression-codec": "zstd",
        **STATISTICS_PROPERTIES,
        "write.metadata.previous-versions-max": "50",
        "yimen.layout": "raw zone table: one partition per night (dt), commit point in the store",
    }


def _data_file(table: Table, path: str):  # noqa: ANN202 - a pyiceberg DataFile
    """The Iceberg data file of a Parquet file the lake wrote: pyiceberg's
    ``parquet_file_to_data_file`` with the lake's metrics (:data:`STATISTICS_PROPERTIES`),
    also for tables created before they were table properties, so pyiceberg does not look
    for the statistics the writer left out (and warn once per column and row group)."""
    from pyiceberg.io.pyarrow import (
        _check_pyarrow_schema_compatible,
        compute_statistics_plan,
        data_file_statistics_from_parquet_metadata,
        parquet_path_to_id_mapping,
    )
    from pyiceberg.manifest import DataFile, DataFileContent, FileFormat

    metadata = table.metadata
    source = table.io.new_input(path)
    with source.open() as stream:
        footer = pq.read_metadata(stream)
    schema = metadata.schema()
    _check_pyarrow_schema_compatible(
        schema, footer.schema.to_arrow_schema(), format_version=metadata.format_version
    )
    statistics = data_file_statistics_from_parquet_metadata(
        parquet_metadata=footer,
        stats_columns=compute_statistics_plan(
            schema, {**metadata.properties, **STATISTICS_PROPERTIES}
        ),
        parquet_column_mapping=parquet_path_to_id_mapping(schema),
    )
    return DataFile.from_args(
        content=DataFileContent.DATA,
        file_path=path,
        file_format=FileFormat.PARQUET,
        partition=statistics.partition(metadata.spec(), schema),
        file_size_in_bytes=len(source),
        sort_order_id=None,
        spec_id=metadata.default_spec_id,
        equality_ids=None,
        key_metadata=None,
        **statistics.to_serialized_dict(),
    )


def _narrow_schema(schema: pa.Schema) -> pa.Schema:
    """pyiceberg reads strings as large_string; the steps work with plain strings."""
    return pa.schema(
        [f.with_type(pa.string()) if pa.types.is_large_string(f.type) else f for f in schema]
    )


def _narrow(table: pa.Table) -> pa.Table:
    narrow = _narrow_schema(table.schema)
    return table.cast(narrow) if narrow != table.schema else table


def _rebatch_tables(tables: Iterable[pa.Table], rows: int) -> Iterator[pa.Table]:
    """Bounded read batches of about ``rows`` rows from a scan's arbitrary batch sizes."""
    pending: list[pa.Table] = []
    held = 0
    for table in tables:
        if table.num_rows == 0:
            continue
        pending.append(table)
        held += table.num_rows
        if held >= rows:
            yield pa.concat_tables(pending)
            pending, held = [], 0
    if pending:
        yield pa.concat_tables(pending)


DICTIONARY_SAMPLE = 16_384  # first rows of a file looked at to choose its dictionary columns


def _repeating_columns(batch: pa.RecordBatch | pa.Table) -> list[str]:
    """The columns worth dictionary-encoding: at most half the values distinct in the first
    rows (sexes, statuses, dates, the batch id). Parquet tries a dictionary on every column
    otherwise and gives it up on the first page of names, IDs or addresses: work for
    nothing (measured: 1.8 M health records written in ≈ 17 % less CPU, 8 % smaller). A
    function of the rows alone, so equal rows still give equal bytes."""
    sample = batch.slice(0, DICTIONARY_SAMPLE)
    if sample.num_rows == 0:
        return []
    return [
        name
        for name, column in zip(sample.schema.names, sample.columns, strict=True)
        if pc.count_distinct(column).as_py() * 2 <= sample.num_rows
    ]


def _fingerprint(io, paths: list[str]) -> str:  # noqa: ANN001 - a pyiceberg FileIO
    """SHA-256 of the data files' bytes: equal rows written again give an equal fingerprint."""
    digest = hashlib.sha256()
    for path in paths:
        with io.new_input(path).open() as stream:
            while chunk := stream.read(1 << 22):
                digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def _delete_files(io, paths: list[str]) -> None:  # noqa: ANN001 - a pyiceberg FileIO
    for path in paths:
        with contextlib.suppress(FileNotFoundError, OSError):
            io.delete(path)


def _local(uri: str) -> str:
    return uri.removeprefix("file://")


def _close_folder(folder: str, root: str) -> None:
    """Create a raw table's folder owner-and-group only, with the zone folders above it."""
    os.makedirs(folder, mode=RAW_DIR_MODE, exist_ok=True)
    os.chmod(folder, RAW_DIR_MODE)
    _restrict_ancestors(folder, root)


def _restrict_write(location: str, ds: date, root: str) -> None:
    """What one write touched (its ``dt=`` folder, the table's metadata), not every date."""
    os.chmod(location, RAW_DIR_MODE)
    for folder in (f"{location}/{PARTITION_COLUMN}={ds.isoformat()}", f"{location}/metadata"):
        if os.path.isdir(folder):
            _restrict_tree(folder, root)


def _restrict_tree(folder: str, root: str) -> None:
    """Owner and group only, for a raw table's folder, its files and the zone folders above."""
    for here, _dirs, files in os.walk(folder):
        os.chmod(here, RAW_DIR_MODE)
        for name in files:
            os.chmod(os.path.join(here, name), RAW_FILE_MODE)
    _restrict_ancestors(folder, root)


# -- consumer zones: plain folders, temporary name then rename --------------------------


def _stage_folder(
    lake: Lake,
    path: str,
    batches: Iterable[pa.RecordBatch],
    schema: pa.Schema,
    private: bool,
    extra: dict | Callable[[], dict] | None,
) -> StagedPartition:
    fs = lake.fs
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:12]}"
    fs.create_dir(tmp, recursive=True)
    if private and lake.is_local:  # nobody else reaches the files before the final modes
        os.chmod(tmp, OWNER_DIR_MODE)
    try:
        files, rows = _write_folder_files(fs, tmp, _rebatch(batches, ROWS_PER_ROW_GROUP), schema)
        manifest = Manifest(
            path=path,
            rows=rows,
            files=files,
            fingerprint=_folder_fingerprint(fs, tmp, files),
            written_at=datetime.now(UTC).isoformat(timespec="seconds"),
            extra=(extra() if callable(extra) else extra) or {},
        )
        with fs.open_output_stream(f"{tmp}/{MANIFEST}") as out:
            out.write(json.dumps(asdict(manifest), ensure_ascii=False, indent=1).encode())
        if private and lake.is_local:
            _restrict_permissions(tmp)
            _restrict_ancestors(path, lake.root)
    except BaseException:
        if _exists(fs, tmp):
            fs.delete_dir(tmp)
        raise
    return StagedPartition(tmp, manifest)


def _write_folder_files(
    fs: pafs.FileSystem, tmp: str, batches: Iterator[pa.RecordBatch], schema: pa.Schema
) -> tuple[list[str], int]:
    files: list[str] = []
    rows_in_file, total = 0, 0
    writer: pq.ParquetWriter | None = None
    try:
        for batch in batches:
            if writer is None or rows_in_file >= ROWS_PER_FILE:
                if writer is not None:
                    writer.close()
                files.append(f"part-{len(files):05d}.parquet")
                writer = pq.ParquetWriter(
                    f"{tmp}/{files[-1]}", schema, filesystem=fs, compression="zstd"
                )
                rows_in_file = 0
            writer.write_batch(
                batch.cast(schema) if batch.schema != schema else batch,
                row_group_size=ROWS_PER_ROW_GROUP,
            )
            rows_in_file += batch.num_rows
            total += batch.num_rows
        if writer is None:  # an empty delivery is still a partition: zero rows, real schema
            files.append("part-00000.parquet")
            pq.write_table(schema.empty_table(), f"{tmp}/{files[0]}", filesystem=fs)
    finally:
        if writer is not None:
            writer.close()
    return files, total


def _folder_fingerprint(fs: pafs.FileSystem, tmp: str, files: list[str]) -> str:
    digest = hashlib.sha256()
    for name in files:
        with fs.open_input_stream(f"{tmp}/{name}") as stream:
            while chunk := stream.read(1 << 22):
                digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def _read_folder_manifest(fs: pafs.FileSystem, path: str) -> Manifest | None:
    try:
        with fs.open_input_stream(f"{path}/{MANIFEST}") as stream:
            return Manifest(**json.loads(stream.read()))
    except FileNotFoundError:
        return None


def _read_folder_partition(fs: pafs.FileSystem, path: str) -> pa.Table:
    manifest = _read_folder_manifest(fs, path)
    if manifest is None:
        raise PartitionError(f"partition {path} has no manifest: it is incomplete or missing")
    tables = [pq.read_table(f"{path}/{name}", filesystem=fs) for name in manifest.files]
    return pa.concat_tables(tables) if tables else pa.table({})


def _folder_batches(
    fs: pafs.FileSystem, path: str, batch_rows: int, columns: list[str] | None = None
) -> Iterator[pa.Table]:
    manifest = _read_folder_manifest(fs, path)
    if manifest is None:
        raise PartitionError(f"partition {path} has no manifest: it is incomplete or missing")
    for name in manifest.files:
        with fs.open_input_file(f"{path}/{name}") as handle:
            for batch in pq.ParquetFile(handle).iter_batches(batch_rows, columns=columns):
                yield pa.Table.from_batches([batch])


def _swap_into_place(fs: pafs.FileSystem, tmp: str, path: str) -> None:
    old = f"{path}.old-{uuid.uuid4().hex[:12]}"
    had_old = _exists(fs, path)
    if had_old:
        fs.move(path, old)
    try:
        fs.move(tmp, path)
    except Exception:
        if had_old:
            fs.move(old, path)
        raise
    if had_old:
        fs.delete_dir(old)
    parent, name = path.rsplit("/", 1)
    for info in fs.get_file_info(pafs.FileSelector(parent)):
        if info.base_name.startswith((f"{name}.tmp-", f"{name}.old-")):
            fs.delete_dir(info.path)


def field_metadata(
    field: FieldDef, operator: str | None = None, key_id: str | None = None
) -> dict[str, str]:
    """What a Parquet field says about itself: openness level, PII kind, masking applied.

    Written into every zone's schema so a file read on its own still tells a consumer (or a
    leak scan) how each column was treated. Never a key, only the key's public id.
    """
    meta = {"level": field.level}
    if field.pii:
        meta["pii"] = field.pii
    if operator:
        meta["masking"] = operator
    if key_id:
        meta["key_id"] = key_id
    return meta


def clean_type(field: FieldDef) -> pa.DataType:
    """The Arrow type a catalog field has in ``raw/clean`` and the zones built from it."""
    return _CLEAN_TYPES[field.type]


def clean_schema(dataset: DatasetDef) -> pa.Schema:
    """Typed schema of ``raw/clean`` (and what later zones start from), from the catalog."""
    fields = []
    for f in dataset.fields:
        fields.append(pa.field(f.name, clean_type(f), metadata=field_metadata(f)))
        if f.rule == "enterprise_name":
            fields.append(pa.field(f.name + NORMALISED_SUFFIX, pa.string()))
    return pa.schema(fields + METADATA_FIELDS)


def raw_schema(columns: list[str]) -> pa.Schema:
    """``raw/sources``: every delivered column as text, plus the metadata columns."""
    return pa.schema([pa.field(c, pa.string()) for c in columns] + METADATA_FIELDS)


def quarantine_schema(delivered: pa.Schema | None) -> pa.Schema:
    """``raw/quarantine``: the delivered columns as sent, plus the rules broken and why."""
    base = delivered if delivered is not None else pa.schema(METADATA_FIELDS)
    for extra in QUARANTINE_FIELDS:
        base = base.append(extra)
    return base


def write_delivery(
    lake: Lake,
    path: str,
    batches: Iterable[pa.Table],
    schema: pa.Schema,
    *,
    csv_encoding: str = "utf-8-sig",
    accept: Callable[[], bool] = lambda: True,
    extra: dict | None = None,
    private: bool = True,
) -> Manifest | None:
    """A consumer delivery (shared/, public/): Parquet plus an Excel-safe CSV, atomically.

    Both files are written under a temporary name; ``accept`` is asked after the last batch
    (the leak scan's verdict) and only then is the partition moved into place. A refused
    delivery is removed and ``None`` returned: the previous delivery of that date stays.
    Consumers need no table format: plain files and a manifest. ``private`` (shared extracts
    hold personal data) makes the files readable by owner and group only.
    """
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:12]}"
    lake.fs.create_dir(tmp, recursive=True)
    try:
        with lake.fs.open_output_stream(f"{tmp}/{DELIVERY_CSV}") as csv_out:
            writer = _CsvWriter(csv_out, csv_encoding)
            parquet_batches = (
                b for t in batches for b in writer.written(t).to_batches() if b.num_rows
            )
            files, rows = _write_folder_files(
                lake.fs, tmp, _rebatch(parquet_batches, ROWS_PER_ROW_GROUP), schema
            )
            writer.finish(schema)
        if not accept():
            lake.discard([StagedPartition(tmp, None)])
            return None
        files.append(DELIVERY_CSV)
        manifest = Manifest(
            path=path,
            rows=rows,
            files=files,
            fingerprint=_folder_fingerprint(lake.fs, tmp, files),
            written_at=datetime.now(UTC).isoformat(timespec="seconds"),
            extra=(extra or {}) | {"csv_encoding": csv_encoding},
        )
        with lake.fs.open_output_stream(f"{tmp}/{MANIFEST}") as out:
            out.write(json.dumps(asdict(manifest), ensure_ascii=False, indent=1).encode())
        if private and lake.is_local:
            _restrict_permissions(tmp)
            _restrict_ancestors(path, lake.root)
    except BaseException:
        lake.discard([StagedPartition(tmp, None)])
        raise
    lake.commit([StagedPartition(tmp, manifest)])
    return manifest


def excel_csv(table: pa.Table, encoding: str = "utf-8-sig") -> bytes:
    """One table as the Excel-safe CSV of a delivery (:class:`_CsvWriter`), in memory."""
    sink = pa.BufferOutputStream()
    writer = _CsvWriter(sink, encoding)
    if table.num_rows:
        writer.written(table)
    writer.finish(table.schema)
    return sink.getvalue().to_pybytes()


class _CsvWriter:
    """CSV that Excel opens with Chinese intact (UTF-8 with BOM, or GB18030), streamed.

    Text cells starting with ``= + - @`` get a leading apostrophe, so a spreadsheet never
    runs a value as a formula (CSV injection).
    """

    def __init__(self, out: pa.NativeFile, encoding: str) -> None:
        self.out, self.encoding, self.header = out, encoding, True
        if encoding == "utf-8-sig":
            out.write("\ufeff".encode())

    def written(self, table: pa.Table) -> pa.Table:
        shown = table
        for i, f in enumerate(table.schema):
            if pa.types.is_string(f.type):
                col = table.column(i)
                risky = pc.fill_null(pc.match_substring_regex(col, r"^[=+\-@]"), False)
                shown = shown.set_column(
                    i, f, pc.if_else(risky, pc.binary_join_element_wise("'", col, ""), col)
                )
            elif pa.types.is_integer(f.type) and table.column(i).null_count:
                # written as its digits: pandas would hold it as float64 beside a NULL and
                # print 12 as 12.0, a count as a decimal in Excel
                shown = shown.set_column(i, f.name, table.column(i).cast(pa.string()))
        frame = shown.to_pandas()
        text = frame.to_csv(index=False, header=self.header, lineterminator="\r\n")
        self.out.write(text.encode("gb18030" if self.encoding == "gb18030" else "utf-8"))
        self.header = False
        return table

    def finish(self, schema: pa.Schema) -> None:
        if self.header:  # no rows at all: still a header line
            self.written(schema.empty_table())


def _rebatch(batches: Iterable[pa.RecordBatch], rows: int) -> Iterator[pa.RecordBatch]:
    """Merge small source batches into row-group-sized ones (bounded: at most ``rows`` held)."""
    tables = (pa.Table.from_batches([b]) for b in batches)
    for table in _rebatch_tables(tables, rows):
        yield from table.combine_chunks().to_batches()


def _exists(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def _restrict_permissions(folder: str) -> None:
    os.chmod(folder, RAW_DIR_MODE)
    for name in os.listdir(folder):
        os.chmod(os.path.join(folder, name), RAW_FILE_MODE)


def _restrict_ancestors(path: str, root: str) -> None:
    """The zone folders above a private partition (``raw/``, ``raw/sources/<dept>`` …) too,
    and the lake's root: under the owner-only umask it was created ``0700``, which would
    shut the platform team's group out of the raw zone."""
    parent = os.path.dirname(path)
    while parent.startswith(root + "/"):
        os.chmod(parent, RAW_DIR_MODE)
        parent = os.path.dirname(parent)
    os.chmod(root, RAW_DIR_MODE)


# --------------------------------------------------------------------------- deliveries

PARQUET_MEDIA_TYPE = "application/vnd.apache.parquet"
CSV_MEDIA_TYPE = "text/csv"


def stage_delivery(
    lake: Lake, path: str, files: dict[str, bytes], *, extra: dict | None = None
) -> StagedPartition:
    """Stage a shared/public partition of ready-made files (Parquet plus its CSV copy).

    Deliveries are plain files for people and other systems (no Iceberg reader needed): the
    files are written beside ``path``, then the manifest, which lists the Parquet files
    (what :meth:`Lake.read_partition` reads) and, under ``distributions``, every file with
    its media type, byte size and SHA-256 (what the DCAT catalogue publishes). Committed
    with :meth:`Lake.commit` like any staged partition.
    """
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:12]}"
    lake.fs.create_dir(tmp, recursive=True)
    try:
        distributions = []
        for name, content in files.items():
            with lake.fs.open_output_stream(f"{tmp}/{name}") as out:
                out.write(content)
            distributions.append(
                {
                    "file": name,
                    "media_type": PARQUET_MEDIA_TYPE
                    if name.endswith(".parquet")
                    else CSV_MEDIA_TYPE,
                    "bytes": len(content),
                    "sha256": hashlib.sha256(content).hexdigest(),
                }
            )
        parquet = [d for d in distributions if d["media_type"] == PARQUET_MEDIA_TYPE]
        rows = sum(
            pq.ParquetFile(pa.BufferReader(files[d["file"]])).metadata.num_rows for d in parquet
        )
        manifest = Manifest(
            path=path,
            rows=rows,
            files=[d["file"] for d in parquet],
            fingerprint="sha256:"
            + hashlib.sha256(b"".join(files[d["file"]] for d in parquet)).hexdigest(),
            written_at=datetime.now(UTC).isoformat(timespec="seconds"),
            extra={**(extra or {}), "distributions": distributions},
        )
        with lake.fs.open_output_stream(f"{tmp}/{MANIFEST}") as out:
            out.write(json.dumps(asdict(manifest), ensure_ascii=False, indent=1).encode())
    except BaseException:
        lake.discard([StagedPartition(tmp, None)])
        raise
    return StagedPartition(tmp, manifest)


def replace_file(lake: Lake, path: str, content: bytes) -> None:
    """Write one file under a temporary name, then rename it over ``path`` (atomic locally)."""
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:12]}"
    parent = path.rsplit("/", 1)[0]
    lake.fs.create_dir(parent, recursive=True)
    with lake.fs.open_output_stream(tmp) as out:
        out.write(content)
    lake.fs.move(tmp, path)
