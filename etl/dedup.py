"""Collapse repeated keys inside one source to their latest version, in bounded memory.

Valid rows are spooled into hash buckets of the key on disk (docs/architecture.md §9); each
bucket is then deduplicated on its own, so memory holds one bucket, never the whole dataset. The
same buckets are the unit of parallel work when this runs on more machines.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from catalog.files import new_owner_file, owner_only_dir

ROWS_PER_BUCKET = 1_000_000
REJECTED = "_rejected"  # rows that take part in "which version is newest" but are never kept


class SpillFolder:
    """A 0700 folder of spill files, locked by its owning process while that process lives.

    Spill files hold delivered rows (personal data). A process that is killed (out of
    memory, SIGKILL, a timeout) cannot remove its folder, so the folder carries a lock file
    held with ``flock``: the kernel drops the lock when the process dies, and the next
    validation (:func:`remove_orphaned_spills`) removes every folder whose lock it can take.
    The folder is named ``<kind>-<pid>-…`` so people can tell whose it is.
    """

    LOCK = ".owner.lock"

    def __init__(self, kind: str, workdir: Path | None) -> None:
        if workdir is not None:
            owner_only_dir(workdir)
        self.path = Path(tempfile.mkdtemp(prefix=f"{kind}-{os.getpid()}-", dir=workdir))
        self._lock = open(self.path / self.LOCK, "w")  # noqa: SIM115 - held until remove()
        fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def remove(self) -> None:
        """Remove the folder and its files, whatever happened; then let go of the lock."""
        shutil.rmtree(self.path, ignore_errors=True)
        if not self._lock.closed:
            self._lock.close()


SPILL_KINDS = ("dedup", "spill")


def remove_orphaned_spills(workdir: Path) -> list[Path]:
    """Remove spill folders under ``workdir`` whose owning process is gone; return them.

    A folder whose lock can be taken has no living owner. A folder without a lock file
    (written before locks, or its owner killed between creating it and locking it) is
    judged by the process id in its name.
    """
    removed: list[Path] = []
    if not workdir.is_dir():
        return removed
    for folder in sorted(workdir.iterdir()):
        kind, _, rest = folder.name.partition("-")
        if kind not in SPILL_KINDS or not folder.is_dir():
            continue
        if _owner_alive(folder, rest.partition("-")[0]):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def _owner_alive(folder: Path, pid_text: str) -> bool:
    lock = folder / SpillFolder.LOCK
    try:
        with open(lock) as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True  # held: its owner is alive (maybe this very process)
            return False
    except FileNotFoundError:
        pass
    if not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's living process
    return True


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
        self.folder = SpillFolder("dedup", workdir)
        self.dir = self.folder.path
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
                path = new_owner_file(self.dir / f"{b}.parquet")
                self.writers[b] = pq.ParquetWriter(path, part.schema)
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
        self.folder.remove()

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
        self.folder = SpillFolder("spill", workdir)
        self.dir = self.folder.path
        self.writer: pq.ParquetWriter | None = None
        self.rows = 0

    def add(self, table: pa.Table) -> None:
        if self.writer is None:
            path = new_owner_file(self.dir / "rows.parquet")
            self.writer = pq.ParquetWriter(path, table.schema)
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
        self.folder.remove()
