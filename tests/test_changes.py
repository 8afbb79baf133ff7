"""Change detection on snapshot drops: finds the simulator's changes, publishes what full
validation publishes, reruns the same, falls back to full validation when it must."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import simulator
from catalog.definitions import load_catalog
from catalog.errors import BreakerTripped
from etl.changes import SnapshotHashes, compare
from etl.extract import extract_to_raw
from etl.validate import validate_partition
from etl.zones import RAW_CLEAN, RAW_QUARANTINE, RAW_SOURCES, Lake, clean_schema
from simulator.writers import write_control_file
from tests.helpers import DEMO_DATE, TEST_SCALE, connections

CATALOG = load_catalog()
SNAPSHOTS = [d for d in CATALOG.datasets if d.source.load == "snapshot"]
DAY2 = DEMO_DATE + timedelta(days=1)


class Lakeside:
    """Private departments (they are advanced) and a lake holding their snapshot drops."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.departments = root / "departments"
        simulator.build_departments(
            self.departments, scale=TEST_SCALE, as_of=DEMO_DATE, ground_truth_dir=root / "gt"
        )
        self.lake = Lake(str(root / "lake"), f"sqlite:///{root / 'catalog.db'}")
        self.store = self.lake.store

    def extract(self, ds, run_id: str) -> None:
        conns = connections(self.departments)
        for d in SNAPSHOTS:
            conn = conns[d.source.connection_id]
            extract_to_raw(d, conn, ds, lake=self.lake, store=self.store, batch_id=run_id)

    def validate(self, dataset, ds, run_id: str, lake: Lake | None = None, store=None):
        return validate_partition(
            dataset,
            ds,
            lake=lake or self.lake,
            store=store or self.store,
            run_id=run_id,
            work_dir=self.root / "tmp",
        )

    def rows(self, zone: str, dataset, ds, lake: Lake | None = None) -> pd.DataFrame:
        table = (lake or self.lake).read_partition(
            (lake or self.lake).dataset_partition(zone, dataset, ds)
        )
        frame = table.to_pandas().astype("string")
        return frame.sort_values(list(frame.columns)).reset_index(drop=True)


@pytest.fixture(scope="module")
def lakeside(tmp_path_factory) -> tuple[Lakeside, dict, dict]:
    """Night 1 validated in full, one simulated day, night 2 validated by change detection."""
    side = Lakeside(tmp_path_factory.mktemp("changes"))
    side.extract(DEMO_DATE, "night-1")
    for d in SNAPSHOTS:
        side.validate(d, DEMO_DATE, "night-1")
    day = simulator.advance_day(side.departments)
    assert day.as_of == DAY2
    side.extract(DAY2, "night-2")
    results = {d.id: side.validate(d, DAY2, "night-2") for d in SNAPSHOTS}
    truth = {d.id: (day.inserts[d.id], day.updates[d.id], day.deletes[d.id]) for d in SNAPSHOTS}
    return side, results, truth


def test_change_detection_finds_exactly_the_simulated_changes(lakeside) -> None:
    _side, results, truth = lakeside
    for dataset_id, (inserts, updates, deletes) in truth.items():
        r = results[dataset_id]
        assert r.changes["compared_with"] == DEMO_DATE.isoformat(), dataset_id
        assert (r.changes["inserted"], r.changes["updated"], r.deleted) == (
            inserts,
            updates,
            deletes,
        ), dataset_id
        assert r.unchanged > 0.9 * r.delivered  # most rows were not validated again
        assert r.delivered == r.unchanged + r.clean + r.quarantined + r.collapsed


def test_the_clean_snapshot_equals_full_validation_of_the_same_delivery(
    lakeside, tmp_path: Path
) -> None:
    side, results, _truth = lakeside
    full_lake = Lake(str(tmp_path / "lake"), f"sqlite:///{tmp_path / 'catalog.db'}")
    full_store = full_lake.store  # no earlier night
    for d in SNAPSHOTS:
        raw = side.lake.dataset_partition(RAW_SOURCES, d, DAY2)
        delivered = side.lake.read_partition(raw)  # the same delivery, in a lake of its own
        full_lake.write_partition(
            full_lake.dataset_partition(RAW_SOURCES, d, DAY2),
            delivered.to_batches(),
            delivered.schema,
            private=True,
            extra=side.lake.read_manifest(raw).extra,
        )
        full = side.validate(d, DAY2, "full", lake=full_lake, store=full_store)
        assert full.changes == {} and full.unchanged == 0  # validated every row
        detected = results[d.id]
        assert full.clean == detected.clean + detected.unchanged, d.id
        assert (full.quarantined, full.collapsed) == (detected.quarantined, detected.collapsed)
        for zone in (RAW_CLEAN, RAW_QUARANTINE):
            pd.testing.assert_frame_equal(
                side.rows(zone, d, DAY2), side.rows(zone, d, DAY2, lake=full_lake), obj=zone
            )
        clean = side.lake.read_manifest(side.lake.dataset_partition(RAW_CLEAN, d, DAY2))
        full_clean = full_lake.read_manifest(full_lake.dataset_partition(RAW_CLEAN, d, DAY2))
        assert clean.fingerprint == full_clean.fingerprint, d.id  # even the same bytes


def test_a_rerun_of_the_date_gives_the_same_partitions(lakeside) -> None:
    side, results, _truth = lakeside
    d = CATALOG.dataset("renshe.insured_person")
    before = side.lake.read_manifest(side.lake.dataset_partition(RAW_CLEAN, d, DAY2))
    again = side.validate(d, DAY2, "night-2-rerun")
    after = side.lake.read_manifest(side.lake.dataset_partition(RAW_CLEAN, d, DAY2))
    assert again.figures.summary() == results[d.id].figures.summary()
    assert again.changes == results[d.id].changes
    assert after.fingerprint == before.fingerprint


def test_a_night_after_a_failed_one_and_a_first_night_validate_in_full(
    lakeside, tmp_path: Path
) -> None:
    side, _results, _truth = lakeside
    d = CATALOG.dataset("renshe.insured_person")
    day3, day4 = DAY2 + timedelta(days=1), DAY2 + timedelta(days=2)
    folder = side.departments / d.department
    for day in (day3, day4):  # the same file (and its control file) delivered again
        for suffix in ("", ".ctl"):
            shutil.copy(
                folder / (d.source.path.format(ds_nodash=f"{DAY2:%Y%m%d}") + suffix),
                folder / (d.source.path.format(ds_nodash=f"{day:%Y%m%d}") + suffix),
            )
    broken = folder / d.source.path.format(ds_nodash=f"{day3:%Y%m%d}")
    frame = pd.read_csv(broken, encoding="gbk", dtype="string")
    frame["id_no"] = frame["id_no"].str.slice(0, 17) + "?"  # an export that lost check chars
    frame.to_csv(broken, index=False, encoding="gbk")
    write_control_file(broken, len(frame))
    conn = connections(side.departments)[d.source.connection_id]
    extract_to_raw(d, conn, day3, lake=side.lake, store=side.store, batch_id="night-3")
    with pytest.raises(BreakerTripped):
        side.validate(d, day3, "night-3")
    extract_to_raw(d, conn, day4, lake=side.lake, store=side.store, batch_id="night-4")
    after_failure = side.validate(d, day4, "night-4")
    assert after_failure.changes == {} and after_failure.unchanged == 0
    assert after_failure.clean + after_failure.collapsed + after_failure.quarantined == (
        after_failure.delivered
    )


def test_compare_carries_only_single_identical_clean_rows() -> None:
    """Keys 1–6: unchanged, changed, new, duplicated tonight, quarantined before, deleted."""
    u = np.uint64

    def hashes(keys: list[int], contents: list[int]) -> SnapshotHashes:
        return SnapshotHashes(
            np.array(keys, dtype=u), np.array(contents, dtype=u), np.arange(1, len(keys) + 1)
        )

    last = hashes([1, 2, 4, 5, 6], [10, 20, 40, 50, 60])
    tonight = hashes([1, 2, 3, 4, 4, 5], [10, 21, 30, 40, 41, 50])
    clean_last = np.array([1, 2, 4, 6], dtype=u)  # key 5 was quarantined
    changes = compare(tonight, last, clean_last)
    assert changes.carried_keys.tolist() == [1]
    assert changes.carried_row_numbers.tolist() == [1]
    assert changes.revalidate.tolist() == [2, 3, 4, 5, 6]
    assert (changes.inserted, changes.updated, changes.deleted) == (1, 2, 1)
    assert changes.deleted_keys.tolist() == [6]


def test_compare_counts_keys_with_several_rows_last_night() -> None:
    """Key 7 had two versions last night and one of them tonight (not an update); key 8 had
    two and tonight a third (an update); neither is carried (last night was ambiguous)."""
    u = np.uint64
    last = SnapshotHashes(
        np.array([1, 7, 7, 8, 8], dtype=u), np.array([10, 70, 71, 80, 81], dtype=u), np.arange(5)
    )
    tonight = SnapshotHashes(
        np.array([8, 7, 1], dtype=u), np.array([82, 71, 10], dtype=u), np.array([11, 12, 13])
    )
    changes = compare(tonight, last, np.array([1, 7, 8], dtype=u))
    assert changes.carried_keys.tolist() == [1] and changes.carried_row_numbers.tolist() == [13]
    assert changes.revalidate.tolist() == [11, 12]
    assert (changes.inserted, changes.updated, changes.deleted) == (0, 1, 0)


@pytest.mark.parametrize("seed", range(5))
def test_compare_agrees_with_the_obvious_formulation_on_random_nights(seed: int) -> None:
    """Last night's keys are numbered once for the hashing pass and the comparison; the
    result is what counting key by key gives (duplicates, quarantined keys, new, gone)."""
    from collections import Counter

    rng = np.random.default_rng(seed)
    u = np.uint64

    def night(n: int, first_row: int) -> SnapshotHashes:
        keys = rng.integers(0, 60, n).astype(u)  # a small key space: repeats on both nights
        contents = rng.integers(0, 3, n).astype(u)
        return SnapshotHashes(keys, contents, np.arange(first_row, first_row + n))

    last, tonight = night(50, 1), night(55, 101)
    clean = np.unique(last.keys[rng.random(50) < 0.8])  # the rest was quarantined
    changes = compare(tonight, last, clean)

    in_last, in_tonight = Counter(last.keys.tolist()), Counter(tonight.keys.tolist())
    rows_last: dict[int, set[int]] = {}
    for k, c in zip(last.keys.tolist(), last.contents.tolist(), strict=True):
        rows_last.setdefault(k, set()).add(c)
    carried, revalidate, inserted, updated = [], [], 0, 0
    for k, c, r in zip(
        tonight.keys.tolist(), tonight.contents.tolist(), tonight.row_numbers.tolist(), strict=True
    ):
        alone_and_same = in_last[k] == 1 and rows_last[k] == {c}
        if in_tonight[k] == 1 and alone_and_same and k in set(clean.tolist()):
            carried.append((k, r))
        else:
            revalidate.append(r)
        inserted += in_last[k] == 0
        updated += in_last[k] > 0 and c not in rows_last[k]
    pairs = zip(changes.carried_keys.tolist(), changes.carried_row_numbers.tolist(), strict=True)
    assert sorted(pairs) == sorted(carried)
    assert changes.revalidate.tolist() == sorted(revalidate)
    assert (changes.inserted, changes.updated) == (inserted, updated)
    gone = sorted(k for k in in_last if in_tonight[k] == 0)
    assert changes.deleted_keys.tolist() == gone


def test_changed_rows_survive_two_carriable_rows_whose_pairs_collide() -> None:
    """Two keys alone last night whose (key, content) pairs hash alike: the candidates are
    de-duplicated instead of failing the lookup; a row that matches neither is kept."""
    from etl.changes import _MIX, ChangedRows, LastNightKeys

    u = np.uint64
    last = SnapshotHashes(np.array([1, 2], dtype=u), np.array([_MIX, 0], dtype=u), np.arange(2))
    changed = ChangedRows(last, LastNightKeys.of(last.keys, last.keys))
    assert len(changed.candidates) == 1  # 1·MIX + MIX == 2·MIX + 0 (mod 2**64)
    batch = pa.table({"_row_number": [1, 2]})
    changed.add(batch, np.array([2, 0], dtype=u) * _MIX + np.array([0, 5], dtype=u))
    assert changed.rows == 1 and changed.tables[-1].column("_row_number").to_pylist() == [2]


def test_row_hashes_tell_apart_what_differs_and_only_that() -> None:
    import pyarrow as pa

    from etl.dedup import hash_strings

    values = ["", "a", "ab", "abcdefgh", "abcdefgh\x00", "abcdefghi", "x" * 5000, "x" * 5001]
    hashed = hash_strings(pa.array([*values, None, *values], pa.string()))
    assert len(set(hashed[: len(values) + 1].tolist())) == len(values) + 1  # null is not ""
    assert hashed[: len(values)].tolist() == hashed[len(values) + 1 :].tolist()
    sliced = pa.array(["zz", *values], pa.string()).slice(1)
    assert hash_strings(sliced).tolist() == hashed[: len(values)].tolist()
    dataset = CATALOG.dataset("zhijian.org_code")
    names = dataset.field_names
    row = {n: ["v"] for n in names}
    moved = row | {names[0]: ["v" + "v"], names[1]: [""]}  # the same bytes, one field over
    from etl.changes import row_hash

    assert row_hash(pa.table(row), dataset)[0] != row_hash(pa.table(moved), dataset)[0]


def _copied_lake(side: Lakeside, root: Path, dataset, days: list) -> tuple[Lake, object]:
    """A lake of its own holding ``side``'s raw deliveries of ``days``, recorded as extracted."""
    from catalog.store import PartitionRecord

    lake = Lake(str(root / "lake"), f"sqlite:///{root / 'catalog.db'}")
    for ds in days:
        raw = side.lake.dataset_partition(RAW_SOURCES, dataset, ds)
        delivered = side.lake.read_partition(raw)
        path = lake.dataset_partition(RAW_SOURCES, dataset, ds)
        manifest = lake.write_partition(
            path,
            delivered.to_batches(),
            delivered.schema,
            private=True,
            extra=side.lake.read_manifest(raw).extra,
        )
        lake.store.record_partition(
            f"copy-{ds}",
            PartitionRecord(RAW_SOURCES, dataset.id, ds, path, manifest.rows, manifest.fingerprint),
        )
    return lake, lake.store


@pytest.mark.parametrize(
    ("night1_rows", "night2_rows"),
    [(1_000, 1_000), (3_000, 1_000)],
    ids=["same-buckets-streamed", "buckets-changed-spooled"],
)
def test_carried_rows_in_several_key_buckets_give_the_bytes_of_full_validation(
    lakeside, tmp_path: Path, monkeypatch, night1_rows: int, night2_rows: int
) -> None:
    """Carried rows are merged into the validated ones bucket by bucket: with several
    buckets (forced small), whether last night was cut into as many buckets as tonight
    (streamed in order) or not (spooled into tonight's buckets), last night's clean rows
    are read once (its key column once more, for the comparison), without the metadata
    columns tonight replaces, and the clean partition has the bytes full validation writes."""
    import etl.dedup

    side, _results, _truth = lakeside
    d = CATALOG.dataset("renshe.insured_person")
    lake, store = _copied_lake(side, tmp_path / "changes", d, [DEMO_DATE, DAY2])
    monkeypatch.setattr(etl.dedup, "ROWS_PER_BUCKET", night1_rows)
    side.validate(d, DEMO_DATE, "night-1", lake=lake, store=store)
    monkeypatch.setattr(etl.dedup, "ROWS_PER_BUCKET", night2_rows)
    last_clean = lake.dataset_partition(RAW_CLEAN, d, DEMO_DATE)
    whole_reads = []
    partition_batches = lake.partition_batches

    def counted(path, *args, **kwargs):
        if path == last_clean:
            whole_reads.append(kwargs.get("columns"))
        return partition_batches(path, *args, **kwargs)

    monkeypatch.setattr(lake, "partition_batches", counted)
    detected = side.validate(d, DAY2, "night-2", lake=lake, store=store)
    assert len(whole_reads) == 2 and whole_reads[0] == d.key  # the keys, then the rows
    catalog_columns = [f.name for f in clean_schema(d) if not f.name.startswith("_")]
    assert whole_reads[1] == catalog_columns  # not last night's _row_number, _batch_id, …
    assert not list((side.root / "tmp").glob("dedup-*"))  # the spooled rows are gone
    assert detected.unchanged > 0.9 * detected.delivered
    assert -(-detected.delivered // night2_rows) > 2  # several buckets tonight
    full_lake, full_store = _copied_lake(side, tmp_path / "full", d, [DAY2])
    full = side.validate(d, DAY2, "full", lake=full_lake, store=full_store)
    assert full.unchanged == 0 and full.clean == detected.clean + detected.unchanged
    clean = lake.read_manifest(lake.dataset_partition(RAW_CLEAN, d, DAY2))
    full_clean = full_lake.read_manifest(full_lake.dataset_partition(RAW_CLEAN, d, DAY2))
    assert clean.extra["layout"]["buckets"] == -(-detected.delivered // night2_rows)
    assert clean.fingerprint == full_clean.fingerprint


def test_last_nights_clean_keys_are_hashed_once_and_a_read_out_of_their_order_fails(
    lakeside, tmp_path: Path, monkeypatch
) -> None:
    """The comparison hashes last night's clean keys; the carried rows' read reuses those
    hashes (it checks its keys are the ones hashed, in order). A second read that came back
    in another order carries nothing and publishes nothing: the night fails in one line."""
    import etl.changes
    from catalog.errors import LakeError

    side, _results, _truth = lakeside
    d = CATALOG.dataset("weiji.health_record")
    lake, store = _copied_lake(side, tmp_path, d, [DEMO_DATE, DAY2])
    first = side.validate(d, DEMO_DATE, "night-1", lake=lake, store=store)
    hashed = []
    key_hash = etl.changes.key_hash

    def counted(table, key):
        hashed.append(table.num_rows)
        return key_hash(table, key)

    monkeypatch.setattr(etl.changes, "key_hash", counted)
    night2 = side.validate(d, DAY2, "night-2", lake=lake, store=store)
    # tonight's standardised keys once, last night's clean keys once
    assert sum(hashed) == night2.delivered + first.clean
    assert night2.unchanged > 0.9 * night2.delivered
    published = lake.read_manifest(lake.dataset_partition(RAW_CLEAN, d, DAY2)).fingerprint

    last_clean = lake.dataset_partition(RAW_CLEAN, d, DEMO_DATE)
    partition_batches = lake.partition_batches

    def reversed_rows(path, *args, **kwargs):
        batches = list(partition_batches(path, *args, **kwargs))
        if path != last_clean or kwargs.get("columns") == d.key or not batches:
            return iter(batches)
        table = pa.concat_tables(batches)
        return iter([table.take(pa.array(np.arange(table.num_rows)[::-1]))])

    monkeypatch.setattr(lake, "partition_batches", reversed_rows)
    with pytest.raises(LakeError, match="did not read back in the order"):
        side.validate(d, DAY2, "night-2-rerun", lake=lake, store=store)
    monkeypatch.undo()
    assert lake.read_manifest(lake.dataset_partition(RAW_CLEAN, d, DAY2)).fingerprint == published


def test_rows_are_carried_only_under_the_checks_that_published_them(
    lakeside, tmp_path: Path
) -> None:
    """A changed catalog entry (here: one more allowed value) re-validates every row once."""
    side, _results, _truth = lakeside
    d = CATALOG.dataset("renshe.insured_person")
    lake, store = _copied_lake(side, tmp_path, d, [DEMO_DATE, DAY2])
    side.validate(d, DEMO_DATE, "night-1", lake=lake, store=store)
    fields = [
        f.model_copy(update={"allowed": [*f.allowed, "其他"]}) if f.allowed else f for f in d.fields
    ]
    changed = d.model_copy(update={"fields": fields})
    again = side.validate(changed, DAY2, "night-2", lake=lake, store=store)
    assert again.changes == {} and again.unchanged == 0
    same = side.validate(d, DAY2, "night-2-rerun", lake=lake, store=store)
    assert same.changes["compared_with"] == DEMO_DATE.isoformat()  # night 1's checks again
    assert same.unchanged > 0.9 * same.delivered


def test_a_snapshot_where_little_changed_is_read_once_and_a_busy_one_again(
    lakeside, tmp_path: Path, monkeypatch
) -> None:
    """The hashing pass keeps the rows to validate, so tonight's snapshot is read once; a
    night with more changed rows than it holds reads them again, with the same result."""
    import etl.changes

    side, _results, _truth = lakeside
    d = CATALOG.dataset("weiji.health_record")
    lake, store = _copied_lake(side, tmp_path, d, [DEMO_DATE, DAY2])
    side.validate(d, DEMO_DATE, "night-1", lake=lake, store=store)
    tonight = lake.dataset_partition(RAW_SOURCES, d, DAY2)
    reads = []
    partition_batches = lake.partition_batches

    def counted(path, *args, **kwargs):  # a read: the first batch is asked for
        for i, batch in enumerate(partition_batches(path, *args, **kwargs)):
            if i == 0:
                reads.append(path)
            yield batch

    monkeypatch.setattr(lake, "partition_batches", counted)

    def partitions() -> tuple[str, str]:
        return tuple(
            lake.read_manifest(lake.dataset_partition(zone, d, DAY2)).fingerprint
            for zone in (RAW_CLEAN, RAW_QUARANTINE)
        )

    once = side.validate(d, DAY2, "night-2", lake=lake, store=store)
    assert reads.count(tonight) == 1 and once.quarantined > 0 and once.unchanged > 0
    held = partitions()
    reads.clear()
    monkeypatch.setattr(etl.changes, "HELD_ROWS", 1)
    again = side.validate(d, DAY2, "night-2-busy", lake=lake, store=store)
    assert reads.count(tonight) == 2
    assert again.figures.summary() == once.figures.summary() and partitions() == held


def test_a_validated_snapshots_hashes_are_kept_and_spare_the_next_night_its_read(
    lakeside, tmp_path: Path, monkeypatch
) -> None:
    """Validating a snapshot drop keeps its row hashes (first night: from the validation's
    own pass; later nights: from change detection), equal to hashing the partition again;
    the next night then reads last night's raw snapshot not at all, with the same result."""
    import stat

    from etl.changes import SnapshotHashCache

    side, _results, _truth = lakeside
    d = CATALOG.dataset("weiji.health_record")
    lake, store = _copied_lake(side, tmp_path / "cached", d, [DEMO_DATE, DAY2])
    folder = tmp_path / "hashes"
    cache = SnapshotHashCache(folder)

    def validate(ds, run_id: str, on: Lake, with_store, hash_cache: Path):
        return validate_partition(
            d,
            ds,
            lake=on,
            store=with_store,
            run_id=run_id,
            work_dir=tmp_path / "tmp",
            hash_cache=hash_cache,
        )

    def kept(ds) -> SnapshotHashes:
        record = store.partition(RAW_SOURCES, d.id, ds)
        return cache.read(d, ds, record.fingerprint, record.rows)

    def hashed_again(ds) -> SnapshotHashes:
        return SnapshotHashes.of(
            lake.partition_batches(lake.dataset_partition(RAW_SOURCES, d, ds)), d
        )

    validate(DEMO_DATE, "night-1", lake, store, folder)
    for ds in (DEMO_DATE,):
        mine, again = kept(ds), hashed_again(ds)
        for part in ("keys", "contents", "row_numbers"):
            np.testing.assert_array_equal(getattr(mine, part), getattr(again, part))
    last_raw = lake.dataset_partition(RAW_SOURCES, d, DEMO_DATE)
    reads = []
    partition_batches = lake.partition_batches

    def counted(path, *args, **kwargs):
        if path == last_raw:
            reads.append(path)
        return partition_batches(path, *args, **kwargs)

    monkeypatch.setattr(lake, "partition_batches", counted)
    cached = validate(DAY2, "night-2", lake, store, folder)
    assert reads == [] and cached.unchanged > 0.9 * cached.delivered
    monkeypatch.undo()
    mine, again = kept(DAY2), hashed_again(DAY2)  # tonight's, kept for tomorrow
    for part in ("keys", "contents", "row_numbers"):
        np.testing.assert_array_equal(getattr(mine, part), getattr(again, part))
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()} == {0o600}
    # the same nights without the cache: the same partitions, the same figures
    plain, plain_store = _copied_lake(side, tmp_path / "plain", d, [DEMO_DATE, DAY2])
    validate(DEMO_DATE, "night-1", plain, plain_store, tmp_path / "other-hashes-1")
    hashed = validate(DAY2, "night-2", plain, plain_store, tmp_path / "other-hashes-2")
    assert hashed.figures.summary() == cached.figures.summary()
    assert hashed.changes == cached.changes
    for zone in (RAW_CLEAN, RAW_QUARANTINE):
        assert (
            lake.read_manifest(lake.dataset_partition(zone, d, DAY2)).fingerprint
            == plain.read_manifest(plain.dataset_partition(zone, d, DAY2)).fingerprint
        ), zone


def test_cached_hashes_that_do_not_match_their_snapshot_are_not_used(
    lakeside, tmp_path: Path
) -> None:
    """A cache file is used only for the raw partition it says it describes, whole and
    as written: another partition's, a shortened or an altered one is removed instead."""
    import pyarrow as pa

    from etl.changes import SnapshotHashCache

    side, _results, _truth = lakeside
    d = CATALOG.dataset("zhijian.org_code")
    raw = side.lake.dataset_partition(RAW_SOURCES, d, DEMO_DATE)
    record = side.store.partition(RAW_SOURCES, d.id, DEMO_DATE)
    hashes = SnapshotHashes.of(side.lake.partition_batches(raw), d)
    cache = SnapshotHashCache(tmp_path / "hashes")
    path = cache.write(d, DEMO_DATE, record.fingerprint, hashes)
    assert cache.read(d, DEMO_DATE, record.fingerprint, record.rows) is not None
    # another partition's fingerprint: the file under that name still describes this one
    other = "sha256:" + "0" * 64
    shutil.copy(path, cache.path(d, DEMO_DATE, other))
    assert cache.read(d, DEMO_DATE, other, record.rows) is None
    assert not cache.path(d, DEMO_DATE, other).exists()
    assert cache.read(d, DEMO_DATE, record.fingerprint, record.rows + 1) is None  # rows differ
    # altered hashes under the right name and metadata
    cache.write(d, DEMO_DATE, record.fingerprint, hashes)
    with pa.memory_map(str(path), "r") as source:
        table = pa.ipc.open_file(source).read_all()
    contents = table.column("contents").to_numpy().copy()
    contents[0] ^= 1
    altered = table.set_column(1, "contents", pa.array(contents, pa.uint64()))
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, altered.schema) as writer:
        writer.write_table(altered)
    assert cache.read(d, DEMO_DATE, record.fingerprint, record.rows) is None
    assert not path.exists()
    path.write_bytes(b"not an arrow file")
    assert cache.read(d, DEMO_DATE, record.fingerprint, record.rows) is None
