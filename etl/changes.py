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

The pure part (hashes, the comparison) takes arrays and tables; :func:`plan_changes` is the
small shell that finds the last good night in the store and reads its partitions.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from catalog.definitions import DatasetDef
from catalog.store import CatalogStore
from etl.dedup import REJECTED, key_hash
from etl.standardise import standardise_column
from etl.zones import METADATA_FIELDS, NORMALISED_SUFFIX, RAW_CLEAN, RAW_SOURCES, Lake

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
    with duckdb.connect() as con:
        con.register("delivered", raw.select(names))
        hashed = con.sql(f"SELECT hash({columns}) AS h FROM delivered").fetchnumpy()["h"]
    return np.asarray(hashed, dtype=np.uint64)


@dataclass(frozen=True)
class SnapshotHashes:
    """Per delivered row: its standardised key hash, content hash and ``_row_number``."""

    keys: np.ndarray  # uint64
    contents: np.ndarray  # uint64
    row_numbers: np.ndarray  # int64

    @classmethod
    def of(cls, batches: Iterable[pa.Table], dataset: DatasetDef) -> SnapshotHashes:
        keys, contents, numbers = [], [], []
        for batch in batches:
            keys.append(standardised_key_hash(batch, dataset))
            contents.append(row_hash(batch, dataset))
            numbers.append(batch.column("_row_number").to_numpy())
        if not keys:
            empty = np.array([], dtype=np.uint64)
            return cls(empty, empty, np.array([], dtype=np.int64))
        return cls(np.concatenate(keys), np.concatenate(contents), np.concatenate(numbers))


@dataclass(frozen=True)
class Changes:
    """Tonight's snapshot against the last good night's (pure result of :func:`compare`)."""

    carried_keys: np.ndarray  # sorted key hashes of rows carried forward clean
    carried_row_numbers: np.ndarray  # tonight's ``_row_number`` of each, aligned
    revalidate: np.ndarray  # tonight's ``_row_number``s to standardise and validate
    inserted: int  # rows whose key was not in the last snapshot
    updated: int  # rows of a known key whose content is new
    deleted_keys: np.ndarray  # key hashes gone from the snapshot

    @property
    def unchanged(self) -> int:
        return len(self.carried_keys)

    @property
    def deleted(self) -> int:
        return len(self.deleted_keys)


def compare(tonight: SnapshotHashes, last: SnapshotHashes, clean_keys: np.ndarray) -> Changes:
    """Which of tonight's rows are unchanged clean rows, and what was inserted, updated, deleted.

    ``clean_keys`` are the key hashes published clean last night. A row is carried forward
    when its key has one row tonight, had one row last night with the same content, and was
    published clean; every other row is validated again.
    """
    # hash tables (pandas), not sorts: linear in the rows of both nights
    tonight_counts = pd.Series(tonight.keys).value_counts()
    last_counts = pd.Series(last.keys).value_counts()
    first_of_key = np.flatnonzero(~pd.Series(last.keys).duplicated().to_numpy())
    where = pd.Index(last.keys[first_of_key]).get_indexer(tonight.keys)  # -1: new tonight
    known = where >= 0
    last_row = first_of_key[np.where(known, where, 0)] if len(first_of_key) else where
    single_tonight = tonight_counts.reindex(tonight.keys).to_numpy() == 1
    single_last = last_counts.reindex(tonight.keys).fillna(0).to_numpy() == 1
    same = known & single_last
    same[same] = last.contents[last_row[same]] == tonight.contents[same]
    carried = single_tonight & same & _member(tonight.keys, clean_keys)
    pairs_last = last.keys * _MIX + last.contents
    new_content = ~_member(tonight.keys * _MIX + tonight.contents, pairs_last)
    l_keys = last_counts.index.to_numpy(dtype=np.uint64)
    order = np.argsort(tonight.keys[carried], kind="stable")
    return Changes(
        carried_keys=tonight.keys[carried][order],
        carried_row_numbers=tonight.row_numbers[carried][order],
        revalidate=np.sort(tonight.row_numbers[~carried]),
        inserted=int((~known).sum()),
        updated=int((known & new_content).sum()),
        deleted_keys=np.sort(l_keys[~_member(l_keys, tonight.keys)]),
    )


def _member(values: np.ndarray, of: np.ndarray) -> np.ndarray:
    """``np.isin`` by a hash table (pandas): no sort of either array."""
    return pd.Series(values).isin(of).to_numpy()


def carried_rows(
    clean: pa.Table, changes: Changes, metadata: dict[str, pa.Scalar], dataset: DatasetDef
) -> pa.Table:
    """Last night's clean rows of the carried keys, as validation's standardised text, with
    tonight's metadata (row number from tonight's delivery), ready for the key buckets."""
    keys = key_hash(clean, dataset.key)
    wanted = _member(keys, changes.carried_keys)
    rows = clean.filter(pa.array(wanted))
    numbers = changes.carried_row_numbers[np.searchsorted(changes.carried_keys, keys[wanted])]
    n = rows.num_rows
    # the column order of a standardised batch: fields, metadata, ``*_norm``, ``_rejected``
    columns = {name: _as_text(rows.column(name)) for name in dataset.field_names}
    for meta in METADATA_FIELDS:
        if meta.name == "_row_number":
            columns[meta.name] = pa.array(numbers, pa.int64())
        else:
            columns[meta.name] = pa.repeat(metadata[meta.name], n).cast(meta.type)
    for f in dataset.fields:
        if f.rule == "enterprise_name":
            columns[f.name + NORMALISED_SUFFIX] = rows.column(f.name + NORMALISED_SUFFIX)
    columns[REJECTED] = pa.repeat(pa.scalar(False), n)
    return pa.table(columns)


def _as_text(values: pa.ChunkedArray) -> pa.ChunkedArray:
    """A clean (typed) column back in the canonical text standardisation produces."""
    kind = values.type
    # Arrow's own cast of whole-second timestamps and of dates is the canonical text
    # (``YYYY-MM-DD HH:MM:SS`` / ``YYYY-MM-DD``) and ≈ 10× faster than strftime
    if pa.types.is_timestamp(kind):  # in whole seconds, as standardisation writes them
        return values.cast(pa.timestamp("s")).cast(pa.string())
    return values if kind == pa.string() else values.cast(pa.string())


# --- the shell ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ChangePlan:
    """What validation of tonight's snapshot does instead of validating every row."""

    since: date  # the last good night compared with
    changes: Changes
    clean_path: str  # that night's clean partition, the source of the carried rows
    metadata: dict[str, pa.Scalar]  # tonight's constant metadata (_source, _batch_id, …)

    def to_validate(self, batches: Iterable[pa.Table], rows: int) -> Iterator[pa.Table]:
        """The raw rows that must be standardised and validated tonight, gathered into
        batches of up to ``rows`` (each GX run has a fixed cost); at least one batch."""
        wanted = pa.array(self.changes.revalidate, pa.int64())
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

    def carried(self, lake: Lake, dataset: DatasetDef) -> Iterator[pa.Table]:
        """The carried-forward rows, streamed from last night's clean partition."""
        for clean in lake.partition_batches(self.clean_path):
            rows = carried_rows(clean, self.changes, self.metadata, dataset)
            if rows.num_rows:
                yield rows

    def details(self) -> dict:
        c = self.changes
        return {
            "compared_with": self.since.isoformat(),
            "inserted": c.inserted,
            "updated": c.updated,
            "revalidated": len(c.revalidate),
        }


def plan_changes(
    dataset: DatasetDef, ds: date, *, lake: Lake, store: CatalogStore
) -> ChangePlan | None:
    """Compare tonight's snapshot with the last good night's, or None for full validation.

    None when the dataset is not a snapshot drop, on a first night, when the last night's
    validation did not succeed (breaker tripped, rows not conserved, nothing recorded), when
    its partitions are not the ones recorded, or when the delivered columns changed.
    """
    if dataset.source.load != "snapshot":
        return None
    last_raw = store.latest_partition_before(RAW_SOURCES, dataset.id, ds)
    if last_raw is None:
        return None
    since = last_raw.ds
    reason = _unusable(dataset, since, last_raw, lake=lake, store=store)
    tonight = lake.dataset_partition(RAW_SOURCES, dataset, ds)
    if reason is None and _columns(lake, tonight) != _columns(lake, last_raw.path):
        reason = "the delivered columns changed"
    if reason is not None:
        log.info("%s %s: full validation (%s)", dataset.id, ds, reason)
        return None
    clean = store.partition(RAW_CLEAN, dataset.id, since)
    clean_keys = np.concatenate(
        [key_hash(t, dataset.key) for t in _column_batches(lake, clean.path, dataset.key)] or [[]]
    ).astype(np.uint64)
    tonight_hashes = SnapshotHashes.of(lake.partition_batches(tonight), dataset)
    last_hashes = SnapshotHashes.of(lake.partition_batches(last_raw.path), dataset)
    changes = compare(tonight_hashes, last_hashes, clean_keys)
    return ChangePlan(since, changes, clean.path, _metadata(lake, tonight))


def _unusable(
    dataset: DatasetDef, since: date, last_raw, *, lake: Lake, store: CatalogStore
) -> str | None:
    """Why the last night cannot be compared with, or None when it can."""
    if any(f.type != "string" for f in dataset.fields if f.name in dataset.key):
        return "its key is not text"
    figures = store.quality_of(dataset.id, since)
    clean = store.partition(RAW_CLEAN, dataset.id, since)
    if figures is None or clean is None:
        return f"{since} was not validated"
    if not figures.conserved or figures.details.get("breaker_tripped", True):
        return f"the validation of {since} did not succeed"
    for record in (last_raw, clean):
        manifest = lake.read_manifest(record.path)
        if manifest is None or manifest.fingerprint != record.fingerprint:
            return f"the partition {record.path} is not the one recorded"
    return None


def _column_batches(lake: Lake, path: str, columns: list[str]) -> Iterator[pa.Table]:
    """Only ``columns`` of a committed partition, streamed (the keys of a clean snapshot)."""
    yield from lake.partition_batches(path, columns=columns)


def _columns(lake: Lake, path: str) -> list[str]:
    """The delivered column names of a raw partition (without reading its rows)."""
    return lake.partition_columns(path)


def _metadata(lake: Lake, path: str) -> dict[str, pa.Scalar]:
    """Tonight's metadata values that are the same on every row (one extraction)."""
    for batch in lake.partition_batches(path, batch_rows=1):
        return {m.name: batch.column(m.name)[0] for m in METADATA_FIELDS}
    return {}
