"""Change detection on snapshot drops: validate only what changed since the last good night.

File drops (``load: snapshot``) deliver every row every night although well under 1 % of
them change. Tonight's rows are compared with the last good night's raw snapshot by key and
row hash; only inserted and changed rows are standardised and validated, unchanged clean
rows are carried forward from that night's clean partition, and keys gone from the
snapshot are counted as deletions. The clean partition stays a full snapshot, equal row
for row to what full validation of tonight's delivery gives (docs/architecture.md §5,
"Change detection on snapshot drops").

Why that equality holds: a row's fate (clean, quarantined, collapsed) depends only on the
rows of its key and on the partition date. A row is carried forward only when its key has
exactly one row tonight and had exactly one identical row last night, which was published
clean; dated rules are monotone in the date (valid on D ⇒ valid on D + 1, ``etl/rules.py``).
Everything else (new, changed, duplicated, previously quarantined) is validated again.
Carried rows stay typed Arrow from last night's clean files to tonight's (no text round
trip, no second deduplication: their keys are single tonight); they are merged into the
validated rows bucket by bucket in key order, the order full validation writes. They are
carried only while the checks that published them are tonight's (:func:`checks_fingerprint`:
the dataset's catalog entry and the code of the checks).

The pure part (hashes, the comparison) takes arrays and tables; :func:`plan_changes` is the
small shell that finds the last good night in the store and reads its partitions.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from catalog.definitions import DatasetDef
from catalog.errors import LakeError
from catalog.files import code_digest, new_owner_file, owner_only_dir
from catalog.store import CatalogStore
from etl.dedup import SpillFolder, SpillWriter, key_hash
from etl.standardise import standardise_column
from etl.zones import METADATA_FIELDS, RAW_CLEAN, RAW_SOURCES, Lake, Manifest

log = logging.getLogger(__name__)

_MIX = np.uint64(0x9E3779B97F4A7C15)  # spreads the key hash before the content hash is added


# --- the pure part -----------------------------------------------------------------------


def standardised_key_hash(raw: pa.Table, dataset: DatasetDef) -> np.ndarray:
    """The hash of each row's key *as validation groups it* (standardised), so two deliveries
    of one key in different spellings (``12345678-9`` / ``123456789``) are one key here too."""
    columns = {}
    for name in dataset.key:
        f = next(f for f in dataset.fields if f.name == name)
        values = raw.column(name) if name in raw.column_names else pa.nulls(raw.num_rows)
        columns[name] = standardise_column(values.combine_chunks().cast(pa.string()), f)
    return key_hash(pa.table(columns), dataset.key)


def row_hash(raw: pa.Table, dataset: DatasetDef) -> np.ndarray:
    """A 64-bit hash of each row's catalog columns exactly as delivered (nulls distinct).

    DuckDB's ``hash(c1, c2, …)`` over the Arrow table (no copy): it hashes each column's
    values and combines them per row, so a null differs from an empty string and
    ("a", "bc") from ("ab", "c"). ≈ 4× faster than joining the columns and folding the
    bytes (:func:`hash_strings`). Both nights' rows are hashed by the same process, so the
    hash never has to be stable across DuckDB versions.
    """
    names = [f.name for f in dataset.fields if f.name in raw.column_names]
    if not names or raw.num_rows == 0:
        return np.zeros(raw.num_rows, dtype=np.uint64)
    import duckdb

    columns = ", ".join(f'"{name}"::VARCHAR' for name in names)
    # one thread: the same hashes for ≈ 25 % less CPU (2 M rows: 0.64 → 0.49 s), and the
    # night's other task keeps the machine's other core
    with duckdb.connect(config={"threads": 1}) as con:
        con.register("delivered", raw.select(names))
        hashed = con.sql(f"SELECT hash({columns}) AS h FROM delivered").fetchnumpy()["h"]
    return np.asarray(hashed, dtype=np.uint64)


@dataclass(frozen=True)
class SnapshotHashes:
    """Per delivered row: its standardised key hash, content hash and ``_row_number``."""

    keys: np.ndarray  # uint64
    contents: np.ndarray  # uint64
    row_numbers: np.ndarray  # int64
    # the delivery's metadata that is the same on every row (_source, _batch_id, …)
    metadata: dict[str, pa.Scalar] = field(default_factory=dict)

    @classmethod
    def of(
        cls, batches: Iterable[pa.Table], dataset: DatasetDef, hold: ChangedRows | None = None
    ) -> SnapshotHashes:
        """Hash a snapshot as it streams by; ``hold`` keeps the rows that cannot be carried."""
        keys, contents, numbers = [], [], []
        metadata: dict[str, pa.Scalar] = {}
        for batch in batches:
            if not metadata and batch.num_rows:  # one extraction: the first row says it
                metadata = {m.name: batch.column(m.name)[0] for m in METADATA_FIELDS}
            keys.append(standardised_key_hash(batch, dataset))
            contents.append(row_hash(batch, dataset))
            numbers.append(batch.column("_row_number").to_numpy())
            if hold is not None:
                hold.add(batch, keys[-1] * _MIX + contents[-1])
        if not keys:
            empty = np.array([], dtype=np.uint64)
            return cls(empty, empty, np.array([], dtype=np.int64))
        return cls(
            np.concatenate(keys), np.concatenate(contents), np.concatenate(numbers), metadata
        )

    @classmethod
    def joined(cls, parts: list[SnapshotHashes]) -> SnapshotHashes:
        """The hashes of a snapshot hashed batch by batch, in its order."""
        if not parts:
            empty = np.array([], dtype=np.uint64)
            return cls(empty, empty, np.array([], dtype=np.int64))
        return cls(
            np.concatenate([p.keys for p in parts]),
            np.concatenate([p.contents for p in parts]),
            np.concatenate([p.row_numbers for p in parts]),
            parts[0].metadata,
        )

    @classmethod
    def of_batch(cls, raw: pa.Table, dataset: DatasetDef, keys: np.ndarray) -> SnapshotHashes:
        """One delivered batch's hashes, its standardised key hashes already computed
        (validation's key-bucket spool hashes exactly :func:`standardised_key_hash`)."""
        return cls(keys, row_hash(raw, dataset), raw.column("_row_number").to_numpy())


# the code the cached hashes are computed by: a change to any of it renames every file
HASH_MODULES = ("etl.changes", "etl.dedup", "etl.standardise", "catalog.identifiers")


class SnapshotHashCache:
    """Each snapshot drop's row hashes, kept from the night that validated it for the night
    that compares with it, so that night reads and hashes one snapshot instead of two.

    One Arrow file per dataset and night, named by the raw partition's fingerprint (the
    SHA-256 of its data files) and by a digest of what the hashes depend on (the dataset's
    catalog entry, the hashing code, DuckDB's version): a partition extracted again, or new
    code, is another name. A file is used only if it says it describes that partition
    (fingerprint and row count inside it) and its hashes are the ones written (a SHA-256 of
    them inside it); anything else is removed and the snapshot hashed from its rows. The
    files are hashes of personal keys: an owner-only folder (``var/cache/snapshot-hashes``
    in the night), written under a ``.part`` name and renamed when complete.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = owner_only_dir(Path(folder))

    @staticmethod
    def version(dataset: DatasetDef) -> str:
        import duckdb

        digest = hashlib.sha256(dataset.model_dump_json().encode())
        digest.update(code_digest(*HASH_MODULES).encode())
        digest.update(duckdb.__version__.encode())
        return digest.hexdigest()[:16]

    def path(self, dataset: DatasetDef, ds: date, fingerprint: str) -> Path:
        digest = fingerprint.removeprefix("sha256:")[:24]
        return self.folder / f"{dataset.id}.{ds.isoformat()}.{digest}.{self.version(dataset)}.arrow"

    def read(
        self, dataset: DatasetDef, ds: date, fingerprint: str, rows: int
    ) -> SnapshotHashes | None:
        """The hashes of the raw partition with ``fingerprint`` and ``rows``, or None."""
        path = self.path(dataset, ds, fingerprint)
        if not path.exists():
            return None
        try:
            with pa.memory_map(str(path), "r") as source:
                table = pa.ipc.open_file(source).read_all()
            said = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
            hashes = SnapshotHashes(
                table.column("keys").to_numpy(),
                table.column("contents").to_numpy(),
                table.column("row_numbers").to_numpy(),
            )
            whole = (
                said.get("fingerprint") == fingerprint
                and said.get("rows") == str(rows) == str(table.num_rows)
                and said.get("sha256") == _digest(hashes)
            )
        except (OSError, KeyError, pa.ArrowException):
            whole = False
        if not whole:
            log.warning("%s %s: cached snapshot hashes do not match; hashed again", dataset.id, ds)
            path.unlink(missing_ok=True)
            return None
        return hashes

    def write(
        self, dataset: DatasetDef, ds: date, fingerprint: str, hashes: SnapshotHashes
    ) -> Path:
        """Keep ``hashes`` for the raw partition ``fingerprint``; remove the dataset's files
        of other nights but the one before (a rerun of tonight compares with it again)."""
        path = self.path(dataset, ds, fingerprint)
        part = path.with_name(f"{path.name}.{os.getpid()}.part")
        table = pa.table(
            {
                "keys": pa.array(hashes.keys, pa.uint64()),
                "contents": pa.array(hashes.contents, pa.uint64()),
                "row_numbers": pa.array(hashes.row_numbers, pa.int64()),
            }
        )
        said = {"fingerprint": fingerprint, "rows": str(len(hashes.keys))}
        table = table.replace_schema_metadata(said | {"sha256": _digest(hashes)})
        try:
            with (
                pa.OSFile(str(new_owner_file(part)), "wb") as sink,
                pa.ipc.new_file(sink, table.schema) as writer,
            ):
                writer.write_table(table)
            os.replace(part, path)
        finally:
            part.unlink(missing_ok=True)
        keep = {path.name}
        files = {
            p: p.name.removeprefix(f"{dataset.id}.").split(".")[0] for p in self._files(dataset)
        }
        before = max((n for n in files.values() if n < ds.isoformat()), default=None)
        for old, night in files.items():
            if old.name not in keep and night != before:
                old.unlink(missing_ok=True)
        return path

    def _files(self, dataset: DatasetDef) -> list[Path]:
        return [p for p in self.folder.glob(f"{dataset.id}.*") if p.is_file()]


def _digest(hashes: SnapshotHashes) -> str:
    digest = hashlib.sha256()
    for values in (hashes.keys, hashes.contents, hashes.row_numbers):
        digest.update(np.ascontiguousarray(values).tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class Changes:
    """Tonight's snapshot against the last good night's (pure result of :func:`compare`)."""

    carried_keys: np.ndarray  # key hashes of rows carried forward clean (unique)
    carried_row_numbers: np.ndarray  # tonight's ``_row_number`` of each, aligned
    revalidate: np.ndarray  # tonight's ``_row_number``s to standardise and validate
    inserted: int  # rows whose key was not in the last snapshot
    updated: int  # rows of a known key whose content is new
    deleted_keys: np.ndarray  # key hashes gone from the snapshot

    @property
    def unchanged(self) -> int:
        return len(self.carried_keys)

    @cached_property
    def carried_index(self) -> pd.Index:
        """The carried keys as a hash index (their position gives the row number)."""
        return pd.Index(self.carried_keys)

    @property
    def deleted(self) -> int:
        return len(self.deleted_keys)


@dataclass(frozen=True)
class LastNightKeys:
    """Last night's key hashes and its clean ones, numbered once (one pandas factorize):
    the hashing pass asks which rows could be carried, the comparison counts by the same
    numbers (before, each put last night's keys into hash tables of its own)."""

    uniques: np.ndarray  # uint64, one per number
    codes_last: np.ndarray  # the number of each of last night's rows
    in_last: np.ndarray  # rows per number last night
    published: np.ndarray  # per number: published clean last night

    @classmethod
    def of(cls, last_keys: np.ndarray, clean_keys: np.ndarray) -> LastNightKeys:
        codes, uniques = pd.factorize(np.concatenate([last_keys, clean_keys]))
        n, kinds = len(last_keys), len(uniques)
        published = np.zeros(kinds, dtype=bool)
        published[codes[n:]] = True
        in_last = np.bincount(codes[:n], minlength=kinds)
        return cls(np.asarray(uniques, dtype=np.uint64), codes[:n], in_last, published)

    def carriable(self) -> np.ndarray:
        """Per row of last night: alone under its key, and published clean."""
        return (self.in_last[self.codes_last] == 1) & self.published[self.codes_last]

    def numbered(self, keys: np.ndarray) -> tuple[np.ndarray, int]:
        """``keys`` by last night's numbers, keys last night did not have numbered after
        them; and how many numbers there are then."""
        codes = pd.Index(self.uniques).get_indexer(keys)
        new = codes < 0
        if not new.any():
            return codes, len(self.uniques)
        new_codes, new_uniques = pd.factorize(keys[new])
        codes[new] = new_codes + len(self.uniques)
        return codes, len(self.uniques) + len(new_uniques)


def compare(
    tonight: SnapshotHashes,
    last: SnapshotHashes,
    clean_keys: np.ndarray,
    numbers: LastNightKeys | None = None,
) -> Changes:
    """Which of tonight's rows are unchanged clean rows, and what was inserted, updated, deleted.

    ``clean_keys`` are the key hashes published clean last night. A row is carried forward
    when its key has one row tonight, had one row last night with the same content, and was
    published clean; every other row is validated again. ``numbers``: last night's keys
    already numbered (:class:`LastNightKeys` of ``last.keys`` and ``clean_keys``).
    """
    # one hash pass numbers every key of both nights and of last night's clean rows; the
    # rest is counting and indexing by those numbers (numpy, no sorts)
    numbers = numbers or LastNightKeys.of(last.keys, clean_keys)
    codes_last = numbers.codes_last
    codes_tonight, kinds = numbers.numbered(tonight.keys)
    n_last = len(last.keys)
    in_last = np.zeros(kinds, dtype=np.int64)
    in_last[: len(numbers.in_last)] = numbers.in_last
    in_tonight = np.bincount(codes_tonight, minlength=kinds)
    published = np.zeros(kinds, dtype=bool)
    published[: len(numbers.published)] = numbers.published
    first_row = np.zeros(kinds, dtype=np.int64)  # a key's first row last night
    first_row[codes_last[::-1]] = np.arange(n_last - 1, -1, -1)
    last_count = in_last[codes_tonight]
    known = last_count > 0
    single_last = last_count == 1
    same = single_last.copy()
    same[same] = last.contents[first_row[codes_tonight[same]]] == tonight.contents[same]
    carried = (in_tonight[codes_tonight] == 1) & same & published[codes_tonight]
    # content new for the key: differs from its one row last night, or (several rows last
    # night) matches none of them
    new_content = single_last & ~same
    several = known & ~single_last
    if several.any():
        repeated = in_last[codes_last] > 1
        pairs_last = last.keys[repeated] * _MIX + last.contents[repeated]
        pairs = tonight.keys[several] * _MIX + tonight.contents[several]
        new_content[several] = ~_member(pairs, pairs_last)
    in_last_only = (in_last[: len(numbers.uniques)] > 0) & (in_tonight[: len(numbers.uniques)] == 0)
    gone = numbers.uniques[in_last_only]
    return Changes(  # carried keys in tonight's order: they are looked up by a hash index
        carried_keys=tonight.keys[carried],
        carried_row_numbers=tonight.row_numbers[carried],
        revalidate=np.sort(tonight.row_numbers[~carried]),
        inserted=int((~known).sum()),
        updated=int((known & new_content).sum()),
        deleted_keys=np.sort(gone),
    )


HELD_ROWS = 250_000  # changed rows kept from the hashing pass; past this, read again


class ChangedRows:
    """Tonight's rows that cannot be carried forward, kept as the hashing pass reads them,
    so a snapshot where little changed is read once, not twice.

    A row can be carried only if its (key, content) is a row last night had alone under its
    key and published clean (:func:`compare` asks more: one row tonight too). Every other
    row will be validated, so it is kept here, up to :data:`HELD_ROWS`; a night that
    changed more is read again (``tables`` is None then).
    """

    def __init__(self, last: SnapshotHashes, numbers: LastNightKeys) -> None:
        carriable = numbers.carriable()
        # hashed once, looked up by every batch (``Series.isin`` would hash them per batch);
        # the keys are alone, so the pairs are unique but for a 64-bit collision: checked
        # by the index's own hash table (the one the lookups use), not by ``pd.unique``
        pairs = last.keys[carriable] * _MIX + last.contents[carriable]
        self.candidates = pd.Index(pairs)
        if not self.candidates.is_unique:
            self.candidates = pd.Index(pd.unique(pairs))
        self.tables: list[pa.Table] | None = []
        self.rows = 0

    def add(self, batch: pa.Table, pairs: np.ndarray) -> None:
        if self.tables is None:
            return
        kept = batch.filter(pa.array(self.candidates.get_indexer(pairs) < 0))
        self.rows += kept.num_rows
        if self.rows > HELD_ROWS:
            self.tables = None  # too many to hold: tonight's snapshot is read again
        elif kept.num_rows or not self.tables:  # the first, even empty: the delivered schema
            self.tables.append(kept)


def _member(values: np.ndarray, of: np.ndarray) -> np.ndarray:
    """``np.isin`` by a hash table (pandas): no sort of either array."""
    return pd.Series(values).isin(of).to_numpy()


def carried_rows(
    clean: pa.Table,
    keys: np.ndarray,
    changes: Changes,
    metadata: dict[str, pa.Scalar],
    schema: pa.Schema,
) -> tuple[pa.Table, np.ndarray]:
    """Last night's clean rows, typed as they were published, with tonight's metadata (a
    carried row's number from tonight's delivery), and which of them are carried.

    All of ``clean``'s rows, not only the carried ones: the bucket's merge takes the
    carried rows, so each is moved once (a filter here, then the take, moved ≈ 99 % of
    the rows twice). ``keys`` are the key hashes of ``clean``'s rows (hashed once, by
    :func:`plan_changes`); ``clean`` needs only the columns tonight's metadata does not
    replace. No text round trip: a clean value is what ``_typed`` made of the canonical
    text, and casting it to text and back gives it again, so the typed value is carried.
    """
    at = changes.carried_index.get_indexer(keys)  # one hash lookup: carried? which row?
    wanted = at >= 0
    numbers = np.zeros(clean.num_rows, dtype=np.int64)  # rows not carried: never kept
    numbers[wanted] = changes.carried_row_numbers[at[wanted]]
    n = clean.num_rows
    columns = []
    for f in schema:
        if f.name == "_row_number":
            columns.append(pa.array(numbers, pa.int64()))
        elif f.name in metadata:
            columns.append(pa.repeat(metadata[f.name], n).cast(f.type))
        else:
            columns.append(clean.column(f.name))
    return pa.Table.from_arrays(columns, schema=schema), wanted


@dataclass(frozen=True)
class CarriedPart:
    """One bucket's share of last night's clean rows, stamped with tonight's metadata;
    ``wanted`` marks the carried ones (None: every row)."""

    table: pa.Table
    wanted: np.ndarray | None = None

    @property
    def rows(self) -> int:
        return self.table.num_rows if self.wanted is None else int(self.wanted.sum())

    @classmethod
    def joined(cls, parts: list[CarriedPart]) -> CarriedPart:
        if len(parts) == 1:
            return parts[0]
        wanted = None
        if any(p.wanted is not None for p in parts):
            wanted = np.concatenate(
                [
                    p.wanted if p.wanted is not None else np.ones(p.table.num_rows, bool)
                    for p in parts
                ]
            )
        return cls(pa.concat_tables([p.table for p in parts]), wanted)


def replaced_by_tonight(schema: pa.Schema, metadata: dict[str, pa.Scalar]) -> set[str]:
    """The clean columns a carried row takes from tonight, not from last night's files."""
    return {f.name for f in schema if f.name == "_row_number" or f.name in metadata}


@dataclass(frozen=True)
class CleanKeys:
    """Last night's clean keys, read and hashed once: by the comparison, then by the
    carried rows' read, which checks that its rows come in the order they were hashed."""

    values: pa.Table  # the key columns as read, in partition order
    hashes: np.ndarray  # uint64, aligned

    def hashes_of(self, clean: pa.Table, offset: int, path: str) -> np.ndarray:
        """The hashes of ``clean``, the rows at ``offset`` of a second read of ``path``
        (compared value for value with the first read's: far cheaper than hashing)."""
        n = clean.num_rows
        if offset + n > len(self.hashes) or not clean.select(self.values.column_names).equals(
            self.values.slice(offset, n)
        ):
            raise LakeError(  # a bug, never a data condition: publish nothing
                f"{path}: the clean rows did not read back in the order their keys were "
                "hashed; nothing was replaced"
            )
        return self.hashes[offset : offset + n]


# --- the shell ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ChangePlan:
    """What validation of tonight's snapshot does instead of validating every row."""

    since: date  # the last good night compared with
    changes: Changes
    clean_path: str  # that night's clean partition, the source of the carried rows
    metadata: dict[str, pa.Scalar]  # tonight's constant metadata (_source, _batch_id, …)
    clean_buckets: int | None = None  # the key buckets that night's clean rows are laid in
    changed: ChangedRows | None = None  # rows kept by the hashing pass
    hashes: SnapshotHashes | None = None  # tonight's, for the night that compares with it
    clean_keys: CleanKeys | None = None  # that night's clean keys, hashed once

    def to_validate(self, batches: Iterable[pa.Table], rows: int) -> Iterator[pa.Table]:
        """The raw rows that must be standardised and validated tonight, gathered into
        batches of up to ``rows`` (each GX run has a fixed cost); at least one batch.

        From the rows the hashing pass kept when they are all of them (``batches``, the
        snapshot, is then never read again), else from ``batches``."""
        wanted = pa.array(self.changes.revalidate, pa.int64())
        kept = self.changed
        if kept is not None and kept.tables is not None and kept.rows == len(wanted):
            batches = kept.tables  # ⊇ every row to validate (ChangedRows): exactly them
        held: list[pa.Table] = []
        count = 0
        for raw in batches:
            changed = raw.filter(pc.is_in(raw.column("_row_number"), value_set=wanted))
            if changed.num_rows == 0 and (held or count):
                continue
            held.append(changed)
            count += changed.num_rows
            if count >= rows:
                yield pa.concat_tables(held)
                held, count = [], 0
        if held:
            yield pa.concat_tables(held)

    def carried(
        self,
        lake: Lake,
        dataset: DatasetDef,
        schema: pa.Schema,
        buckets: int,
        work_dir: Path | None = None,
    ) -> CarriedRows:
        """The carried-forward rows, typed, bucket by bucket (see :class:`CarriedRows`)."""
        return CarriedRows(self, lake, dataset.key, schema, buckets, work_dir)

    def details(self) -> dict:
        c = self.changes
        return {
            "compared_with": self.since.isoformat(),
            "inserted": c.inserted,
            "updated": c.updated,
            "revalidated": len(c.revalidate),
        }


class CarriedRows:
    """The carried rows of each key bucket, in ascending bucket order, one bucket whole at
    a time (bounded memory, like the deduplication of the validated rows).

    Last night's clean partition was written bucket after bucket; when it was cut into as
    many buckets as tonight's (recorded in its commit), one streaming read gives the
    buckets in order. Otherwise (the delivery crossed a bucket boundary, or the record
    predates the layout) the one read spools the carried rows into tonight's buckets on
    disk (Arrow IPC, like the validated rows' spool) and hands them back bucket by bucket.
    ``rows`` counts what was carried, for the row conservation check.
    """

    def __init__(
        self,
        plan: ChangePlan,
        lake: Lake,
        key: list[str],
        schema: pa.Schema,
        buckets: int,
        work_dir: Path | None = None,
    ) -> None:
        self.plan, self.lake, self.key, self.schema = plan, lake, key, schema
        self.buckets, self.work_dir = buckets, work_dir
        self.rows = 0
        self._spill: SpillFolder | None = None

    def __iter__(self) -> Iterator[tuple[int, CarriedPart]]:
        in_order = self.buckets == 1 or self.plan.clean_buckets == self.buckets
        yield from self._streamed() if in_order else self._spooled()

    def close(self) -> None:
        """Remove the spooled rows (they hold personal data), whatever happened."""
        if self._spill is not None:
            self._spill.remove()

    def _batches(self) -> Iterator[tuple[pa.Table, np.ndarray, np.ndarray]]:
        """Last night's clean rows, batch by batch, stamped, with which are carried and
        their bucket.

        Only the columns tonight keeps (last night's ``_row_number``, ``_batch_id``, …
        are replaced); the key hashes are the plan's, not computed again."""
        plan, path = self.plan, self.plan.clean_path
        tonight = replaced_by_tonight(self.schema, plan.metadata)
        kept = [f.name for f in self.schema if f.name not in tonight]
        offset = 0
        for clean in self.lake.partition_batches(path, columns=kept):
            if plan.clean_keys is not None:
                keys = plan.clean_keys.hashes_of(clean, offset, path)
            else:
                keys = key_hash(clean, self.key)
            offset += clean.num_rows
            rows, wanted = carried_rows(clean, keys, plan.changes, plan.metadata, self.schema)
            if wanted.any():
                yield rows, wanted, (keys % np.uint64(self.buckets)).astype(np.int64)
        if plan.clean_keys is not None and offset != len(plan.clean_keys.hashes):
            raise LakeError(f"{path}: fewer clean rows read back than hashed; nothing replaced")

    def _streamed(self) -> Iterator[tuple[int, CarriedPart]]:
        """Last night's rows lie bucket after bucket: each bucket is a run of rows, cut
        out by slices (no copy); the merge takes the carried ones."""
        held: list[CarriedPart] = []
        current: int | None = None
        for rows, wanted, bucket in self._batches():
            if np.any(np.diff(bucket) < 0) or (current is not None and bucket[0] < current):
                raise LakeError(  # a bug, never a data condition: publish nothing
                    f"{self.plan.clean_path}: the clean rows are not in the key-bucket "
                    "order their record states; nothing was replaced"
                )
            starts = np.flatnonzero(np.diff(bucket, prepend=-1))
            stops = np.append(starts[1:], len(bucket))
            for start, stop in zip(starts.tolist(), stops.tolist(), strict=True):
                b = int(bucket[start])
                if current is not None and b != current:
                    yield current, self._whole(held)
                    held = []
                current = b
                part = rows.slice(start, stop - start)
                held.append(CarriedPart(part, wanted[start:stop]))
        if held:
            yield current, self._whole(held)

    def _spooled(self) -> Iterator[tuple[int, CarriedPart]]:
        """Tonight's buckets from one read of a partition laid in other buckets (only the
        carried rows are spooled)."""
        self._spill = SpillFolder("dedup", self.work_dir)
        writers: dict[int, SpillWriter] = {}
        try:
            for rows, wanted, bucket in self._batches():
                for b in np.unique(bucket[wanted]):
                    part = rows.filter(pa.array(wanted & (bucket == b)))
                    if b not in writers:
                        writers[b] = SpillWriter(self._spill.path / f"{b}.arrows", self.schema)
                    writers[b].write(part)
            for writer in writers.values():
                writer.close()
            for b in sorted(writers):
                yield int(b), self._whole([CarriedPart(writers[b].read())])
        finally:
            for writer in writers.values():
                writer.close()
            self.close()

    def _whole(self, parts: list[CarriedPart]) -> CarriedPart:
        whole = CarriedPart.joined(parts)
        self.rows += whole.rows
        return whole


def plan_changes(
    dataset: DatasetDef,
    ds: date,
    *,
    lake: Lake,
    store: CatalogStore,
    cache: SnapshotHashCache | None = None,
) -> ChangePlan | None:
    """Compare tonight's snapshot with the last good night's, or None for full validation.

    None when the dataset is not a snapshot drop, on a first night, when the last night's
    validation did not succeed (breaker tripped, rows not conserved, nothing recorded), when
    its partitions are not the ones recorded, when the delivered columns changed, or when
    the checks are not the ones that published last night's clean rows. Last night's
    hashes come from ``cache`` when it holds them for exactly that raw partition
    (:class:`SnapshotHashCache`); tonight's are handed back in the plan, for tomorrow.
    """
    if dataset.source.load != "snapshot":
        return None
    last_raw = store.latest_partition_before(RAW_SOURCES, dataset.id, ds)
    if last_raw is None:
        return None
    since = last_raw.ds
    reason, clean_record = _unusable(dataset, since, last_raw, lake=lake, store=store)
    tonight = lake.dataset_partition(RAW_SOURCES, dataset, ds)
    if reason is None and _columns(lake, tonight) != _columns(lake, last_raw.path):
        reason = "the delivered columns changed"
    if reason is not None:
        log.info("%s %s: full validation (%s)", dataset.id, ds, reason)
        return None
    clean = store.partition(RAW_CLEAN, dataset.id, since)
    clean_key = _clean_keys(lake, clean.path, dataset.key)
    clean_keys = clean_key.hashes
    last_hashes = cache.read(dataset, since, last_raw.fingerprint, last_raw.rows) if cache else None
    if last_hashes is None:
        last_hashes = SnapshotHashes.of(lake.partition_batches(last_raw.path), dataset)
    numbers = LastNightKeys.of(last_hashes.keys, clean_keys)
    changed = ChangedRows(last_hashes, numbers)
    tonight_hashes = SnapshotHashes.of(lake.partition_batches(tonight), dataset, changed)
    changes = compare(tonight_hashes, last_hashes, clean_keys, numbers)
    layout = clean_record.extra.get("layout", {})
    buckets = layout.get("buckets")
    return ChangePlan(
        since,
        changes,
        clean.path,
        tonight_hashes.metadata,
        buckets,
        changed,
        tonight_hashes,
        clean_key,
    )


# the code that decides a row's fate: a new version of it re-validates every row once
CHECK_MODULES = (
    "catalog.identifiers",
    "etl.rules",
    "etl.standardise",
    "etl.quality",
    "etl.dedup",
    "etl.validate",
)


def checks_fingerprint(dataset: DatasetDef) -> str:
    """What published a clean partition: the dataset's catalog entry and the checks' code.

    Recorded with each clean partition; rows are carried forward only under the same
    fingerprint, so a new rule, a changed field or a fixed check re-validates every row once
    instead of carrying rows the new checks might reject.
    """
    digest = hashlib.sha256(dataset.model_dump_json().encode())
    digest.update(code_digest(*CHECK_MODULES).encode())
    return "sha256:" + digest.hexdigest()


def _unusable(
    dataset: DatasetDef, since: date, last_raw, *, lake: Lake, store: CatalogStore
) -> tuple[str | None, Manifest | None]:
    """Why the last night cannot be compared with (None when it can); its clean record."""
    if any(f.type != "string" for f in dataset.fields if f.name in dataset.key):
        return "its key is not text", None
    figures = store.quality_of(dataset.id, since)
    clean = store.partition(RAW_CLEAN, dataset.id, since)
    if figures is None or clean is None:
        return f"{since} was not validated", None
    if not figures.conserved or figures.details.get("breaker_tripped", True):
        return f"the validation of {since} did not succeed", None
    manifests = [lake.read_manifest(record.path) for record in (last_raw, clean)]
    for record, manifest in zip((last_raw, clean), manifests, strict=True):
        if manifest is None or manifest.fingerprint != record.fingerprint:
            return f"the partition {record.path} is not the one recorded", None
    clean_manifest = manifests[1]
    if clean_manifest.extra.get("layout", {}).get("checks") != checks_fingerprint(dataset):
        return f"the checks changed since {since} (catalog entry or code)", None
    return None, clean_manifest


def _clean_keys(lake: Lake, path: str, key: list[str]) -> CleanKeys:
    """Only the key columns of a committed clean partition, streamed, and their hashes."""
    tables = list(lake.partition_batches(path, columns=key))
    if not tables:
        return CleanKeys(
            pa.table({k: pa.array([], pa.string()) for k in key}), np.array([], np.uint64)
        )
    return CleanKeys(
        pa.concat_tables(tables),
        np.concatenate([key_hash(t, key) for t in tables]).astype(np.uint64),
    )


def _columns(lake: Lake, path: str) -> list[str]:
    """The delivered column names of a raw partition (without reading its rows)."""
    return lake.partition_columns(path)
