"""The unification state a night keeps for the next one (docs/decisions/0023).

After each unification the person side of the workspace is kept in one private DuckDB file,
``var/cache/unify/state.duckdb`` (owner-only, like the raw zone: it holds personal data):

- ``mention``: every current person mention with its comparison keys, its anchor, rule,
  score and person id (the person crosswalk, with what it was computed from);
- ``link``: each ID-less mention's link to its best partner;
- ``person``: the unified person table as written; ``id_merged``: valid IDs joined to
  another one's person;
- ``person_name``: the kept model's name shares; ``source_row``: each snapshot source row's
  key and content hash (what tonight's delivery is compared with);
- ``meta``: the :class:`StateMark` — the night it is of, the fingerprints of the two person
  tables it wrote, the code and DuckDB version that wrote it, the model and the night it
  was estimated on, and the incremental sources' clean partitions it read.

The state is only ever used when its mark matches the lake: the previous unified night, its
committed person tables' fingerprints, this code, every incremental source's older clean
partitions unchanged. Anything else (no state, a rerun of a night, a partition written
again, a model older than the rebuild interval) rebuilds, and the rebuild writes a new
state. A night writes the next state beside the old one and renames it into place after
the lake's commit, so a killed night leaves the old state (which then no longer matches).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path

import duckdb

from catalog.definitions import Catalog
from catalog.files import code_digest, owner_only_dir
from catalog.store import CatalogStore
from etl.unify_person import FrozenModel
from etl.unify_workspace import Workspace, process_alive
from etl.zones import RAW_CLEAN, RAW_UNIFIED

# the code whose output the state is: a change to any of it rebuilds once
STATE_MODULES = (
    "etl.unify",
    "etl.unify_person",
    "etl.unify_incremental",
    "etl.unify_state",
    "etl.unify_ids",
    "etl.matching",
    "etl.changes",
)
STATE_TABLES = ("mention", "link", "person", "id_merged", "person_name", "source_row", "meta")
PERSON_TABLES = ("unified.person", "unified.person_xref")


@dataclass(frozen=True)
class StateMark:
    """What a kept state is of (its ``meta`` row), compared with the lake before it is used."""

    ds: date
    fingerprints: dict[str, str]  # unified.person / unified.person_xref as committed
    code: str
    model: dict  # FrozenModel.describe()
    model_on: date
    partitions: dict[str, list[str]]  # incremental source → its clean partitions' fingerprints

    def to_json(self) -> str:
        out = asdict(self)
        out["ds"], out["model_on"] = self.ds.isoformat(), self.model_on.isoformat()
        return json.dumps(out, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> StateMark:
        raw = json.loads(text)
        raw["ds"] = date.fromisoformat(raw["ds"])
        raw["model_on"] = date.fromisoformat(raw["model_on"])
        return cls(**raw)


def state_code() -> str:
    """The digest of the state's code and the DuckDB that hashed its rows."""
    return f"{code_digest(*STATE_MODULES)}/duckdb-{duckdb.__version__}"


def clean_fingerprints(catalog: Catalog, store: CatalogStore, ds: date) -> dict[str, list[str]]:
    """Per incremental source, the fingerprints of its clean partitions up to ``ds``, oldest
    first: a state that read a prefix of them reads only the rest."""
    out: dict[str, list[str]] = {}
    ids = {d.id for d in catalog.datasets if d.source.load == "incremental"}
    for p in sorted(store.partitions(zone=RAW_CLEAN), key=lambda p: p.ds):
        if p.dataset_id in ids and p.ds <= ds:
            out.setdefault(p.dataset_id, []).append(p.fingerprint)
    return out


class UnifyState:
    """The kept state's folder: ``state.duckdb`` and, while a night writes it, the next one
    (named by its process; one left by a killed process is removed)."""

    def __init__(self, folder: Path) -> None:
        self.folder = owner_only_dir(Path(folder))
        self.path = self.folder / "state.duckdb"
        # this process's next state: two nights unified at once never write one file
        self.next_path = self.folder / f"state.next-{os.getpid()}-{uuid.uuid4().hex[:8]}.duckdb"
        self.working: Path | None = None  # tonight's copy (:meth:`copy_into`)
        for left in self.folder.glob("state.next-*.duckdb*"):  # by a night that was killed
            pid = left.name.split("-")[1]
            if pid.isdigit() and not process_alive(int(pid)):
                left.unlink(missing_ok=True)

    def mark(self) -> StateMark | None:
        """The kept state's mark, or None (no state, or not one this code can read)."""
        if not self.path.exists():
            return None
        try:
            with duckdb.connect(str(self.path), read_only=True) as con:
                rows = con.execute("SELECT value FROM meta WHERE key = 'mark'").fetchall()
            return StateMark.from_json(rows[0][0]) if rows else None
        except (duckdb.Error, ValueError, KeyError, TypeError):
            return None

    def usable(
        self,
        catalog: Catalog,
        store: CatalogStore,
        ds: date,
        previous: date | None,
        rebuild_after_days: int,
    ) -> tuple[StateMark | None, str]:
        """The mark when tonight may start from the kept state, else None and why not."""
        mark = self.mark()
        if mark is None:
            return None, "no kept state"
        if previous is None or mark.ds != previous:
            return None, "the kept state is not of the previous unified night"
        if not _committed_as_written(store, mark):
            return None, f"the unified persons of {previous} are not the ones the state wrote"
        if mark.code != state_code():
            return None, "the unification code changed since the state was written"
        if (ds - mark.model_on).days >= rebuild_after_days:
            return None, f"the model is {(ds - mark.model_on).days} nights old: re-estimated"
        tonight = clean_fingerprints(catalog, store, ds)
        for dataset_id, read in mark.partitions.items():
            if tonight.get(dataset_id, [])[: len(read)] != read:
                return None, f"{dataset_id}: a clean partition the state read was written again"
        return mark, "incremental"

    def frozen_model(self, mark: StateMark) -> FrozenModel:
        with duckdb.connect(str(self.path), read_only=True) as con:
            name_tf = con.sql("SELECT k_name, name_tf FROM person_name").to_arrow_table()
        return FrozenModel.of(mark.model, name_tf, mark.model_on)

    def copy_into(self, folder: Path) -> Path:
        """A working copy of the kept state in a (private) workspace folder."""
        self.working = folder / "state.duckdb"
        shutil.copyfile(self.path, self.working)
        os.chmod(self.working, 0o600)
        return self.working

    def kept_model(self, store: CatalogStore, ds: date, rebuild_days: int) -> FrozenModel | None:
        """The kept model, while it is younger than ``rebuild_days`` nights, this code's, and
        this lake's (the night the state is of is still committed as the state wrote it)."""
        mark = self.mark()
        if mark is None or mark.code != state_code() or mark.model_on > ds:
            return None
        if (ds - mark.model_on).days >= rebuild_days or not _committed_as_written(store, mark):
            return None
        try:
            return self.frozen_model(mark)
        except duckdb.Error:
            return None

    def write_next(self, ws: Workspace, tables: dict[str, str]) -> None:
        """Write the next state from the workspace: ``tables`` maps each state table to the
        query that fills it (its mark follows, :meth:`mark_next`)."""
        self.discard_next()
        con = ws.con
        con.execute(f"ATTACH '{self.next_path}' AS next_state")
        try:
            for name, query in tables.items():
                con.execute(f"CREATE TABLE next_state.{name} AS {query}")
            con.execute("CREATE TABLE next_state.meta (key VARCHAR, value VARCHAR)")
        finally:
            con.execute("DETACH next_state")
        os.chmod(self.next_path, 0o600)

    def mark_next(self, mark: StateMark) -> None:
        """Record the next state's mark (once the tables it wrote are known)."""
        with duckdb.connect(str(self.next_path)) as con:
            con.execute("INSERT INTO meta VALUES ('mark', ?)", [mark.to_json()])

    def keep_next(self, ws: Workspace, mark: StateMark) -> None:
        """Turn the working copy (the workspace's own database) into the next state:
        drop the night's working tables, record the mark, checkpoint, move it beside the
        state. The workspace is closed after this."""
        con = ws.con
        names = con.execute("""
            SELECT table_name, 'TABLE' FROM duckdb_tables()
            WHERE database_name = current_database() AND NOT temporary
            UNION ALL SELECT view_name, 'VIEW' FROM duckdb_views()
            WHERE database_name = current_database() AND NOT internal AND NOT temporary
        """).fetchall()
        for name, kind in names:
            if name not in STATE_TABLES:
                con.execute(f"DROP {kind} IF EXISTS {name}")
        con.execute("DELETE FROM meta")
        con.execute("INSERT INTO meta VALUES ('mark', ?)", [mark.to_json()])
        con.execute("CHECKPOINT")
        con.close()
        self.discard_next()
        shutil.move(self.working, self.next_path)

    def publish_next(self) -> None:
        """The next state becomes the state (after the lake's commit)."""
        if self.next_path.exists():
            os.replace(self.next_path, self.path)

    def discard_next(self) -> None:
        for path in (self.next_path, self.next_path.with_suffix(".duckdb.wal")):
            path.unlink(missing_ok=True)


def _committed_as_written(store: CatalogStore, mark: StateMark) -> bool:
    """Whether the night the state is of is committed with the person tables it wrote."""
    for name in PERSON_TABLES:
        record = store.partition(RAW_UNIFIED, name, mark.ds)
        if record is None or record.fingerprint != mark.fingerprints.get(name):
            return False
    return True
