"""The kept public state (decision 0021): an incremental source's current clean state as of
last night, to which tonight stacks only its new partitions. It must be the state a full
read of the clean zone gives, row for row and in the same order; a kept state that does
not match tonight's inputs, or whose bytes are not those written, is never used; and a
night that starts from it publishes what a full rebuild publishes.
"""

from __future__ import annotations

import json
import logging
import stat
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from catalog.definitions import load_catalog
from catalog.store import CatalogStore, PartitionRecord
from etl.public_state import PublicStateCache
from etl.publish_public import _needed_columns, current_clean, public_table, publish_open_data
from etl.zones import PUBLIC, RAW_CLEAN, Lake, clean_schema
from tests.helpers import DEMO_DATE, extract_and_validate

CATALOG = load_catalog()
OPENABLE = [d for d in CATALOG.datasets if d.openable]
POPULATION = CATALOG.dataset("gongan.population")
CASES = CATALOG.dataset("xingzheng.service_case")
LATER = DEMO_DATE + timedelta(days=1)


class Lakeside:
    """A test lake with the open-able datasets' first night clean, and a kept-state folder."""

    def __init__(self, root: Path, departments) -> None:
        self.lake = Lake(str(root / "lake"), f"sqlite:///{root / 'catalog.db'}")
        self.store = CatalogStore(f"sqlite:///{root / 'catalog.db'}")
        self.states = root / "cache" / "public-state"
        extract_and_validate(
            OPENABLE, departments.out_dir, DEMO_DATE, lake=self.lake, store=self.store,
            run_id="t", work_dir=root,
        )  # fmt: skip

    def add_night(self, dataset, ds, rows: int = 60, fingerprint: str = "f2") -> str:
        """A night of changes: some keys changed (a later ``updated_at``, another status),
        some new, as the next clean partition of ``dataset``."""
        schema = clean_schema(dataset)
        first = self.lake.read_partition(self.lake.dataset_partition(RAW_CLEAN, dataset, DEMO_DATE))
        night = first.select(schema.names).slice(0, rows)
        key = dataset.key[0]
        halves = night.num_rows // 2
        new_keys = pc.binary_join_element_wise(night.column(key).slice(halves), "N", "")
        keys = pa.concat_arrays(
            [night.column(key).slice(0, halves).combine_chunks(), new_keys.combine_chunks()]
        )
        night = night.set_column(schema.get_field_index(key), schema.field(key), keys)
        later = pc.add(night.column("updated_at"), pa.scalar(timedelta(days=1)))
        night = night.set_column(
            schema.get_field_index("updated_at"), schema.field("updated_at"), later
        )
        night = night.set_column(
            schema.get_field_index("status"),
            schema.field("status"),
            pa.array(night.column("status").to_pylist()[::-1], schema.field("status").type),
        )
        path = self.lake.dataset_partition(RAW_CLEAN, dataset, ds)
        manifest = self.lake.write_partition(path, night.to_batches(), schema)
        self.store.record_partition(
            "t", PartitionRecord(RAW_CLEAN, dataset.id, ds, path, manifest.rows, fingerprint)
        )
        return path

    def state(self, dataset, ds, kept: bool = True):
        """As the night reads it: the public rules of one row (address → district) applied
        to each partition as it is read."""
        cache = PublicStateCache(self.states) if kept else None
        return current_clean(
            self.lake, self.store, dataset, ds, _needed_columns(dataset), cache, row_rules=True
        )


@pytest.fixture
def side(departments, tmp_path: Path) -> Lakeside:
    return Lakeside(tmp_path, departments)


def _reads(monkeypatch) -> list[str]:
    """The clean partitions read from now on (their paths)."""
    import etl.publish_public as publish

    read, original = [], publish._read_columns

    def spy(lake, path, names):
        read.append(path)
        return original(lake, path, names)

    monkeypatch.setattr(publish, "_read_columns", spy)
    return read


def test_the_kept_state_is_the_state_read_from_the_clean_zone(side: Lakeside, monkeypatch) -> None:
    """Night 1 keeps its state (newest per key, key order); nights 2 and 3 read only their
    own partitions and stack them on it: the same rows, in the same order, as the stack of
    every partition. Once the stack has grown, the night's state is kept in its place."""
    import etl.publish_public as publish

    first = side.state(POPULATION, DEMO_DATE)
    assert first.table.equals(side.state(POPULATION, DEMO_DATE, kept=False).table)
    files = sorted(side.states.iterdir())
    assert [f.suffix for f in files] == [".arrow", ".json"]
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    assert stat.S_IMODE(side.states.stat().st_mode) == 0o700
    # the district, not the address, is kept; and it is the public rule's district
    kept_schema = pa.ipc.open_file(str(files[0])).schema
    assert "address" not in kept_schema.names and "address.public" in kept_schema.names
    clean = current_clean(side.lake, side.store, POPULATION, DEMO_DATE, _needed_columns(POPULATION))
    assert public_table(POPULATION, first.table).equals(public_table(POPULATION, clean.table))

    def kept_nights() -> set[str]:
        return {f.name.split(".")[2] for f in side.states.glob("gongan.population.*.arrow")}

    second = side.add_night(POPULATION, LATER)
    read = _reads(monkeypatch)
    kept = side.state(POPULATION, LATER)
    assert read == [second]  # not the first night's partition: the kept state instead
    full = side.state(POPULATION, LATER, kept=False)
    assert kept.table.equals(full.table, check_metadata=True)
    assert kept.inputs == full.inputs and len(full.inputs) == 2
    assert kept.table.num_rows == first.table.num_rows + 30  # 30 keys new, 30 changed
    assert kept_nights() == {str(DEMO_DATE)}  # 60 rows on it: not written again

    third_night = LATER + timedelta(days=1)
    third = side.add_night(POPULATION, third_night, fingerprint="f3")
    read.clear()
    kept = side.state(POPULATION, third_night)
    assert read == [second, third]
    assert kept.table.equals(side.state(POPULATION, third_night, kept=False).table)

    monkeypatch.setattr(publish, "KEPT_REWRITE_SHARE", 0.0)  # any stack: kept anew
    side.state(POPULATION, third_night)
    assert kept_nights() == {str(DEMO_DATE), str(third_night)}
    read.clear()
    again = side.state(POPULATION, third_night)
    assert read == []  # tonight's own state, nothing stacked on it
    assert again.table.equals(kept.table, check_metadata=True)


def test_a_kept_state_not_made_of_tonights_inputs_is_not_used(side: Lakeside, monkeypatch) -> None:
    """Tonight's clean partitions must start with exactly the kept state's (path and
    content fingerprint), for the same columns and code: else the clean zone is read."""
    side.state(CASES, DEMO_DATE)
    side.add_night(CASES, LATER)
    (record,) = side.states.glob("xingzheng.service_case.*.json")
    said = json.loads(record.read_text())
    said["inputs"][0][1] = "sha256:another-extraction"
    record.write_text(json.dumps(said))
    read = _reads(monkeypatch)
    state = side.state(CASES, LATER)
    assert len(read) == 2  # both nights read from the clean zone
    assert state.table.equals(side.state(CASES, LATER, kept=False).table)

    # another set of columns is another version: not used either
    cache = PublicStateCache(side.states)
    inputs = [[p.path, p.fingerprint] for p in side.store.partitions(zone=RAW_CLEAN)
              if p.dataset_id == CASES.id]  # fmt: skip
    assert cache.read(CASES, _needed_columns(CASES), inputs) is not None
    assert cache.read(CASES, _needed_columns(CASES)[:-1], inputs) is None


@pytest.mark.parametrize("damage", ["rewritten", "rows", "truncated"])
def test_a_damaged_kept_state_is_never_used(
    side: Lakeside, monkeypatch, caplog, damage: str
) -> None:
    """A kept state whose bytes are not those its record says (rewritten with one value
    changed, cut short) or whose row count differs is removed and the state read again."""
    side.state(CASES, DEMO_DATE)
    side.add_night(CASES, LATER)
    (data,) = side.states.glob("xingzheng.service_case.*.arrow")
    record = data.with_suffix(".json")
    if damage == "rewritten":  # a readable file, one value changed: only its digest tells
        table = pa.ipc.open_file(pa.py_buffer(data.read_bytes())).read_all()
        status = table.column("status").to_pylist()
        status[0] = "注销" if status[0] != "注销" else "在办"
        table = table.set_column(
            table.schema.get_field_index("status"),
            table.schema.field("status"),
            pa.array(status, table.schema.field("status").type),
        )
        with pa.ipc.new_file(str(data), table.schema) as writer:
            writer.write_table(table)
    elif damage == "truncated":
        data.write_bytes(data.read_bytes()[:100])
    else:
        said = json.loads(record.read_text())
        said["rows"] += 1
        record.write_text(json.dumps(said))
    read = _reads(monkeypatch)
    with caplog.at_level(logging.WARNING):
        state = side.state(CASES, LATER)
    assert len(read) == 2
    assert "does not match its record" in caplog.text
    assert not data.exists()  # removed; tonight's state kept instead
    assert state.table.equals(side.state(CASES, LATER, kept=False).table)


def test_a_night_from_kept_states_publishes_what_a_full_rebuild_does(side: Lakeside) -> None:
    """Night 2 from the kept states (population and cases changed) and a full rebuild of
    night 2 without them publish the same tables, row for row."""
    publish_open_data(CATALOG, side.lake, side.store, DEMO_DATE, "n1", state_dir=side.states)
    side.add_night(POPULATION, LATER)
    side.add_night(CASES, LATER)
    night = publish_open_data(CATALOG, side.lake, side.store, LATER, "n2", state_dir=side.states)
    assert {POPULATION.id, CASES.id} <= set(night.published)
    shown = {
        r.dataset_id: side.lake.read_partition(r.path)
        for r in side.store.partitions(zone=PUBLIC)
        if r.ds == LATER
    }
    full = publish_open_data(CATALOG, side.lake, side.store, LATER, "n2-full", full=True)
    assert set(shown) <= set(full.published)
    for name, table in shown.items():
        rebuilt = side.lake.read_partition(side.lake.public_partition(name, LATER))
        assert rebuilt.equals(table, check_metadata=True), name
