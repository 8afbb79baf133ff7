"""Standardise + validate + quarantine + dedup on simulated dirty data (real GX, Parquet)."""

from __future__ import annotations

import re
import shutil
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from catalog.definitions import load_catalog
from catalog.errors import BreakerTripped, SourceError
from etl.changes import checks_fingerprint
from etl.connections import SourceConnection
from etl.extract import extract_to_raw
from etl.quality_report import write_quality_index
from etl.rules import valid_phone, valid_resident_id
from etl.standardise import _traditional_class
from etl.validate import validate_partition
from etl.zones import RAW_CLEAN, RAW_QUARANTINE, RAW_SOURCES, Lake
from simulator.writers import write_control_file
from tests.helpers import DEMO_DATE, connections, hostile_copy, with_control_file

CATALOG = load_catalog()


class Night:
    """Every dataset of the session's departments extracted and validated into one lake."""

    def __init__(self, root: Path, departments) -> None:
        self.lake = Lake(str(root / "lake"), f"sqlite:///{root / 'catalog.db'}")
        self.store = self.lake.store
        self.departments = departments
        self.results = {}
        conns = connections(departments.out_dir)
        for ds in CATALOG.datasets:
            extract_to_raw(
                ds,
                conns[ds.source.connection_id],
                DEMO_DATE,
                lake=self.lake,
                store=self.store,
                batch_id="t",
            )
            self.results[ds.id] = validate_partition(
                ds,
                DEMO_DATE,
                lake=self.lake,
                store=self.store,
                run_id="t",
                docs_dir=root / "docs" / ds.id,
                work_dir=root / "tmp",
            )

    def table(self, zone: str, dataset_id: str) -> pd.DataFrame:
        ds = CATALOG.dataset(dataset_id)
        path = self.lake.partition_path(zone, ds.department, ds.code, ds=DEMO_DATE)
        return self.lake.read_partition(path).to_pandas()

    def truth(self, dataset_id: str) -> pd.DataFrame:
        return pd.read_parquet(self.departments.ground_truth_dir / f"{dataset_id}.parquet")


@pytest.fixture(scope="module")
def night(departments, tmp_path_factory) -> Night:
    return Night(tmp_path_factory.mktemp("validated"), departments)


@pytest.mark.parametrize("dataset_id", [d.id for d in CATALOG.datasets])
def test_every_delivered_row_is_clean_quarantined_or_collapsed(
    night: Night, dataset_id: str
) -> None:
    result = night.results[dataset_id]
    raw = night.table("raw/sources", dataset_id)
    clean = night.table(RAW_CLEAN, dataset_id)
    quarantine = night.table(RAW_QUARANTINE, dataset_id)
    assert result.delivered == len(raw) > 0
    assert result.delivered == result.clean + result.quarantined + result.collapsed
    assert (len(clean), len(quarantine)) == (result.clean, result.quarantined)
    clean_rows, bad_rows = set(clean["_row_number"]), set(quarantine["_row_number"])
    assert not clean_rows & bad_rows, "a row is both clean and quarantined"
    assert len(set(raw["_row_number"]) - clean_rows - bad_rows) == result.collapsed


@pytest.mark.parametrize("dataset_id", [d.id for d in CATALOG.datasets])
def test_every_dirt_kind_is_repaired_or_quarantined_for_the_right_reason(
    night: Night, dataset_id: str
) -> None:
    """Ground truth says which dirt each delivered row got; only bad check digits are
    beyond repair, so exactly those rows are quarantined, each for an ID rule."""
    key = CATALOG.dataset(dataset_id).key[0]
    raw = night.table("raw/sources", dataset_id).set_index(key)["_row_number"]
    dirt = night.truth(dataset_id).set_index("source_key")["dirt"].str.split(";")
    rows = {kind: set() for kind in ("bad_check", "repairable")}
    for source_key, kinds in dirt.items():
        kind = "bad_check" if "bad_check" in kinds else "repairable"
        rows[kind].add(int(raw[source_key]))
    quarantine = night.table(RAW_QUARANTINE, dataset_id).set_index("_row_number")
    assert set(quarantine.index) == rows["bad_check"]
    assert quarantine["_rules"].str.contains(r":resident_id|:applicant_id").all()
    kinds_seen = {k for kinds in dirt for k in kinds if k}
    assert kinds_seen - {"bad_check"}, "the delivery had repairable dirt to test"
    clean = set(night.table(RAW_CLEAN, dataset_id)["_row_number"])
    collapsed = rows["repairable"] - clean
    assert len(collapsed) == night.results[dataset_id].collapsed


def test_clean_values_are_canonical_and_typed(night: Night) -> None:
    clean = night.table(RAW_CLEAN, "renshe.insured_person")
    ids = clean["id_no"].dropna()
    assert valid_resident_id(ids, DEMO_DATE).all() and ids.str.len().eq(18).all()
    assert valid_phone(clean["phone"].dropna()).all()
    assert clean["phone"].dropna().str.fullmatch(r"1[3-9][0-9]{9}").all()
    names = clean["name"]
    assert not names.str.contains(r"\s").any()
    assert not names.str.contains(_traditional_class()).any()
    schema = night.lake.read_partition(
        night.lake.partition_path(RAW_CLEAN, "renshe", "insured_person", ds=DEMO_DATE)
    ).schema
    assert schema.field("birth_date").type == pa.date32()
    assert schema.field("updated_at").type == pa.timestamp("us")
    assert schema.field("monthly_base").type == pa.decimal128(18, 2)
    assert schema.field("employer_name_norm").type == pa.string()
    norm = clean["employer_name_norm"].dropna()
    assert not norm.str.contains("有限责任公司|^江门市|（").any()


def test_quarantine_keeps_the_original_row_and_says_why(night: Night) -> None:
    raw = night.table("raw/sources", "gongan.population").set_index("_row_number")
    quarantine = night.table(RAW_QUARANTINE, "gongan.population").set_index("_row_number")
    fields = CATALOG.dataset("gongan.population").field_names
    pd.testing.assert_frame_equal(quarantine[fields], raw.loc[quarantine.index, fields])
    assert (quarantine["_rules"].str.contains("id_no:resident_id")).all()
    first = quarantine.iloc[0]
    assert first["_reason"].startswith("id_no is not a valid resident ID (")


def test_in_source_duplicates_collapse_to_one_row(night: Night) -> None:
    # the quality-supervision drop repeats some codes with and without the hyphen
    truth = night.truth("zhijian.org_code")
    duplicates = truth["dirt"].str.contains("duplicate").sum()
    result = night.results["zhijian.org_code"]
    assert duplicates > 0 and result.collapsed == duplicates
    clean = night.table(RAW_CLEAN, "zhijian.org_code")
    assert clean["org_code"].is_unique


def test_quality_figures_are_stored(night: Night) -> None:
    figures = {q.dataset_id: q for q in night.store.quality(DEMO_DATE)}
    assert set(figures) == {d.id for d in CATALOG.datasets}
    q = figures["gongan.population"]
    result = night.results["gongan.population"]
    assert (q.delivered, q.clean, q.quarantined) == (
        result.delivered,
        result.clean,
        result.quarantined,
    )
    assert q.details["failures"]["id_no:resident_id"] == result.quarantined
    assert q.details["checked"] == result.delivered  # a first night checks every row


def test_data_docs_record_the_counts_once_the_night_closes(night: Night, tmp_path: Path) -> None:
    """Validation only counts; the quality page (close of night) has GX render the counts."""
    result = night.results["gongan.population"]
    shutil.rmtree(Path(result.docs).parent, ignore_errors=True)
    page = write_quality_index(night.store, tmp_path / "quality" / "index.html", CATALOG)
    docs = Path(result.docs)
    assert docs.is_file() and "gongan.population" in docs.read_text()
    assert docs.as_uri() in page.read_text()
    rendered = "\n".join(p.read_text() for p in docs.parent.rglob("*.html"))
    assert "id_no:resident_id" in rendered or "resident" in rendered
    assert f"{result.quarantined:,}" in rendered or str(result.quarantined) in rendered


def test_rerunning_validation_gives_the_same_partitions(night: Night, tmp_path: Path) -> None:
    ds = CATALOG.dataset("weiji.health_record")
    before = night.lake.read_manifest(night.lake.dataset_partition(RAW_CLEAN, ds, DEMO_DATE))
    again = validate_partition(
        ds, DEMO_DATE, lake=night.lake, store=night.store, run_id="t2", work_dir=tmp_path
    )
    after = night.lake.read_manifest(night.lake.dataset_partition(RAW_CLEAN, ds, DEMO_DATE))
    assert again.clean == before.rows == after.rows
    assert after.fingerprint == before.fingerprint


def test_repeated_keys_keep_the_newest_version_across_buckets(monkeypatch, tmp_path) -> None:
    from etl import dedup

    monkeypatch.setattr(dedup, "ROWS_PER_BUCKET", 7)  # force many on-disk buckets
    keys = [f"k{i % 20}" for i in range(60)]
    table = pa.table(
        {
            "k": keys,
            "updated_at": [f"2026-11-{10 + i // 20:02d} 00:00:00" for i in range(60)],
            "v": ["same" if i % 3 else f"v{i}" for i in range(60)],
            "_row_number": list(range(1, 61)),
        }
    )
    spool = dedup.BucketSpool(["k"], "updated_at", ["k", "v"], 60, tmp_path)
    assert spool.buckets == 9
    spool.add(table.slice(0, 30))
    spool.add(table.slice(30))
    kept = pa.concat_tables(list(spool.deduplicated())).to_pandas().set_index("k")
    assert len(kept) == 20 and spool.counts.collapsed == 40
    frame = table.to_pandas()
    newest = frame.sort_values("updated_at").groupby("k").tail(1).set_index("k")["v"]
    older = frame[~frame["_row_number"].isin(kept["_row_number"])]
    assert spool.counts.exact == int((older["v"].to_numpy() == newest[older["k"]].to_numpy()).sum())
    assert 0 < spool.counts.exact < spool.counts.collapsed
    assert (kept["updated_at"] == "2026-11-12 00:00:00").all()  # the newest of each key
    assert not list(tmp_path.iterdir()), "bucket files are removed"


@pytest.mark.parametrize("delivered", ["in key order", "shuffled"])
def test_each_bucket_comes_out_in_key_order_however_the_rows_were_delivered(
    tmp_path, delivered: str
) -> None:
    """Rows delivered in key order (the usual export) leave deduplication by a filter, not
    a take: the same newest rows in the same key order as a shuffled delivery gives."""
    from etl import dedup

    rng = np.random.default_rng(7)
    n = 400
    frame = pd.DataFrame(
        {
            "k": [f"k{i // 2:04d}" for i in range(n)],  # two versions of each key, in order
            "updated_at": [f"2026-11-{10 + i % 2:02d} 00:00:00" for i in range(n)],
            "v": [f"v{i}" for i in range(n)],
            "_row_number": np.arange(1, n + 1),
        }
    )
    if delivered == "shuffled":
        frame = frame.iloc[rng.permutation(n)]
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.append_column(dedup.REJECTED, pa.array(rng.random(n) < 0.05))
    spool = dedup.BucketSpool(["k"], "updated_at", ["k", "v"], n, tmp_path)
    spool.add(table)
    kept = pa.concat_tables(list(spool.deduplicated())).to_pandas()
    expected = frame.assign(rejected=table.column(dedup.REJECTED).to_numpy())
    newest = expected.sort_values(["k", "updated_at"]).groupby("k").tail(1)
    newest = newest[~newest["rejected"]]
    assert kept["k"].tolist() == newest["k"].tolist()  # key order, the newest of each
    assert kept["v"].tolist() == newest["v"].tolist()
    whole = pa.table({"k": ["a", "b", "c"]})
    assert dedup.taken_in_order(whole, np.array([0, 1, 2])) is whole  # kept whole, in place
    assert dedup.taken_in_order(whole, np.array([2, 0]))["k"].to_pylist() == ["c", "a"]


# --- hostile deliveries: every kind has a defined outcome ---------------------------------


def _hostile_night(
    departments, tmp_path: Path, dataset_id: str, kind: str, control: str | None = None
):
    """Extract + validate one file drop after replacing it with a hostile delivery."""
    conn = hostile_copy(
        departments.out_dir, tmp_path / "departments", dataset_id, kind, control=control
    )
    ds = CATALOG.dataset(dataset_id)
    lake = Lake(str(tmp_path / "lake"), f"sqlite:///{tmp_path}/c.db")
    store = lake.store
    extract_to_raw(ds, conn, DEMO_DATE, lake=lake, store=store, batch_id="h")
    return validate_partition(
        ds, DEMO_DATE, lake=lake, store=store, run_id="h", work_dir=tmp_path / "tmp"
    ), lake


STALE_CONTROL = r"does not match its control file .*\.ctl: SHA-256 differs"


@pytest.mark.parametrize(
    "dataset_id, kind, control, message",
    [
        # a control file written for the cut file: the parser finds the broken last row
        ("renshe.insured_person", "truncated", "fresh", r"Row #\d+: Expected 13 columns, got"),
        ("zhijian.org_code", "truncated", "fresh", r"Row #\d+: Expected 8 columns"),
        ("weiji.health_record", "truncated", "fresh", r"JSON parse error"),
        ("guoshui.taxpayer", "truncated", "fresh", r"not a readable \.xlsx"),
        # the full export's control file: the checksum stops it before a row is read
        ("renshe.insured_person", "truncated", None, STALE_CONTROL),
        ("guoshui.taxpayer", "truncated", None, STALE_CONTROL),
        ("renshe.insured_person", "wrong_encoding", None, r"row \d+, \w+: not gbk as declared$"),
        ("zhijian.org_code", "wrong_encoding", None, r"invalid UTF8 data"),
        ("zhijian.org_code", "mixed_encoding", None, r"invalid UTF8 data"),  # GBK rows in UTF-8
        ("weiji.health_record", "wrong_encoding", None, r"line 1 is not JSON"),
        ("renshe.insured_person", "empty", None, r"is empty \(0 bytes"),
        ("guoshui.taxpayer", "empty", None, r"is empty \(0 bytes"),
    ],
)
def test_unreadable_deliveries_fail_extraction_with_one_line(
    departments, tmp_path: Path, dataset_id: str, kind: str, control: str | None, message: str
) -> None:
    with pytest.raises(SourceError, match=message) as err:
        _hostile_night(departments, tmp_path, dataset_id, kind, control)
    text = str(err.value)
    assert text.startswith(dataset_id) and "\n" not in text
    assert not re.search(r"[0-9]{17}[0-9X]", text), "no ID numbers from the row in the error"


@pytest.mark.parametrize(
    "dataset_id, kind, message",
    [
        ("renshe.insured_person", "missing_column", r"catalog column\(s\) id_no missing$"),
        ("renshe.insured_person", "renamed_column", r"column\(s\) id_no missing \(renamed\?\)"),
        ("weiji.health_record", "missing_column", r"catalog column\(s\) id_no missing"),
        ("guoshui.taxpayer", "renamed_column", r"column\(s\) taxpayer_name missing \(renamed"),
        ("renshe.insured_person", "duplicated_column", r"'id_no' appears twice \(columns 2, 13\)"),
        ("guoshui.taxpayer", "duplicated_column", r"'taxpayer_name' appears twice"),
    ],
)
def test_dropped_renamed_or_duplicated_columns_fail_extraction(
    departments, tmp_path: Path, dataset_id: str, kind: str, message: str
) -> None:
    """The header is the contract: checked before any row is read, nothing is written.

    (Before decision 0008 a dropped column quarantined every row at validation, and a
    duplicated one ended validation in a bare KeyError after raw was committed.)
    """
    with pytest.raises(SourceError, match=message) as err:
        _hostile_night(departments, tmp_path, dataset_id, kind)
    assert str(err.value).startswith(f"{dataset_id}: header of ") and "\n" not in str(err.value)
    lake = Lake(str(tmp_path / "lake"), f"sqlite:///{tmp_path}/c.db")
    raw = lake.dataset_partition(RAW_SOURCES, CATALOG.dataset(dataset_id), DEMO_DATE)
    assert lake.read_manifest(raw) is None, "no raw partition from a broken header"


def test_text_in_another_encoding_or_with_a_nul_is_quarantined(departments, tmp_path: Path) -> None:
    from simulator.hostile import MIXED_ENCODING_ROWS

    result, lake = _hostile_night(
        departments, tmp_path / "mixed", "renshe.insured_person", "mixed_encoding"
    )
    dataset = CATALOG.dataset("renshe.insured_person")
    quarantine = lake.read_partition(lake.dataset_partition(RAW_QUARANTINE, dataset, DEMO_DATE))
    mojibake = quarantine.filter(pc.match_substring(quarantine.column("_rules"), "mojibake_gbk"))
    assert mojibake.num_rows == MIXED_ENCODING_ROWS  # every mixed row, nothing else
    assert "decodes differently as UTF-8 and as the declared GBK" in mojibake["_reason"][0].as_py()
    clean = lake.read_partition(lake.dataset_partition(RAW_CLEAN, dataset, DEMO_DATE))
    assert not set(mojibake["insured_no"].to_pylist()) & set(clean["insured_no"].to_pylist())
    assert result.conserved

    for dataset_id in ("renshe.insured_person", "weiji.health_record", "zhijian.org_code"):
        result, lake = _hostile_night(departments, tmp_path / dataset_id, dataset_id, "nul_in_name")
        failed = {k: v for k, v in result.failures.items() if k.endswith(":intact_text") and v}
        assert list(failed.values()) == [1], (dataset_id, failed)
        dataset = CATALOG.dataset(dataset_id)
        quarantine = lake.read_partition(lake.dataset_partition(RAW_QUARANTINE, dataset, DEMO_DATE))
        reasons = quarantine.filter(pc.match_substring(quarantine.column("_rules"), "intact_text"))
        row = reasons.to_pylist()[0]  # the raw quarantine keeps it as delivered
        assert any("\x00" in v for v in row.values() if isinstance(v, str))
        clean = lake.read_partition(lake.dataset_partition(RAW_CLEAN, dataset, DEMO_DATE))
        names = [c for c in clean.column_names if c == "name" or c.endswith("_name")]
        assert not any("\x00" in (v or "") for c in names for v in clean[c].to_pylist())


def test_added_column_is_kept_in_raw_and_noted(departments, tmp_path: Path) -> None:
    result, lake = _hostile_night(departments, tmp_path, "renshe.insured_person", "added_column")
    width = len(CATALOG.dataset("renshe.insured_person").fields)
    # a header outside the catalog is named by its position, never by its text
    assert f"column {width + 1} (not in the catalog): kept in raw only" in result.schema_notes
    raw = lake.read_partition(
        lake.dataset_partition(RAW_SOURCES, CATALOG.dataset("renshe.insured_person"), DEMO_DATE)
    )
    assert "remark" in raw.column_names and result.conserved
    assert result.quarantined_share < 0.05


@pytest.mark.parametrize(
    "dataset_id", ["renshe.insured_person", "weiji.health_record", "guoshui.taxpayer"]
)
def test_header_only_delivery_is_an_empty_night_not_an_error(
    departments, tmp_path: Path, dataset_id: str
) -> None:
    result, _ = _hostile_night(departments, tmp_path, dataset_id, "header_only")
    assert (result.delivered, result.clean, result.quarantined) == (0, 0, 0)
    assert "the delivery has no rows" in result.schema_notes


@pytest.mark.parametrize(
    "dataset_id", ["zhijian.org_code", "renshe.insured_person", "guoshui.taxpayer"]
)
def test_ten_megabyte_field_is_quarantined_with_a_short_reason(
    departments, tmp_path: Path, dataset_id: str
) -> None:
    result, lake = _hostile_night(departments, tmp_path, dataset_id, "huge_field")
    ds = CATALOG.dataset(dataset_id)
    quarantine = lake.read_partition(
        lake.dataset_partition(RAW_QUARANTINE, ds, DEMO_DATE)
    ).to_pandas()
    huge = quarantine[quarantine["_rules"].str.contains(":max_length")]
    assert len(huge) == 1 and result.conserved
    assert huge["_reason"].str.len().max() < 500  # not 10 MB
    column = huge["_rules"].iloc[0].split(":max_length")[0].split(", ")[-1]
    assert len(huge[column].iloc[0].encode()) >= 10 * 1024 * 1024 - 100
    assert np.isclose(result.quarantined_share, result.quarantined / result.delivered)


def test_mostly_broken_delivery_trips_the_breaker_but_writes_everything(
    departments, tmp_path: Path
) -> None:
    work = tmp_path / "departments"
    shutil.copytree(departments.out_dir, work)
    ds = CATALOG.dataset("zhijian.org_code")
    path = work / "zhijian" / f"org_code_{DEMO_DATE:%Y%m%d}.csv"
    frame = pd.read_csv(path, encoding="utf-8-sig", dtype=str)
    frame.loc[frame.index[: len(frame) * 2 // 3], "org_code"] = "12345678-0"  # wrong check
    frame.to_csv(path, index=False, encoding="utf-8-sig")
    with_control_file(path, len(frame))
    lake = Lake(str(tmp_path / "lake"), f"sqlite:///{tmp_path}/c.db")
    store = lake.store
    conn = SourceConnection("zhijian_drop", "fs", extra={"path": str(work / "zhijian")})
    extract_to_raw(ds, conn, DEMO_DATE, lake=lake, store=store, batch_id="b")
    with pytest.raises(BreakerTripped, match=r"above the limit of 5%.*org_code:org_code"):
        validate_partition(
            ds, DEMO_DATE, lake=lake, store=store, run_id="b", work_dir=tmp_path / "tmp"
        )
    assert not list((tmp_path / "tmp").iterdir()), "no spilled rows are left behind"
    figures = store.quality(DEMO_DATE)[0]
    assert figures.quarantined >= len(frame) * 2 // 3 - 10
    assert figures.delivered == figures.clean + figures.quarantined + figures.collapsed


@pytest.mark.parametrize(
    "delivered, quarantined, trips",
    [
        (8, 3, False),  # a small incremental night: quarantine the rows, publish the rest
        (8, 6, True),  # most of it is broken
        (120, 5, False),  # a normal small night: a handful of bad rows
        (120, 16, True),  # 13 %: too many for chance at 5 % (the newborn night)
        (120, 100, True),  # a broken export: most IDs invalid
        (2, 1, False),  # one bad row of two is no evidence of anything
        (1000, 40, False),
        (1000, 90, True),
        (3_000_000, 165_000, True),  # 5.5 %: half a point above the limit, but 3M rows say so
        (3_000_000, 151_000, False),  # 5.03 %: within chance of 5 %
        (0, 0, False),
    ],
)
def test_breaker_weighs_count_and_share_together(
    delivered: int, quarantined: int, trips: bool
) -> None:
    from etl.breaker import breaker_trips
    from etl.validate import ValidationResult

    result = ValidationResult(
        "x", DEMO_DATE, delivered=delivered, quarantined=quarantined, clean=delivered - quarantined
    )
    assert breaker_trips(result.figures, 0.05) is trips


def test_a_missing_column_trips_the_breaker_on_any_night() -> None:
    from etl.breaker import breaker_trips
    from etl.validate import ValidationResult

    result = ValidationResult("x", DEMO_DATE, delivered=2, quarantined=2)
    assert not breaker_trips(result.figures, 0.05)  # 2 of 2 could still be chance …
    assert breaker_trips(result.figures, 0.05, schema_broken=True)  # … a lost column is not


def test_a_small_night_with_a_broken_export_trips_the_breaker(tmp_path: Path, departments) -> None:
    """≈120 delivered rows, most IDs mangled by the export: the task fails after writing."""
    dataset = CATALOG.dataset("renshe.insured_person")
    lake = Lake(str(tmp_path / "lake"), f"sqlite:///{tmp_path / 'c.db'}")
    store = lake.store
    source = departments.out_dir / "renshe" / "insured_person_20261128.csv"
    frame = pd.read_csv(source, encoding="gbk", dtype="string").head(120)
    frame["id_no"] = frame["id_no"].str.slice(0, 17) + "?"  # the check character lost
    night = DEMO_DATE + timedelta(days=40)
    drop = tmp_path / "drop"
    drop.mkdir()
    delivered = drop / f"insured_person_{night:%Y%m%d}.csv"
    frame.to_csv(delivered, index=False, encoding="gbk")
    write_control_file(delivered, len(frame))  # the export's own count: the rows are whole
    conn = SourceConnection(conn_id="renshe_drop", conn_type="fs", extra={"path": str(drop)})
    extract_to_raw(dataset, conn, night, lake=lake, store=store, batch_id="t")
    with pytest.raises(BreakerTripped, match="more than chance allows"):
        validate_partition(dataset, night, lake=lake, store=store, run_id="t")
    figures = store.quality(night)[0]
    assert figures.delivered == 120 and figures.quarantined > 100


def test_lake_status_shows_the_quality_figures(night: Night) -> None:
    from click.testing import CliRunner

    from etl.cli import main

    night.store.start_run("t", DEMO_DATE)
    night.store.finish_run("t", "success")
    result = CliRunner().invoke(main, ["status"], env={"YIMEN_CATALOG_URL": night.store.url})
    assert result.exit_code == 0, result.output
    q = night.results["gongan.population"]
    line = next(x for x in result.output.splitlines() if x.strip().startswith("gongan.population"))
    assert f"{q.delivered:,}" in line and f"{q.clean:,}" in line and f"{q.quarantined:,}" in line
    assert "id_no:resident_id" in result.output and "data docs:" in result.output


def test_numbers_that_do_not_fit_the_clean_type_are_quarantined(
    departments, tmp_path: Path
) -> None:
    work = tmp_path / "departments"
    shutil.copytree(departments.out_dir, work)
    path = work / "renshe" / f"insured_person_{DEMO_DATE:%Y%m%d}.csv"
    frame = pd.read_csv(path, encoding="gbk", dtype=str, keep_default_na=False)
    frame.loc[0, "monthly_base"] = "4500.555"  # three decimals: decimal(18, 2) would round
    frame.loc[1, "monthly_base"] = "123456789012345678.50"  # too many digits
    frame.to_csv(path, index=False, encoding="gbk")
    with_control_file(path, len(frame))
    ds = CATALOG.dataset("renshe.insured_person")
    lake = Lake(str(tmp_path / "lake"), f"sqlite:///{tmp_path}/c.db")
    store = lake.store
    conn = SourceConnection("renshe_drop", "fs", extra={"path": str(work / "renshe")})
    extract_to_raw(ds, conn, DEMO_DATE, lake=lake, store=store, batch_id="n")
    result = validate_partition(
        ds, DEMO_DATE, lake=lake, store=store, run_id="n", work_dir=tmp_path / "tmp"
    )
    assert result.failures["monthly_base:type"] == 2 and result.conserved
    quarantine = lake.read_partition(
        lake.dataset_partition(RAW_QUARANTINE, ds, DEMO_DATE)
    ).to_pandas()
    reasons = quarantine.set_index("_row_number").loc[[1, 2], "_reason"]
    assert reasons.str.contains("monthly_base is not a decimal number that fits").all()
    assert not list((tmp_path / "tmp").iterdir()), "no spilled rows are left behind"
    manifest = lake.read_manifest(lake.dataset_partition(RAW_CLEAN, ds, DEMO_DATE))
    assert manifest.extra == {
        "dataset": ds.id,
        "source": manifest.extra["source"],
        **result.arithmetic(),
        "layout": {"buckets": 1, "checks": checks_fingerprint(ds)},  # for the next night
    }


def test_a_key_whose_newest_version_is_quarantined_publishes_no_older_one(tmp_path) -> None:
    from etl.dedup import REJECTED, BucketSpool

    table = pa.table(
        {
            "k": ["a", "a", "b", "b"],
            "updated_at": ["2026-11-27 09:00:00", "2026-11-28 09:00:00"] * 2,
            "v": ["old", "new but broken", "old", "new"],
            "_row_number": [1, 2, 3, 4],
            REJECTED: [False, True, False, False],
        }
    )
    spool = BucketSpool(["k"], "updated_at", ["k", "v"], 4, tmp_path)
    spool.add(table)
    kept = pa.concat_tables(list(spool.deduplicated()))
    assert kept.to_pydict() == {
        "k": ["b"],
        "updated_at": ["2026-11-28 09:00:00"],
        "v": ["new"],
        "_row_number": [4],
    }
    # a's old version and b's old version are collapsed; a's broken one is quarantined
    assert spool.counts.collapsed == 2 and spool.rows_out == 1


def test_clean_and_quarantine_are_replaced_together_or_not_at_all(
    departments, tmp_path: Path, monkeypatch
) -> None:
    import etl.validate

    ds = CATALOG.dataset("gongan.population")
    lake = Lake(str(tmp_path / "lake"), f"sqlite:///{tmp_path}/c.db")
    store = lake.store
    conn = connections(departments.out_dir)["gongan_db"]
    extract_to_raw(ds, conn, DEMO_DATE, lake=lake, store=store, batch_id="one")
    validate_partition(ds, DEMO_DATE, lake=lake, store=store, run_id="one")
    paths = [lake.dataset_partition(z, ds, DEMO_DATE) for z in (RAW_QUARANTINE, RAW_CLEAN)]
    before = [lake.read_manifest(p).fingerprint for p in paths]

    def disk_full(*_args):
        raise OSError("No space left on device")

    # a re-extraction (new batch id, so new quarantine content), then the clean write fails
    extract_to_raw(ds, conn, DEMO_DATE, lake=lake, store=store, batch_id="two")
    monkeypatch.setattr(etl.validate, "_typed", disk_full)
    with pytest.raises(OSError):
        validate_partition(ds, DEMO_DATE, lake=lake, store=store, run_id="two")
    assert [lake.read_manifest(p).fingerprint for p in paths] == before
    leftovers = [p for p in Path(paths[0]).parent.iterdir() if ".tmp-" in p.name]
    assert not leftovers


def test_validation_is_judged_against_the_partition_date_not_the_clock(
    tmp_path: Path, departments, monkeypatch
) -> None:
    """Newborns registered on a partition date years ahead of the machine's clock are clean
    that night, and the same delivery validated under another machine date gives the same
    partitions, byte for byte."""
    from stdnum.cn import ric

    dataset = CATALOG.dataset("renshe.insured_person")
    night = DEMO_DATE.replace(year=DEMO_DATE.year + 5)  # no clock says this date yet
    source = departments.out_dir / "renshe" / "insured_person_20261128.csv"
    frame = pd.read_csv(source, encoding="gbk", dtype="string").head(120)
    bodies = [f"440703{night:%Y%m%d}{n:03d}" for n in range(1, 6)]
    frame.loc[:4, "id_no"] = [b + ric.calc_check_digit(b + "0") for b in bodies]
    frame.loc[:4, "birth_date"] = night.isoformat()
    frame.loc[:4, "sex"] = ["男" if n % 2 else "女" for n in range(1, 6)]  # odd sequence: male
    drop = tmp_path / "drop"
    drop.mkdir()
    delivered = drop / f"insured_person_{night:%Y%m%d}.csv"
    frame.to_csv(delivered, index=False, encoding="gbk")
    write_control_file(delivered, len(frame))
    conn = SourceConnection(conn_id="renshe_drop", conn_type="fs", extra={"path": str(drop)})
    lake = Lake(str(tmp_path / "lake"), f"sqlite:///{tmp_path / 'c.db'}")
    store = lake.store
    extract_to_raw(dataset, conn, night, lake=lake, store=store, batch_id="t")

    def validated() -> dict[str, str]:
        validate_partition(dataset, night, lake=lake, store=store, run_id="t")
        return {
            zone: lake.read_manifest(lake.dataset_partition(zone, dataset, night)).fingerprint
            for zone in (RAW_CLEAN, RAW_QUARANTINE)
        }

    first = validated()
    clean = lake.read_partition(lake.dataset_partition(RAW_CLEAN, dataset, night)).to_pandas()
    assert set(frame.loc[:4, "id_no"]) <= set(clean["id_no"])  # the newborns are clean
    for moment in ("2016-01-01", "2040-07-01"):  # the machine's clock far behind, far ahead
        at = pd.Timestamp(moment)
        frozen = classmethod(lambda cls, tz=None, _at=at: _at)
        monkeypatch.setattr(pd.Timestamp, "now", frozen)
        monkeypatch.setattr(pd.Timestamp, "today", frozen)
        assert validated() == first, moment


def test_clean_dates_and_times_are_typed_as_strptime_types_them() -> None:
    """The ISO cast gives what ``strptime`` gives for canonical values, and a leap second
    (which the cast refuses) is still read as the next minute."""
    import pyarrow.compute as pc

    from etl.validate import _typed

    times = ["2026-11-28 00:00:00", "1900-01-01 23:59:59", "2100-12-31 12:30:05", None]
    for extra in ([], ["2016-12-31 23:59:60", "2016-06-30 12:00:61"]):
        table = pa.table(
            {
                "t": pa.array(times + extra),
                "d": pa.array([(t or "")[:10] or None for t in times + extra]),
            }
        )
        schema = pa.schema([("t", pa.timestamp("us")), ("d", pa.date32())])
        typed = _typed(table, schema)
        by_strptime = [
            pc.strptime(table["t"], format="%Y-%m-%d %H:%M:%S", unit="s").cast(schema[0].type),
            pc.strptime(table["d"], format="%Y-%m-%d", unit="s").cast(pa.date32()),
        ]
        assert typed.column("t").equals(by_strptime[0]) and typed.column("d").equals(by_strptime[1])
    assert typed.column("t")[4].as_py().isoformat() == "2017-01-01T00:00:00"
