"""The one home for the lake's zones: names, paths, metadata columns, schemas and I/O.

Zones (docs/architecture.md §5): ``raw/sources`` (as delivered), ``raw/clean``,
``raw/quarantine`` and ``raw/unified`` (platform team only), ``shared/<consumer>`` (masked
extracts per grant) and ``public`` (open data). Every step builds its paths and schemas here,
never in another step.

A partition is written under a temporary prefix, its manifest (row count, files,
fingerprint) is written last, and only then is it moved into place, replacing any earlier
version of the same date. Readers trust only folders that hold a manifest, so they never see
half a partition, and rerunning a date replaces exactly that date. All I/O goes through
``pyarrow.fs`` so the lake root can be a local folder or an object store.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from catalog.definitions import DatasetDef, FieldDef
from catalog.errors import PartitionError
from catalog.files import OWNER_DIR_MODE

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
    "datetime": pa.timestamp("ms"),  # Parquet stores seconds as ms anyway
    "integer": pa.int64(),
    "decimal": pa.decimal128(18, 2),
}

MANIFEST = "_manifest.json"
DELIVERY_CSV = "data.csv"
ROWS_PER_FILE = 2_000_000
ROWS_PER_ROW_GROUP = 250_000  # large row groups: fewer, bigger column chunks read faster
RAW_DIR_MODE, RAW_FILE_MODE = 0o750, 0o640  # raw zone is for the platform team only


@dataclass(frozen=True)
class Manifest:
    path: str
    rows: int
    files: list[str]
    fingerprint: str
    written_at: str
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class StagedPartition:
    """A fully written partition waiting beside its final path for :meth:`Lake.commit`."""

    tmp: str
    manifest: Manifest | None


class Lake:
    """The lake root: builds zone paths and opens the right filesystem for them."""

    def __init__(self, root: str) -> None:
        self.fs, base = (
            pafs.FileSystem.from_uri(root)
            if "://" in root
            else (
                pafs.LocalFileSystem(),
                os.path.abspath(root),
            )
        )
        self.root = base.rstrip("/")
        self.is_local = isinstance(self.fs, pafs.LocalFileSystem)

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

    def partition_batches(self, path: str, batch_rows: int = READ_BATCH_ROWS) -> Iterator[pa.Table]:
        """Stream a committed partition in bounded batches (only the files its manifest lists)."""
        manifest = self.read_manifest(path)
        if manifest is None:
            raise PartitionError(f"partition {path} has no manifest: it is incomplete or missing")
        for name in manifest.files:
            with self.fs.open_input_file(f"{path}/{name}") as handle:
                for batch in pq.ParquetFile(handle).iter_batches(batch_size=batch_rows):
                    yield pa.Table.from_batches([batch])

    def read_manifest(self, path: str) -> Manifest | None:
        """The manifest of a committed partition, or None when there is none."""
        try:
            with self.fs.open_input_stream(f"{path}/{MANIFEST}") as stream:
                return Manifest(**json.loads(stream.read()))
        except FileNotFoundError:
            return None

    def read_partition(self, path: str) -> pa.Table:
        """Read a committed partition (only the files its manifest lists)."""
        manifest = self.read_manifest(path)
        if manifest is None:
            raise PartitionError(f"partition {path} has no manifest: it is incomplete or missing")
        tables = [pq.read_table(f"{path}/{name}", filesystem=self.fs) for name in manifest.files]
        return pa.concat_tables(tables) if tables else pa.table({})

    def write_partition(
        self,
        path: str,
        batches: Iterable[pa.RecordBatch],
        schema: pa.Schema,
        *,
        private: bool = False,
        extra: dict | Callable[[], dict] | None = None,
    ) -> Manifest:
        """Write ``batches`` as the partition at ``path``; atomically replace what was there.

        ``extra`` goes into the manifest (e.g. the watermark window or row arithmetic); a
        callable is asked for it after the batches are written, so it can report on them.
        ``private`` makes files readable by the owner and group only (raw zone).
        """
        staged = self.stage_partition(path, batches, schema, private=private, extra=extra)
        self.commit([staged])
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
        """Write a complete partition (files, then manifest) beside ``path``, not yet live.

        Several staged partitions are then committed together, so a step that writes a pair
        (clean + quarantine) replaces both or neither if anything fails before the commit.
        """
        tmp = f"{path}.tmp-{uuid.uuid4().hex[:12]}"
        self.fs.create_dir(tmp, recursive=True)
        if private and self.is_local:  # nobody else reaches the files before the final modes
            os.chmod(tmp, OWNER_DIR_MODE)
        try:
            files, rows = self._write_files(tmp, _rebatch(batches, ROWS_PER_ROW_GROUP), schema)
            manifest = Manifest(
                path=path,
                rows=rows,
                files=files,
                fingerprint=self._fingerprint(tmp, files),
                written_at=datetime.now(UTC).isoformat(timespec="seconds"),
                extra=(extra() if callable(extra) else extra) or {},
            )
            with self.fs.open_output_stream(f"{tmp}/{MANIFEST}") as out:
                out.write(json.dumps(asdict(manifest), ensure_ascii=False, indent=1).encode())
            if private and self.is_local:
                _restrict_permissions(tmp)
                _restrict_ancestors(path, self.root)
        except BaseException:
            self.discard([StagedPartition(tmp, None)])
            raise
        return StagedPartition(tmp, manifest)

    def commit(self, staged: list[StagedPartition]) -> None:
        """Move staged partitions into place, replacing earlier versions of the same dates."""
        for one in staged:
            self._swap_into_place(one.tmp, one.manifest.path)

    def discard(self, staged: list[StagedPartition]) -> None:
        """Remove staged partitions that will not be committed."""
        for one in staged:
            if _exists(self.fs, one.tmp):
                self.fs.delete_dir(one.tmp)

    def _write_files(
        self, tmp: str, batches: Iterator[pa.RecordBatch], schema: pa.Schema
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
                        f"{tmp}/{files[-1]}", schema, filesystem=self.fs, compression="zstd"
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
                pq.write_table(schema.empty_table(), f"{tmp}/{files[0]}", filesystem=self.fs)
        finally:
            if writer is not None:
                writer.close()
        return files, total

    def _fingerprint(self, tmp: str, files: list[str]) -> str:
        digest = hashlib.sha256()
        for name in files:
            with self.fs.open_input_stream(f"{tmp}/{name}") as stream:
                while chunk := stream.read(1 << 22):
                    digest.update(chunk)
        return "sha256:" + digest.hexdigest()

    def _swap_into_place(self, tmp: str, path: str) -> None:
        old = f"{path}.old-{uuid.uuid4().hex[:12]}"
        had_old = _exists(self.fs, path)
        if had_old:
            self.fs.move(path, old)
        try:
            self.fs.move(tmp, path)
        except Exception:
            if had_old:
                self.fs.move(old, path)
            raise
        if had_old:
            self.fs.delete_dir(old)
        self._remove_leftovers(path)

    def _remove_leftovers(self, path: str) -> None:
        """Temporary and replaced copies a crashed earlier write of ``path`` left behind.

        Readers never trust them (no manifest at the partition path), but they hold data
        and would otherwise pile up.
        """
        parent, name = path.rsplit("/", 1)
        siblings = self.fs.get_file_info(pafs.FileSelector(parent))
        for info in siblings:
            if info.base_name.startswith((f"{name}.tmp-", f"{name}.old-")):
                self.fs.delete_dir(info.path)


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
            files, rows = lake._write_files(
                tmp, _rebatch(parquet_batches, ROWS_PER_ROW_GROUP), schema
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
            fingerprint=lake._fingerprint(tmp, files),
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
        text = shown.to_pandas().to_csv(index=False, header=self.header, lineterminator="\r\n")
        self.out.write(text.encode("gb18030" if self.encoding == "gb18030" else "utf-8"))
        self.header = False
        return table

    def finish(self, schema: pa.Schema) -> None:
        if self.header:  # no rows at all: still a header line
            self.written(schema.empty_table())


def _rebatch(batches: Iterable[pa.RecordBatch], rows: int) -> Iterator[pa.RecordBatch]:
    """Merge small source batches into row-group-sized ones (bounded: at most ``rows`` held)."""
    pending: list[pa.RecordBatch] = []
    held = 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        pending.append(batch)
        held += batch.num_rows
        if held >= rows:
            yield from pa.Table.from_batches(pending).combine_chunks().to_batches()
            pending, held = [], 0
    if pending:
        yield from pa.Table.from_batches(pending).combine_chunks().to_batches()


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
