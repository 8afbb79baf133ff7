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
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from catalog.files import new_owner_file, owner_only_dir

ROWS_PER_BUCKET = 1_000_000
REJECTED = "_rejected"  # rows that take part in "which version is newest" but are never kept
KEY_HASH = "_key_hash"  # a spooled row's key hash, kept beside it (never written out)


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


# --- 64-bit hashes of text columns, over the Arrow bytes (no pandas object strings) ---


def key_hash(table: pa.Table, key: list[str]) -> np.ndarray:
    """A 64-bit hash of the key columns (as text, nulls distinct) of every row."""
    columns = [pc.fill_null(table.column(k).cast(pa.string()), NULL_SENTINEL) for k in key]
    joined = (
        pc.binary_join_element_wise(*columns, FIELD_SEPARATOR) if len(columns) > 1 else columns[0]
    )
    return hash_strings(joined.combine_chunks() if isinstance(joined, pa.ChunkedArray) else joined)


NULL_SENTINEL = "\x00"  # a null is not an empty string
FIELD_SEPARATOR = "\x1f"  # ASCII unit separator: ("a", "bc") and ("ab", "c") differ
_ROWS_PER_BLOCK = 32_768
_LONG = 512  # bytes: longer rows (a 10 MB field) are hashed one by one, not padded


def hash_strings(values: pa.Array) -> np.ndarray:
    """A 64-bit hash of each string (null: a fixed value), vectorised over the Arrow bytes.

    Rows are laid side by side as zero-padded 8-byte words and folded with the splitmix64
    finaliser, one word column at a time; the length is mixed in first, so padding cannot
    make two strings equal. Not cryptographic: deliveries are not adversarial here, and a
    collision would need two versions of one key to meet in 64 bits.
    """
    values = values.cast(pa.large_string())
    n = len(values)
    out = np.empty(n, dtype=np.uint64)
    if n == 0:
        return out
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int64)[
        values.offset : values.offset + n + 1
    ]
    data = (
        np.frombuffer(values.buffers()[2], dtype=np.uint8)
        if values.buffers()[2]
        else np.zeros(1, np.uint8)
    )
    lengths = np.diff(offsets)
    long = np.flatnonzero(lengths > _LONG)
    short_lengths = np.where(lengths > _LONG, 0, lengths)
    for start in range(0, n, _ROWS_PER_BLOCK):
        stop = min(n, start + _ROWS_PER_BLOCK)
        out[start:stop] = _hash_block(data, offsets[start:stop], short_lengths[start:stop])
    for row in long:  # rare: hashed whole with the same fold, one row at a time
        out[row] = _hash_block(data, offsets[row : row + 1], lengths[row : row + 1])[0]
    nulls = values.is_null().to_numpy(zero_copy_only=False)
    out[nulls] = np.uint64(0x5BD1E9955BD1E995)
    return out


_LOW_BYTES = np.array([(1 << (8 * k)) - 1 for k in range(8)] + [2**64 - 1], dtype=np.uint64)


def _hash_block(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Hash rows ``data[start:start + length]``, eight (little-endian) bytes at a time."""
    first, end = int(starts[0]), int(starts[-1] + lengths[-1])
    block = np.zeros(end - first + 8, dtype=np.uint8)  # zero tail: the last word may overrun
    block[: end - first] = data[first:end]
    # a uint64 at every byte offset (unaligned, strided by one byte): no byte-level gathers
    words = np.ndarray((len(block) - 7,), dtype="<u8", buffer=block, strides=(1,))
    local = starts - first
    h = _mix(lengths.astype(np.uint64) ^ np.uint64(0x9E3779B97F4A7C15))
    for k in range(int(-(-lengths.max() // 8)) if len(lengths) else 0):
        left = np.clip(lengths - 8 * k, 0, 8)
        word = words[np.minimum(local + 8 * k, len(words) - 1)] & _LOW_BYTES[left]
        h = np.where(left > 0, _mix(h ^ word), h)
    return h


def _mix(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser: every input bit flips about half the output bits."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@dataclass
class DedupCounts:
    collapsed: int = 0  # older (not rejected) versions of a key that are not published
    exact: int = 0  # of which identical to the newest version in every catalog field


class BucketSpool:
    """Spools tables into ``n`` on-disk hash buckets of the key; yields them deduplicated.

    Rows flagged in a ``_rejected`` column (quarantined ones) still count when deciding
    which version of a key is the newest, so a stale version never passes for current.
    They are spooled apart, only the columns that order a key's versions: the passing rows
    of a bucket are then usually all its newest ones, in key order already, and leave
    deduplication as they were read back (no filter copying every column), and the key
    hash each row was bucketed by is kept beside it instead of computed again.
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
        self.sort_keys = [(k, "ascending") for k in key]
        if order_by:
            self.sort_keys.append((order_by, "descending"))
        self.sort_keys.append(("_row_number", "descending"))
        self.buckets = max(1, -(-expected_rows // ROWS_PER_BUCKET))
        self.folder = SpillFolder("dedup", workdir)
        self.dir = self.folder.path
        self.writers: dict[int, SpillWriter] = {}
        self.rejected: dict[int, SpillWriter] = {}  # the rejected rows' ordering columns
        self.counts = DedupCounts()
        self.rows_out = 0

    def add(self, table: pa.Table) -> np.ndarray:
        """Spool ``table``'s rows into their buckets; the key hash of each row."""
        hashes = key_hash(table, self.key) if table.num_rows else np.zeros(0, np.uint64)
        if table.num_rows == 0:
            return hashes
        rejected = (
            table.column(REJECTED).to_numpy(zero_copy_only=False).astype(bool)
            if REJECTED in table.column_names
            else np.zeros(table.num_rows, dtype=bool)
        )
        if REJECTED in table.column_names:
            table = table.drop_columns([REJECTED])
        table = table.append_column(KEY_HASH, pa.array(hashes, pa.uint64()))
        bucket_of = hashes % np.uint64(self.buckets)
        for b in np.unique(bucket_of):
            b = int(b)
            here = bucket_of == b if self.buckets > 1 else np.ones(table.num_rows, dtype=bool)
            passing = here & ~rejected
            if passing.all():
                self._write(self.writers, b, table)
            elif passing.any():
                self._write(self.writers, b, table.filter(pa.array(passing)))
            if rejected.any() and (failing := here & rejected).any():
                ordering = [name for name, _ in self.sort_keys] + [KEY_HASH]
                self._write(self.rejected, b, table.select(ordering).filter(pa.array(failing)))
        return hashes

    def _write(self, writers: dict[int, SpillWriter], b: int, part: pa.Table) -> None:
        if b not in writers:
            kind = "rejected" if writers is self.rejected else "rows"
            writers[b] = SpillWriter(self.dir / f"{b}.{kind}.arrows", part.schema)
        writers[b].write(part)

    def deduplicated(self) -> Iterator[pa.Table]:
        """Each bucket with only the newest row per key (ties: the later delivered row)."""
        for _bucket, table in self.deduplicated_buckets():
            yield table

    def deduplicated_buckets(self) -> Iterator[tuple[int, pa.Table]]:
        """``(bucket, its newest rows in key order)``, in ascending bucket order (buckets
        without rows are left out)."""
        try:
            for writer in [*self.writers.values(), *self.rejected.values()]:
                writer.close()
            for b in sorted(set(self.writers) | set(self.rejected)):
                passing = self.writers[b].read() if b in self.writers else None
                failing = self.rejected[b].read() if b in self.rejected else None
                latest = self._latest_per_key(passing, failing)
                if latest is None:
                    continue
                self.rows_out += latest.num_rows
                yield b, latest
        finally:
            self.close()

    def close(self) -> None:
        """Remove the bucket files (they hold personal data), whatever happened."""
        for writer in [*self.writers.values(), *self.rejected.values()]:
            writer.close()
        self.folder.remove()

    def _latest_per_key(
        self, passing: pa.Table | None, failing: pa.Table | None
    ) -> pa.Table | None:
        """The newest passing row of each key whose newest row passed, in key order (only
        when the sort moved rows or dropped some are the kept rows' columns moved)."""
        if passing is None:  # every row of the bucket was rejected: nothing to publish
            return None
        ordering = [name for name, _ in self.sort_keys] + [KEY_HASH]
        versions = passing.select(ordering)
        if failing is not None:
            versions = pa.concat_tables([versions, failing.cast(versions.schema)])
        order = pc.sort_indices(versions, sort_keys=self.sort_keys).to_numpy()
        hashes = versions.column(KEY_HASH).to_numpy()[order]
        newest = np.ones(len(hashes), dtype=bool)
        newest[1:] = hashes[1:] != hashes[:-1]
        rejected = order >= passing.num_rows  # the failing rows were put after the passing
        # a key whose newest version was rejected publishes none: an older one is not current
        kept = newest & ~rejected
        older = ~newest & ~rejected
        if older.any():
            self.counts.collapsed += int(older.sum())
            group_start = np.maximum.accumulate(np.where(newest, np.arange(len(newest)), 0))
            compared = np.flatnonzero(older)
            heads = group_start[compared]
            # an older version equal in every field to a rejected newest one would have been
            # rejected too (a row's checks see its fields alone): only passing heads compare
            valid_head = ~rejected[heads]
            rows = np.concatenate([order[compared[valid_head]], order[heads[valid_head]]])
            content = key_hash(passing.take(pa.array(rows)), self.fields)
            half = int(valid_head.sum())
            self.counts.exact += int((content[:half] == content[half:]).sum())
        return taken_in_order(passing, order[kept]).drop_columns([KEY_HASH])


def taken_in_order(table: pa.Table, rows: np.ndarray) -> pa.Table:
    """``table.take(rows)``; a filter when ``rows`` ascend (a delivery exported in key
    order, the usual case: the sort changed nothing), which moves the same rows for about
    a fifth of a take's work, and the table itself when every row is kept in place."""
    if len(rows) and np.all(rows[1:] > rows[:-1]):
        if len(rows) == table.num_rows:
            return table
        keep = np.zeros(table.num_rows, dtype=bool)
        keep[rows] = True
        return table.filter(pa.array(keep))
    return table.take(pa.array(rows))


class SpillWriter:
    """One spill file in Arrow's IPC stream format: written once, read back once by the
    same process, so no Parquet encoding and decoding. Uncompressed, and read back memory
    mapped: the pages are still in the page cache, so reading costs next to nothing (LZ4
    cost ≈ 1 s a 2 M-row dataset, to save disk the file occupies for minutes)."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.path = new_owner_file(path)
        self._sink = pa.OSFile(str(path), "wb")
        self._writer = pa.ipc.new_stream(self._sink, schema)

    def write(self, table: pa.Table) -> None:
        self._writer.write_table(table)

    def close(self) -> None:
        if not self._sink.closed:
            self._writer.close()
            self._sink.close()

    def read(self) -> pa.Table:
        """The rows, backed by the mapped file (they stay readable once it is removed)."""
        with pa.memory_map(str(self.path), "r") as source:
            return pa.ipc.open_stream(source).read_all()


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
