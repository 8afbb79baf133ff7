"""Last night's projected person mentions, kept for the clean partitions that do not change.

An incremental dataset's older clean partitions stay as they were committed: night after
night, unification would read them again and compute the same mentions and comparison keys
(3 million population rows at full scale, the biggest part of reading the night). The cache
keeps those mentions, one Parquet file per clean partition, named by the partition's
fingerprint (the SHA-256 of its data files) and by the bytes of the code that projects
mentions — a partition written again, or a change to the projection, is a different name.

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

import pyarrow as pa
import pyarrow.parquet as pq

from catalog.files import code_digest, owner_only_dir

# the code whose output the cache holds: a change to any of these renames every file
PROJECTION_MODULES = ("etl.unify_person", "etl.matching", "catalog.identifiers")


class MentionCache:
    """Projected mentions per clean partition, in a private folder (created owner-only)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        owner_only_dir(self.folder)
        self.version = code_digest(*PROJECTION_MODULES)[:12]

    def path(self, dataset_id: str, night: date, fingerprint: str) -> Path:
        digest = fingerprint.removeprefix("sha256:")[:24]
        return self.folder / f"{dataset_id}.{night.isoformat()}.{digest}.{self.version}.parquet"

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
        for batch in pq.ParquetFile(path).iter_batches(262_144):
            yield pa.Table.from_batches([batch])

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
