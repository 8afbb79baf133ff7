"""Last night's projected person mentions, kept for the clean rows that do not change.

An incremental dataset's older clean partitions stay as they were committed: night after
night, unification would read them again and compute the same mentions and comparison keys
(3 million population rows at full scale, the biggest part of reading the night). The cache
keeps those mentions, one Parquet file per clean partition, named by the partition's
fingerprint (the SHA-256 of its data files) and by the bytes of the code that projects
mentions — a partition written again, or a change to the projection, is a different name.

A snapshot register (insured persons, health records: 3.8 million rows at full scale) is a
new partition every night, yet well under 1 % of its rows change. Each cached mention
keeps the hash of the source row it was projected from (``source_hash``), so tonight's
rows whose key and hash are last night's take last night's mention
(:class:`EarlierMentions`) and only the others are projected: a mention is a function of
its source row alone, so the result is the same as projecting them all (tested).

The files hold personal data: they live in an owner-only folder (``var/cache/mentions/``
in the night), appear under their final name only when complete (a killed run leaves a
``.part`` file, removed next time), and the files a night did not use (a partition
written again, older code) are removed after its step (docs/decisions/0014).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from catalog.files import code_digest, owner_only_dir

# the code whose output the cache holds: a change to any of these renames every file
PROJECTION_MODULES = ("etl.unify_person", "etl.matching", "catalog.identifiers", "etl.unify_cache")
SOURCE_HASH = "source_hash"  # per cached mention: the hash of the clean row it came from


class MentionCache:
    """Projected mentions per clean partition, in a private folder (created owner-only)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        owner_only_dir(self.folder)
        # DuckDB computes ``source_hash``: its version is part of what the files hold
        self.version = (
            code_digest(*PROJECTION_MODULES)[:12] + "-duckdb" + duckdb.__version__.replace(".", "_")
        )

    def path(self, dataset_id: str, night: date, fingerprint: str) -> Path:
        digest = fingerprint.removeprefix("sha256:")[:24]
        return self.folder / f"{dataset_id}.{night.isoformat()}.{digest}.{self.version}.parquet"

    def latest_before(self, dataset_id: str, night: date) -> Path | None:
        """The newest complete file of ``dataset_id`` from a night before ``night`` (this
        code's), or None: a snapshot register's last projected night."""
        start = len(dataset_id) + 1
        older = [
            (p.name[start : start + 10], p)
            for p in self.folder.glob(f"{dataset_id}.*.{self.version}.parquet")
            if p.name[start : start + 10] < night.isoformat()
        ]
        return max(older)[1] if older else None

    def holds(self, path: Path, rows: int) -> bool:
        """Whether ``path`` holds the ``rows`` mentions of its whole partition (one per clean
        row); a file that is damaged or holds another count is removed, to be made again."""
        if not path.exists():
            return False
        try:
            whole = pq.ParquetFile(path).metadata.num_rows == rows
        except (OSError, pa.ArrowException):
            whole = False
        if not whole:
            path.unlink(missing_ok=True)
        return whole

    def read(self, path: Path) -> Iterable[pa.Table]:
        """The file's mentions in batches, each with its ``source_hash``."""
        for batch in pq.ParquetFile(path).iter_batches(262_144):
            yield pa.Table.from_batches([batch])

    def earlier(self, path: Path | None, key: str) -> EarlierMentions | None:
        """``path``'s mentions to be taken by tonight's unchanged rows, or None when there is
        no such file or it cannot be read whole (then every row is projected)."""
        if path is None:
            return None
        try:
            return EarlierMentions(pq.read_table(path), key)
        except (OSError, pa.ArrowException, KeyError, ValueError):
            path.unlink(missing_ok=True)
            return None

    def writer(self, path: Path) -> CacheWriter:
        return CacheWriter(path)

    def keep_only(self, paths: set[Path]) -> list[Path]:
        """Remove every file but ``paths``: the others name a partition that was written
        again or older projection code (or are ``.part`` files a killed run left)."""
        removed = []
        for path in self.folder.iterdir():
            if path not in paths:
                path.unlink(missing_ok=True)
                removed.append(path)
        return removed


class CacheWriter:
    """One partition's mentions, written as they are projected; named only when complete."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.part = path.with_suffix(".part")
        self._writer: pq.ParquetWriter | None = None

    def write(self, mentions: pa.Table) -> None:
        if self._writer is None:
            self._writer = pq.ParquetWriter(
                self.part, mentions.schema, compression="none", write_statistics=False
            )
        self._writer.write_table(mentions)

    def finish(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            os.chmod(self.part, 0o600)  # personal data: owner-only, whatever the umask
            os.replace(self.part, self.path)

    def abandon(self) -> None:
        """Drop an unfinished file (after :meth:`finish` there is nothing to drop)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self.part.unlink(missing_ok=True)


def source_hash(batch: pa.Table) -> pa.Array:
    """A 64-bit hash of each row over every column read (nulls distinct from empty text).

    DuckDB's ``hash(c1, c2, …)`` over the Arrow batch: vectorised, no copy. It is stored
    across nights, so the cache's name carries DuckDB's version (:attr:`MentionCache.version`).
    """
    names = ", ".join('"' + c.replace('"', '""') + '"::VARCHAR' for c in batch.column_names)
    with duckdb.connect() as con:
        con.register("clean", batch)
        hashed = con.sql(f"SELECT hash({names}) AS h FROM clean").fetchnumpy()["h"]
    return pa.array(np.asarray(hashed, dtype=np.uint64))


class EarlierMentions:
    """Last night's mentions of a snapshot register, looked up by source key and row hash.

    Both nights' partitions hold each key once, so a key finds at most one earlier mention;
    it is taken only when the row's hash is the one it was projected from.
    """

    def __init__(self, mentions: pa.Table, key: str) -> None:
        self.mentions = mentions
        self.key = key
        keys = mentions.column("source_key").to_pandas()
        self._index = pd.Index(keys)
        if not self._index.is_unique:
            raise ValueError("a snapshot's cached mentions hold a key twice")
        self._index.get_indexer(keys[:1])  # the hash table is built here, on one thread
        self._hashes = mentions.column(SOURCE_HASH).to_numpy()

    def unchanged(self, batch: pa.Table, hashes: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        """Per row of ``batch``: whether last night holds its mention, and that mention's row."""
        keys = batch.column(self.key).cast(pa.string()).to_pandas()
        at = self._index.get_indexer(keys)
        found = at >= 0
        found[found] = self._hashes[at[found]] == hashes.to_numpy()[found]
        return found, at[found]
