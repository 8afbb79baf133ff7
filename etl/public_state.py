"""Each incremental open-able dataset's current clean state, kept between nights (0021).

An incremental source's current state is every clean partition up to the night stacked
and the newest row per key kept (``publish_public.current_clean``): at full scale the
population's 3 million rows read and sorted again each night for ~60 thousand changes.
So the state a night computed (newest row per key, in key order) is kept, and the next
night stacks only its new partitions on it: the same rows in the same order, because a
later partition's row always wins over an earlier one's (decision 0021).

A kept state is used only when it is exactly what it says: made of the first clean
partitions of tonight's inputs (path and content fingerprint each), for the same catalog
entry, columns, publishing code and pyarrow (its *version*), its bytes those written (a
SHA-256 of the file beside it) with the rows written. Anything else is removed and the
state read from the clean zone. The files hold personal rows (keys, birth dates): an
owner-only folder (``var/cache/public-state`` in the night), each file written under a
``.part`` name and renamed, the record (``.json``) last.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pyarrow as pa

from catalog.definitions import DatasetDef
from catalog.files import code_digest, new_owner_file, owner_only_dir

log = logging.getLogger(__name__)

# The code that decides what a kept state holds (the public rules applied to its rows
# among it): a change to it is another version
STATE_MODULES = ("etl.publish_public", "etl.public_state", "masking.policy", "masking.operators")

Inputs = list[list[str]]  # the clean partitions a state is made of: [path, fingerprint] each


@dataclass(frozen=True)
class KeptState:
    """A dataset's newest row per key (key order) made of ``inputs``."""

    table: pa.Table
    inputs: Inputs


class PublicStateCache:
    """The kept states, one file per dataset and night (and its record), in ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = owner_only_dir(Path(folder))

    @staticmethod
    def version(dataset: DatasetDef, columns: Sequence[str]) -> str:
        digest = hashlib.sha256(dataset.model_dump_json().encode())
        digest.update(json.dumps(list(columns)).encode())
        digest.update(code_digest(*STATE_MODULES).encode())
        digest.update(pa.__version__.encode())
        return digest.hexdigest()[:16]

    def path(self, dataset: DatasetDef, ds: date, inputs: Inputs, version: str) -> Path:
        made_of = hashlib.sha256(json.dumps(inputs).encode()).hexdigest()[:16]
        return self.folder / f"{dataset.id}.{ds.isoformat()}.{made_of}.{version}.arrow"

    def read(self, dataset: DatasetDef, columns: Sequence[str], inputs: Inputs) -> KeptState | None:
        """The kept state made of the longest first part of ``inputs``, or None."""
        version = self.version(dataset, columns)
        best: tuple[Path, Inputs, dict] | None = None
        for record in self._files(dataset, ".json"):
            try:
                said = json.loads(record.read_text(encoding="utf-8"))
                made_of = [list(i) for i in said["inputs"]]
            except (OSError, ValueError, KeyError, TypeError):
                self._remove(record)
                continue
            usable = said.get("version") == version and made_of == inputs[: len(made_of)]
            if usable and made_of and (best is None or len(made_of) > len(best[1])):
                best = (record, made_of, said)
        if best is None:
            return None
        record, made_of, said = best
        try:
            data = record.with_suffix(".arrow").read_bytes()
            whole = hashlib.sha256(data).hexdigest() == said["sha256"]
            table = pa.ipc.open_file(pa.py_buffer(data)).read_all() if whole else None
            whole = (
                table is not None
                and table.num_rows == said["rows"]
                and table.column_names == list(columns)
            )
        except (OSError, KeyError, TypeError, pa.ArrowException):
            whole = False
        if not whole:
            log.warning("%s: kept public state does not match its record; not used", dataset.id)
            self._remove(record)
            return None
        return KeptState(table, made_of)

    def write(
        self, dataset: DatasetDef, columns: Sequence[str], ds: date, state: KeptState
    ) -> Path:
        """Keep ``state`` as of ``ds``; remove the dataset's states of other nights but the
        newest one before (a rerun of tonight with a new clean partition starts there)."""
        version = self.version(dataset, columns)
        path = self.path(dataset, ds, state.inputs, version)
        sink = pa.BufferOutputStream()
        options = pa.ipc.IpcWriteOptions(compression="lz4")
        with pa.ipc.new_file(sink, state.table.schema, options=options) as writer:
            writer.write_table(state.table)
        data = sink.getvalue()
        said = {
            "version": version,
            "inputs": state.inputs,
            "rows": state.table.num_rows,
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        record = path.with_suffix(".json")
        for target, content in ((path, data), (record, json.dumps(said).encode())):
            part = target.with_name(f"{target.name}.{os.getpid()}.part")
            try:
                with new_owner_file(part).open("wb") as out:
                    out.write(memoryview(content))
                os.replace(part, target)
            finally:
                part.unlink(missing_ok=True)
        nights = {
            p: p.name.removeprefix(f"{dataset.id}.").split(".")[0] for p in self._files(dataset)
        }
        before = max((n for n in nights.values() if n < ds.isoformat()), default=None)
        for old, night in nights.items():
            if old not in (path, record) and night != before:
                old.unlink(missing_ok=True)
        return path

    def _files(self, dataset: DatasetDef, suffix: str = "") -> list[Path]:
        return [
            p
            for p in self.folder.glob(f"{dataset.id}.*{suffix}")
            if p.is_file() and p.suffix in (".arrow", ".json")
        ]

    @staticmethod
    def _remove(record: Path) -> None:
        record.unlink(missing_ok=True)
        record.with_suffix(".arrow").unlink(missing_ok=True)
