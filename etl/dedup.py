"""Collapse repeated keys inside one source to their latest version, in bounded memory.

Valid rows are spooled into hash buckets of the key on disk (docs/architecture.md §9); each
bucket is then deduplicated on its own, so memory holds one bucket, never the whole dataset. The
same buckets are the unit of parallel work when this runs on more machines.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

ROWS_PER_BUCKET = 1_000_000
REJECTED = "_rejected"  # rows that take part in "which version is newest" but are never kept


def key_hash(table: pa.Table, key: list[str]) -> np.ndarray:
    """A stable 64-bit hash of the key columns of every row."""
    frame = table.select(key).to_pandas(types_mapper=pd.ArrowDtype)
    return pd.util.hash_pandas_object(frame.astype("string"), index=False).to_numpy()


@dataclass
class DedupCounts:
    collapsed: int = 0  # older (not rejected) versions of a key that are not published
    exact: int = 0  # of which identical to the newest version in every catalog field


class BucketSpool:
    """Spools tables into ``n`` on-disk hash buckets of the key; yields them deduplicated.

    Rows flagged in a ``_rejected`` column (quarantined ones) still count when deciding
    which version of a key is the newest, so a stale version never passes for current.
    """

    def __init__(
        self,
        key: list[str],
        order_by: str | None,
        fields: list[str],
        expected_rows: int,
        workdir: Path | None = None,
    ) -> None:
        self.key, self.order_by, self.fields = key, order_by, fields
        self.buckets = max(1, -(-expected_rows // ROWS_PER_BUCKET))
        if workdir is not None:
            workdir.mkdir(parents=True, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(prefix="dedup-", dir=workdir))
        self.writers: dict[int, pq.ParquetWriter] = {}
        self.counts = DedupCounts()
        self.rows_out = 0

    def add(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        bucket_of = key_hash(table, self.key) % self.buckets
        for b in np.unique(bucket_of):
            part = table.filter(pa.array(bucket_of == b))
            if b not in self.writers:
                self.writers[b] = pq.ParquetWriter(self.dir / f"{b}.parquet", part.schema)
            self.writers[b].write_table(part)

    def deduplicated(self) -> Iterator[pa.Table]:
        """Each bucket with only the newest row per key (ties: the later delivered row)."""
        try:
            for writer in self.writers.values():
                writer.close()
            for b in sorted(self.writers):
                latest = self._latest_per_key(pq.read_table(self.dir / f"{b}.parquet"))
                self.rows_out += latest.num_rows
                yield latest
        finally:
            self.close()

    def close(self) -> None:
        """Remove the bucket files (they hold personal data), whatever happened."""
        for writer in self.writers.values():
            writer.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _latest_per_key(self, table: pa.Table) -> pa.Table:
        sort = [(k, "ascending") for k in self.key]
        if self.order_by:
            sort.append((self.order_by, "descending"))
        sort.append(("_row_number", "descending"))
        table = table.sort_by(sort)
        hashes = key_hash(table, self.key)
        newest = np.ones(len(hashes), dtype=bool)
        newest[1:] = hashes[1:] != hashes[:-1]
        rejected = (
            table.column(REJECTED).to_numpy(zero_copy_only=False).astype(bool)
            if REJECTED in table.column_names
            else np.zeros(len(hashes), dtype=bool)
        )
        # a key whose newest version was rejected publishes none: an older one is not current
        kept = newest & ~rejected
        older = ~newest & ~rejected
        if older.any():
            self.counts.collapsed += int(older.sum())
            content = pd.util.hash_pandas_object(
                table.select(self.fields).to_pandas().astype("string"), index=False
            ).to_numpy()
            group_start = np.maximum.accumulate(np.where(newest, np.arange(len(newest)), 0))
            self.counts.exact += int(((content == content[group_start]) & older).sum())
        table = table.filter(pa.array(kept))
        return table.drop_columns([REJECTED]) if REJECTED in table.column_names else table


class RowSpill:
    """Rows parked on disk until a partition is written from them (bounded memory)."""

    def __init__(self, workdir: Path | None = None) -> None:
        if workdir is not None:
            workdir.mkdir(parents=True, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(prefix="spill-", dir=workdir))
        self.writer: pq.ParquetWriter | None = None
        self.rows = 0

    def add(self, table: pa.Table) -> None:
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.dir / "rows.parquet", table.schema)
        self.writer.write_table(table)
        self.rows += table.num_rows

    def batches(self) -> Iterator[pa.RecordBatch]:
        try:
            if self.writer is not None:
                self.writer.close()
                yield from pq.ParquetFile(self.dir / "rows.parquet").iter_batches(65_536)
        finally:
            self.close()

    def close(self) -> None:
        """Remove the spilled rows (they hold personal data), whatever happened."""
        if self.writer is not None:
            self.writer.close()
        shutil.rmtree(self.dir, ignore_errors=True)
