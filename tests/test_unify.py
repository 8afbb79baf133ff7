"""Unification: the right entity for each kind of record, survivorship, stable ids, conservation.

The cores run on small hand-written clean batches (the columns the clean zone holds), the
step on a real simulated night, and ``lake match`` through the CLI on hand-written files.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import date
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from click.testing import CliRunner

from etl import unify
from etl.cli import main
from etl.unify import TABLES, NightMentions, load_person_mentions
from etl.unify_enterprise import enterprise_mentions
from etl.unify_ids import PreviousIds
from etl.unify_person import person_mentions
from etl.unify_workspace import workspace
from etl.zones import RAW_UNIFIED
from tests.helpers import lock_held_elsewhere, resident_ids, usccs, with_control_file

DS = date(2026, 11, 28)
RNG = np.random.default_rng(7)
ID_A, ID_B, OWNER = resident_ids(RNG, 3, ["440703"])
USCC, USCC_OTHER = usccs(RNG, 2, ["440703"])
ORG = USCC[8:17]


def _id_birth(id_no: str) -> str:
    return f"{id_no[6:10]}-{id_no[10:12]}-{id_no[12:14]}"


def _sex(id_no: str) -> str:
    return "男" if int(id_no[16]) % 2 else "女"


def _batch(rows: list[dict], columns: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    for col in columns:
        if col not in frame:
            frame[col] = None
    frame["updated_at"] = pd.to_datetime(frame["updated_at"])
    return frame


POP_COLS = ["person_no", "id_no", "name", "sex", "birth_date", "division_code", "address"]
HEALTH_COLS = ["record_no", "id_no", "name", "sex", "birth_date", "phone", "address"]
REG_COLS = ["reg_id", "uscc", "reg_no", "name", "name_norm", "ent_type", "legal_rep_id_no"]
REG_COLS += ["legal_rep_name", "address", "status"]


def _world(night_one: bool = False) -> dict[str, pd.DataFrame]:
    """Two people with the same common name and birth date, one firm, one individual business.

    ``night_one``: the ID-less record of B still has a wrong birth date and an old phone.
    """
    birth = _id_birth(ID_A)
    phone_b = "13900000002"
    id_b = ID_B[:6] + ID_A[6:14] + ID_B[14:]  # same birth date, another person
    from catalog.identifiers import resident_id_check_chars

    id_b = id_b[:17] + str(resident_id_check_chars([id_b[:17]])[0])
    population = _batch(
        [
            {"person_no": "RK1", "id_no": ID_A, "name": "陈伟", "sex": _sex(ID_A),
             "birth_date": birth, "division_code": "440703", "address": "江门市蓬江区甲路1号",
             "updated_at": "2020-01-01 00:00:00"},
            {"person_no": "RK2", "id_no": id_b, "name": "陈伟", "sex": _sex(id_b),
             "birth_date": birth, "division_code": "440705", "address": "江门市新会区乙路2号",
             "updated_at": "2020-01-01 00:00:00"},
        ],
        POP_COLS,
    )  # fmt: skip
    health = _batch(
        [  # A under a homophone typo, newer phone; an ID-less record of B; an ID-less of A
            {"record_no": "JK1", "id_no": ID_A, "name": "陈玮", "sex": _sex(ID_A),
             "birth_date": birth, "phone": "13900000001", "address": "江门市蓬江区丙路3号",
             "updated_at": "2025-06-01 00:00:00"},
            {"record_no": "JK2", "id_no": None, "name": "陈伟", "sex": _sex(id_b),
             "birth_date": "1950-01-01" if night_one else birth,
             "phone": "13700000009" if night_one else phone_b, "address": "江门市新会区乙路2号",
             "updated_at": "2024-01-01 00:00:00"},
            {"record_no": "JK3", "id_no": None, "name": "陈伟", "sex": _sex(ID_A),
             "birth_date": birth[:5] + birth[8:10] + birth[4:7] if int(birth[8:10]) <= 12
             else birth, "phone": "13900000001", "address": "江门市蓬江区丙路3号",
             "updated_at": "2023-01-01 00:00:00"},
        ],
        HEALTH_COLS,
    )  # fmt: skip
    insured = _batch(
        [  # B with an ID and the phone the ID-less health record gave
            {"insured_no": "SB1", "id_no": id_b, "name": "陈伟", "sex": _sex(id_b),
             "birth_date": birth, "phone": phone_b, "updated_at": "2022-01-01 00:00:00"},
        ],
        ["insured_no", "id_no", "name", "sex", "birth_date", "phone"],
    )  # fmt: skip
    registration = _batch(
        [
            {"reg_id": "DJ1", "uscc": USCC, "reg_no": "440703000000011",
             "name": "江门市甲科技有限公司",
             "name_norm": "甲科技有限公司", "ent_type": "有限责任公司", "legal_rep_id_no": ID_A,
             "legal_rep_name": "陈伟", "address": "江门市蓬江区甲路1号", "status": "存续",
             "updated_at": "2019-01-01 00:00:00"},
            {"reg_id": "DJ2", "uscc": USCC_OTHER, "reg_no": None, "name": "蓬江区乙五金店",
             "name_norm": "蓬江区乙五金店", "ent_type": "个体工商户", "legal_rep_id_no": OWNER,
             "legal_rep_name": "李明", "address": "江门市蓬江区丁路4号", "status": "存续",
             "updated_at": "2019-01-01 00:00:00"},
        ],
        REG_COLS,
    )  # fmt: skip
    org_codes = _batch(
        [{"org_code": ORG, "name": "甲科技有限公司", "name_norm": "甲科技有限公司",
          "org_type": "企业法人", "address": "江门市蓬江区甲路1号",
          "updated_at": "2010-01-01 00:00:00"}],
        ["org_code", "name", "name_norm", "org_type", "address"],
    )  # fmt: skip
    guoshui = _batch(
        [
            {"tax_no": "440703" + ORG, "taxpayer_name": "江门市甲科技有限责任公司",
             "taxpayer_name_norm": "甲科技有限公司", "legal_rep_name": "陈伟", "status": "正常",
             "updated_at": "2012-01-01 00:00:00"},
            {"tax_no": OWNER + "00", "taxpayer_name": "蓬江区乙五金店",
             "taxpayer_name_norm": "蓬江区乙五金店", "legal_rep_name": "李明", "status": "正常",
             "updated_at": "2012-01-01 00:00:00"},
            {"tax_no": "440705" + "MA0000001", "taxpayer_name": "新会区丙商行",
             "taxpayer_name_norm": "新会区丙商行", "legal_rep_name": "王五", "status": "正常",
             "updated_at": "2012-01-01 00:00:00"},
        ],
        ["tax_no", "taxpayer_name", "taxpayer_name_norm", "legal_rep_name", "status"],
    )  # fmt: skip
    return {
        "gongan.population": population,
        "weiji.health_record": health,
        "renshe.insured_person": insured,
        "gongshang.enterprise_registration": registration,
        "zhijian.org_code": org_codes,
        "guoshui.taxpayer": guoshui,
    }


def _mentions(world: dict[str, pd.DataFrame]) -> tuple[list[pa.Table], NightMentions]:
    persons = [person_mentions(k, v) for k, v in world.items()]
    firms = [enterprise_mentions(k, v) for k, v in world.items()]
    return persons, NightMentions(
        pd.concat(firms, ignore_index=True),
        pd.DataFrame(columns=["case_no"]),
        {k: len(v) for k, v in world.items()},
    )


def unified_night(mentions, ds, previous_persons, previous_enterprises) -> SimpleNamespace:
    """The unification core in an in-memory workspace; its tables as frames."""
    persons, night_mentions = mentions
    with workspace() as ws:
        load_person_mentions(ws, persons)
        night = unify.unified_night(ws, night_mentions, ds, previous_persons, previous_enterprises)
        return SimpleNamespace(tables=night.frames(), figures=night.figures)


def _person_of(night, dataset: str, key: str, role: str = "subject") -> str:
    x = night.tables["person_xref"]
    row = x[(x["dataset"] == dataset) & (x["source_key"] == key) & (x["role"] == role)]
    assert len(row) == 1
    return row["person_id"].iloc[0]


def _enterprise_of(night, dataset: str, key: str) -> pd.Series:
    x = night.tables["enterprise_xref"]
    row = x[(x["dataset"] == dataset) & (x["source_key"] == key)]
    assert len(row) == 1
    return row.iloc[0]


def test_each_kind_of_record_lands_on_the_right_entity() -> None:
    night = unified_night(_mentions(_world()), DS, PreviousIds.none(), PreviousIds.none())
    a = _person_of(night, "gongan.population", "RK1")
    b = _person_of(night, "gongan.population", "RK2")
    assert a != b  # same common name and birth date, different IDs: two people
    assert _person_of(night, "weiji.health_record", "JK1") == a  # exact ID
    assert _person_of(night, "weiji.health_record", "JK2") == b  # ID-less, by phone
    assert _person_of(night, "weiji.health_record", "JK3") == a  # ID-less, swapped date
    assert _person_of(night, "gongshang.enterprise_registration", "DJ1", "legal_rep") == a
    assert night.figures.conflicting_id_clusters == 0

    firm = _enterprise_of(night, "gongshang.enterprise_registration", "DJ1")
    org = _enterprise_of(night, "zhijian.org_code", ORG)  # legacy organisation code
    tax15 = _enterprise_of(night, "guoshui.taxpayer", "440703" + ORG)  # 15-char tax number
    assert org["enterprise_id"] == tax15["enterprise_id"] == firm["enterprise_id"]
    assert (org["match_rule"], tax15["match_rule"]) == ("legacy_code", "legacy_code")
    shop = _enterprise_of(night, "gongshang.enterprise_registration", "DJ2")
    owner_taxed = _enterprise_of(night, "guoshui.taxpayer", OWNER + "00")  # owner's ID + 00
    assert owner_taxed["enterprise_id"] == shop["enterprise_id"]
    assert owner_taxed["match_rule"] == "owner_id"
    owner_person = _person_of(night, "guoshui.taxpayer", OWNER + "00", "owner")
    ents = night.tables["enterprise"].set_index("enterprise_id")
    assert ents.loc[shop["enterprise_id"], "legal_rep_person_id"] == owner_person
    assert ents.loc[firm["enterprise_id"], "legal_rep_person_id"] == a
    lone = _enterprise_of(night, "guoshui.taxpayer", "440705MA0000001")
    assert lone["match_rule"] == "unlinked"  # links to nothing: kept, flagged
    assert not ents.loc[lone["enterprise_id"], "linked"]


def test_survivorship_takes_identity_from_public_security_and_the_newest_phone() -> None:
    night = unified_night(_mentions(_world()), DS, PreviousIds.none(), PreviousIds.none())
    persons = night.tables["person"].set_index("person_id")
    a = persons.loc[_person_of(night, "gongan.population", "RK1")]
    assert a["name"] == "陈伟" and a["name_source"] == "gongan.population"  # not 陈玮
    assert a["phone"] == "13900000001" and a["phone_source"] == "weiji.health_record"
    assert a["address"] == "江门市蓬江区丙路3号"  # the newest address (health, 2025)
    assert a["sources"].split(",") == sorted(a["sources"].split(","))
    assert "gongan.population" in a["sources"] and a["records"] == 4
    assert a["last_updated_at"] == pd.Timestamp("2025-06-01")


def test_every_clean_row_is_the_subject_of_exactly_one_crosswalk_row() -> None:
    world = _world()
    night = unified_night(_mentions(world), DS, PreviousIds.none(), PreviousIds.none())
    px, ex = night.tables["person_xref"], night.tables["enterprise_xref"]
    subjects = pd.concat(
        [px[px["role"] == "subject"], ex[ex["role"] == "subject"]], ignore_index=True
    )
    assert not subjects.duplicated(["dataset", "source_key"]).any()
    assert subjects.groupby("dataset").size().to_dict() == {k: len(v) for k, v in world.items()}
    assert night.figures.conserved


def _previous(night, entity: str, prefix: str) -> PreviousIds:
    from etl.unify_ids import id_number

    table, xref = night.tables[entity], night.tables[f"{entity}_xref"]
    return PreviousIds(
        table[["anchor", f"{entity}_id"]].rename(columns={f"{entity}_id": "id"}),
        xref[["dataset", "source_key", "role", f"{entity}_id"]].rename(
            columns={f"{entity}_id": "id"}
        ),
        id_number(table[f"{entity}_id"], prefix) + 1,
    )


def test_ids_are_stable_across_nights_and_a_merge_is_recorded() -> None:
    # night 1: the ID-less health record of B is too far off to link: its own person
    first = unified_night(
        _mentions(_world(night_one=True)), DS, PreviousIds.none(), PreviousIds.none()
    )
    lone = _person_of(first, "weiji.health_record", "JK2")
    b1 = _person_of(first, "gongan.population", "RK2")
    assert lone != b1
    # night 2: the record was corrected: it merges into B; B keeps its id
    world = _world()
    world["gongan.population"].loc[0, "address"] = "江门市蓬江区新路9号"  # A's record changed
    second = unified_night(
        _mentions(world),
        DS,
        _previous(first, "person", "P"),
        _previous(first, "enterprise", "E"),
    )
    assert _person_of(second, "gongan.population", "RK2") == b1
    for key in ("RK1", "RK2"):
        assert _person_of(second, "gongan.population", key) == _person_of(
            first, "gongan.population", key
        )
    assert set(second.tables["enterprise"]["enterprise_id"]) == set(
        first.tables["enterprise"]["enterprise_id"]
    )
    x = second.tables["person_xref"]
    merged = x[(x["dataset"] == "weiji.health_record") & (x["source_key"] == "JK2")].iloc[0]
    assert merged["person_id"] == b1 and merged["previous_person_id"] == lone
    assert second.figures.id_changes == 1
    assert lone not in set(second.tables["person"]["person_id"])  # retired, not reissued


# --- lake match -----------------------------------------------------------------------------

LIST = """姓名,出生日期,电话,区县
陈伟明,1985-03-12,13812345678,蓬江区
陳偉明,1985/3/12,138 1234 5678,蓬江区
陈伟,1985-03-12,13812345678,蓬江区
曾志强,1990-07-01,13922223333,新会区
曾志强,1990-01-07,13922223334,新会区
李娜,1979-11-30,,台山市
李娜,1992-02-14,13700001111,开平市
王芳,2001-05-05,15000002222,江海区
"""
ROLES = "name=姓名,birth_date=出生日期,phone=电话,district=区县"


def test_lake_match_clusters_a_hand_written_list_without_ids(tmp_path) -> None:
    src = tmp_path / "名单.csv"
    src.write_text(LIST, encoding="gbk")
    out = tmp_path / "out.parquet"
    args = ["match", str(src), "--columns", ROLES, "--encoding", "gbk", "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    rows = pd.read_parquet(out)
    assert len(rows) == 8 and list(rows.columns[:4]) == ["姓名", "出生日期", "电话", "区县"]
    c = rows["cluster_id"].tolist()
    assert c[0] == c[1] == c[2]  # traditional spelling, dropped last character
    assert c[3] == c[4]  # 曾: day/month swapped, phone typo
    assert len({c[0], c[3], c[5], c[6], c[7]}) == 5  # the two 李娜 are different people
    assert rows.loc[0, "match_score"] > 0.5 and np.isnan(rows.loc[7, "match_score"])


def test_lake_match_reads_excel_and_parquet_with_only_a_name(tmp_path) -> None:
    frame = pd.read_csv(pd.io.common.StringIO(LIST), dtype=str)
    frame.to_parquet(tmp_path / "l.parquet")
    frame.to_excel(tmp_path / "l.xlsx", index=False)
    for name in ("l.parquet", "l.xlsx"):
        out = tmp_path / f"{name}.out.parquet"
        result = CliRunner().invoke(
            main, ["match", str(tmp_path / name), "--columns", "name=姓名", "--out", str(out)]
        )
        assert result.exit_code == 0, result.output
        assert len(pd.read_parquet(out)) == 8


@pytest.mark.parametrize(
    ("setup", "columns", "extra", "expected"),
    [
        ("missing", ROLES, ["--encoding", "utf-8"], "no such file"),
        ("csv", ROLES, [], "declare the CSV's encoding"),
        # Chinese text in an error line is masked like anything from a delivery
        ("csv", "name=姓名,phone=手机", ["--encoding", "utf-8"], "no column for phone=…"),
        ("csv", "name=姓名,age=年龄", ["--encoding", "utf-8"], "unknown column role 'age'"),
        ("csv", "phone=电话", ["--encoding", "utf-8"], "must map the name role"),
        ("empty", ROLES, ["--encoding", "utf-8"], "the file is empty"),
        ("header", ROLES, ["--encoding", "utf-8"], "the list has no rows"),
        ("gbk", ROLES, ["--encoding", "utf-8"], "not readable as utf-8"),
    ],
)
def test_lake_match_bad_input_is_one_line_naming_the_file(
    tmp_path, setup, columns, extra, expected
) -> None:
    src = tmp_path / "list.csv"
    if setup == "csv":
        src.write_text(LIST, encoding="utf-8")
    elif setup == "empty":
        src.write_bytes(b"")
    elif setup == "header":
        src.write_text(LIST.splitlines()[0] + "\n", encoding="utf-8")
    elif setup == "gbk":
        src.write_text(LIST, encoding="gbk")
    args = ["match", str(src), "--columns", columns, "--out", str(tmp_path / "o.parquet")]
    result = CliRunner().invoke(main, args + extra)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and str(src) in lines[0] and expected in lines[0], result.output
    assert "陈伟明" not in result.output and "13812345678" not in result.output


def test_the_tables_do_not_depend_on_the_order_mentions_are_read_in() -> None:
    """An incremental night numbers its new mentions after the kept ones; a rebuild reads
    them in catalog order. Both must give the same persons: ties between equal candidates
    (here two health records of one person updated in the same second, with different
    phones) are broken by what the records are, not by their row numbers."""
    world = _world()
    health = world["weiji.health_record"]
    twin = health.iloc[[0]].assign(record_no="JK0", phone="13900000007")
    world["weiji.health_record"] = pd.concat([twin, health], ignore_index=True)
    persons, night_mentions = _mentions(world)

    def tables(batches: list[pa.Table], frozen=None):
        with workspace() as ws:
            load_person_mentions(ws, batches)
            night = unify.unified_night(
                ws, night_mentions, DS, PreviousIds.none(), PreviousIds.none(), frozen
            )
            frames = night.frames()
            return night.frozen, {
                name: frame.sort_values(list(frame.columns[:3])).reset_index(drop=True)
                for name, frame in frames.items()
            }

    model, first = tables(persons)
    reordered = [b.take(np.arange(b.num_rows)[::-1]) for b in reversed(persons)]
    _, second = tables(reordered, model)
    _, again = tables(persons, model)
    for name in first:
        pd.testing.assert_frame_equal(second[name], again[name], obj=name)
    x = first["person_xref"]
    a = x[(x["dataset"] == "weiji.health_record") & (x["source_key"] == "JK1")]["person_id"]
    person = first["person"].set_index("person_id").loc[a.iloc[0]]
    assert person["phone"] in ("13900000001", "13900000007")  # one of the tied, either night


def _add_idless_copies(departments: Path, ds: date, n: int) -> int:
    """The health department's drop for ``ds`` gains ``n`` ID-less copies of records it
    already holds (a clinic registering known people without their card): tonight's new
    mentions that link to persons whose own records did not change."""
    drop = departments / "weiji" / f"health_record_{ds:%Y%m%d}.jsonl"
    rows = pd.read_json(drop, lines=True, dtype=False)
    copies = rows[rows["id_no"].notna()].head(n).copy()
    copies["record_no"] = ["JKX" + str(i).zfill(9) for i in range(len(copies))]
    copies["id_no"] = None
    text = drop.read_text(encoding="utf-8")
    text += copies.to_json(orient="records", lines=True, force_ascii=False)
    drop.write_text(text, encoding="utf-8")
    with_control_file(drop, len(rows) + len(copies))
    return len(copies)


def test_two_simulated_nights_keep_their_ids(tmp_path) -> None:
    """A real simulation advanced by a day: every row keeps its person and enterprise."""
    import json
    from datetime import timedelta

    import simulator
    from etl.connections import SourceConnection
    from etl.nightly import Night, extract_dataset, open_night, unify, validate_dataset
    from etl.settings import LakeSettings
    from tests.helpers import DEMO_DATE, TEST_SCALE

    settings = LakeSettings.under(tmp_path)
    simulator.build_departments(
        settings.departments_dir,
        scale=TEST_SCALE,
        as_of=DEMO_DATE,
        ground_truth_dir=settings.ground_truth_dir,
    )

    def validated(ds: date) -> Night:
        night = Night.open(ds, f"run-{ds}", settings)
        open_night(night)
        specs = json.loads((settings.departments_dir / "connections.json").read_text())
        for d in night.catalog.datasets:
            conn = SourceConnection(conn_id=d.source.connection_id, **specs[d.source.connection_id])
            extract_dataset(night, d.id, conn)
            validate_dataset(night, d.id)
        return night

    second = DEMO_DATE + timedelta(days=1)
    unify(validated(DEMO_DATE))
    simulator.advance_day(settings.departments_dir)
    assert _add_idless_copies(settings.departments_dir, second, 40) == 40
    night = validated(second)
    # a night counted as large: the incremental unification does not take the heavy-step
    # lock, so it runs while another heavy step (the open data) holds it (decision 0024)
    large = Night.open(second, night.run_id, replace(settings, heavy_step_rows=1))
    holder = lock_held_elsewhere(large.work_dir / "heavy-step.lock")
    try:
        assert "waited_s" not in ThreadPoolExecutor(1).submit(unify, large).result(timeout=120)
    finally:
        holder.kill()
        holder.wait()
    lake = settings.lake()
    store = lake.store
    for ds in (DEMO_DATE, second):
        figures = store.unification(ds)
        assert figures.conserved and figures.conflicting_id_clusters == 0
    # the workspace (personal data spilled to disk) is gone once the step is done
    assert not list((settings.var / "tmp").glob("unify-*"))
    # the first night rebuilt and kept its state; the second started from it (private files)
    how = {ds: store.unification(ds).details["how"] for ds in (DEMO_DATE, second)}
    assert how == {DEMO_DATE: "rebuild: no kept state", second: "incremental"}
    kept = settings.var / "cache" / "unify"
    assert kept.stat().st_mode & 0o777 == 0o700
    assert [(p.name, p.stat().st_mode & 0o777) for p in kept.iterdir()] == [("state.duckdb", 0o600)]
    changed = store.unification(second).details["incremental"]
    assert 0 < changed["new_mentions"] < 0.2 * store.unification(second).person_rows
    assert changed["affected_probes"] >= 40  # the copies, scored against everyone

    def tables(ds: date) -> dict[str, pd.DataFrame]:
        """The night's unified tables in one order (a crosswalk's row order may differ)."""
        out = {}
        for name in TABLES:
            frame = lake.read_partition(lake.unified_partition(name, ds)).to_pandas()
            out[name] = frame.sort_values(list(frame.columns[:3])).reset_index(drop=True)
        return out

    def written(ds: date) -> dict[str, str]:
        return {p.dataset_id: p.fingerprint for p in store.partitions(ds=ds, zone=RAW_UNIFIED)}

    def from_cache(ds: date) -> int:
        return store.unification(ds).details["mentions_from_cache"]

    # a rerun of the night rebuilds it from every clean row, with the kept model: the same
    # tables as the incremental night (docs/decisions/0023)
    incremental = tables(second)
    # a rebuild of a large night waits for the heavy-step lock (it needs the memory)
    rerun = Night.open(second, "rerun-rebuilds", replace(settings, heavy_step_rows=1))
    holder = lock_held_elsewhere(rerun.work_dir / "heavy-step.lock")
    rebuilding = ThreadPoolExecutor(1).submit(unify, rerun)
    try:
        with pytest.raises(TimeoutError):
            rebuilding.result(timeout=1.0)
    finally:
        holder.kill()
        holder.wait()
    assert rebuilding.result(timeout=120)["waited_s"] >= 0.9
    assert store.unification(second).details["how"].startswith("rebuild")
    rebuilt = tables(second)
    for name in TABLES:
        pd.testing.assert_frame_equal(rebuilt[name], incremental[name], obj=name)
    # the population register's untouched first partition came from the mention cache: a
    # private folder, one file per partition; without it the night writes the same tables
    cache = settings.var / "cache" / "mentions"
    assert cache.stat().st_mode & 0o777 == 0o700
    assert sorted(p.name.split(".")[2] for p in cache.iterdir()) == [
        DEMO_DATE.isoformat(),
        second.isoformat(),
    ]
    assert from_cache(DEMO_DATE) == 0 and from_cache(second) > 0
    warm = written(second)
    shutil.rmtree(cache)
    unify(Night.open(second, "rerun-without-cache", settings))
    assert from_cache(second) == 0
    assert written(second) == warm and len(warm) == 5
    # the incremental sources' second partition holds a day's changes; unified is everyone
    assert store.unification(second).persons >= store.unification(DEMO_DATE).persons
    for entity in ("person", "enterprise"):
        first, later = (
            lake.read_partition(lake.unified_partition(f"{entity}_xref", ds)).to_pandas()
            for ds in (DEMO_DATE, second)
        )
        both = first.merge(later, on=["dataset", "source_key", "role"], suffixes=("", "_2"))
        assert len(both) > 0.95 * len(first)
        moved = both[both[f"{entity}_id"] != both[f"{entity}_id_2"]]
        # an id only changes with a record of it in the crosswalk history
        assert (moved[f"previous_{entity}_id_2"] == moved[f"{entity}_id"]).all()
        assert len(moved) <= 0.001 * len(both)
    # the commands people use on it
    env = {"YIMEN_HOME": str(tmp_path)}
    shown = CliRunner().invoke(main, ["status"], env=env)
    assert shown.exit_code == 0 and "latest unification (2026-11-29)" in shown.output
    assert "rows conserved: yes" in shown.output
    assert "  rebuild: the kept state is not of the previous unified night" in shown.output
    scored = CliRunner().invoke(main, ["score"], env=env)
    assert scored.exit_code == 0, scored.output
    lines = [line.split() for line in scored.output.splitlines()]
    overall = [cells for cells in lines if cells and cells[0] == "all"]
    assert len(overall) == 2 and float(overall[0][-1]) >= 0.995 and float(overall[1][-1]) >= 0.99
    # --link: people from the register, written the way a counter would, find themselves
    persons = lake.read_partition(lake.unified_partition("person", second)).to_pandas()
    sample = persons.dropna(subset=["phone"]).head(20)
    src = tmp_path / "roster.csv"
    pd.DataFrame(
        {
            "姓名": sample["name"],
            "出生日期": pd.to_datetime(sample["birth_date"]).dt.strftime("%Y/%-m/%-d"),
            "电话": "+86 " + sample["phone"],
        }
    ).to_csv(src, index=False, encoding="gbk")
    out = tmp_path / "roster.parquet"
    args = ["match", str(src), "--encoding", "gbk", "--out", str(out), "--link"]
    args += ["--columns", "name=姓名,birth_date=出生日期,phone=电话"]
    linked = CliRunner().invoke(main, args, env=env)
    assert linked.exit_code == 0, linked.output
    assert pd.read_parquet(out)["person_id"].tolist() == sample["person_id"].tolist()


def test_the_workspace_is_private_and_removed_even_when_the_step_fails(tmp_path) -> None:
    seen = {}
    with pytest.raises(RuntimeError), workspace(tmp_path, "200MB") as ws:
        ws.load_spilled("t", pa.table({"x": pa.array(range(100_000))}))
        (folder,) = tmp_path.glob("unify-*")
        seen["mode"] = folder.stat().st_mode & 0o777
        seen["files"] = [p.name for p in folder.iterdir()]
        assert ws.scalar("SELECT sum(x) FROM t") == sum(range(100_000))
        raise RuntimeError("the night failed here")
    assert seen["mode"] == 0o700 and "t.parquet" in seen["files"]
    assert not list(tmp_path.iterdir())


def test_rows_are_taken_from_a_spilled_table_in_the_order_asked(tmp_path) -> None:
    """Row groups are read one at a time; the values still come in the order asked."""

    def part(start: int) -> pa.Table:
        values = range(start, start + 1000)
        return pa.table({"x": pa.array(values), "s": [f"v{v}" for v in values]})

    with workspace(tmp_path) as ws:
        ws.load_spilled("t", (part(i) for i in range(0, 5000, 1000)))
        taken = ws.take("t", ["s", "x"], pa.array([4999, None, 0, 1000, 4999, 2500]))
    assert taken.column_names == ["s", "x"]
    assert taken.column("x").to_pylist() == [4999, None, 0, 1000, 4999, 2500]
    assert taken.column("s").to_pylist() == ["v4999", None, "v0", "v1000", "v4999", "v2500"]


def test_a_workspace_left_by_a_killed_process_is_removed_next_time(tmp_path) -> None:
    import signal
    import subprocess
    import sys

    code = (
        "import sys, time; sys.path.insert(0, sys.argv[2]);"
        "from pathlib import Path; from etl.unify_workspace import workspace;"
        "import pyarrow as pa\n"
        "with workspace(Path(sys.argv[1])) as ws:\n"
        "    ws.load_spilled('m', pa.table({'x': list(range(1000))}))\n"
        "    print('ready', flush=True); time.sleep(60)\n"
    )
    from etl.settings import REPO_ROOT

    child = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path), str(REPO_ROOT)], stdout=subprocess.PIPE
    )
    assert child.stdout.readline().strip() == b"ready"
    live = list(tmp_path.glob("unify-*"))
    with workspace(tmp_path):  # the live one is left alone
        assert set(live) <= set(tmp_path.glob("unify-*"))
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert live and all(p.exists() for p in live)  # a real kill runs no clean-up
    with workspace(tmp_path):
        pass
    assert not list(tmp_path.iterdir())


def test_the_mention_cache_keeps_only_what_the_night_used(tmp_path) -> None:
    from etl.unify_cache import MentionCache

    cache = MentionCache(tmp_path / "mentions")
    used = cache.path("gongan.population", date(2026, 11, 28), "sha256:" + "a" * 64)
    writer = cache.writer(used)
    writer.write(pa.table({"x": [1, 2]}))
    writer.finish()
    killed = cache.writer(cache.path("gongan.population", date(2026, 11, 29), "sha256:b"))
    killed.write(pa.table({"x": [3]}))  # never finished: a run killed mid-write
    older = cache.path("gongan.population", date(2026, 11, 27), "sha256:c")
    older.write_bytes(b"a partition written again since")
    assert (tmp_path / "mentions").stat().st_mode & 0o777 == 0o700
    assert cache.keep_only({used}) and [p.name for p in cache.folder.iterdir()] == [used.name]
    assert [t.num_rows for t in cache.read(used)] == [2] and used.stat().st_mode & 0o777 == 0o600
    assert cache.holds(used, 2)
    # a file cut short (a damaged disk, a hand-copied cache) is not read: made again
    used.write_bytes(used.read_bytes()[:-40])
    assert not cache.holds(used, 2) and not used.exists()


_PAUSED_UNIFY = """
import sys, time
from datetime import date
from pathlib import Path
from etl.nightly import Night, unify
from etl.settings import LakeSettings
from etl.unify_state import UnifyState

def paused(self):  # the lake has committed the night; the state is not yet renamed
    Path(sys.argv[2]).write_text("committed")
    while True:
        time.sleep(0.05)

UnifyState.publish_next = paused
settings = LakeSettings.under(Path(sys.argv[1]))
unify(Night.open(date.fromisoformat(sys.argv[3]), "killed", settings))
"""


def test_a_night_killed_after_its_commit_leaves_a_state_the_next_run_can_trust(
    tmp_path,
) -> None:
    """SIGKILL between the lake's commit and the state's rename (a real process, a real
    kill): the kept state is still the first night's and the store does not list the
    killed night, so the rerun starts from that state, removes what the killed process
    left, and gives the tables a rebuild with the kept model gives."""
    from datetime import timedelta

    import simulator
    from catalog.definitions import load_catalog
    from etl.nightly import Night, open_night, unify
    from etl.settings import LakeSettings
    from tests.helpers import DEMO_DATE, busy_departments, extract_and_validate

    settings = LakeSettings.under(tmp_path)
    departments = busy_departments(tmp_path / "var")  # updates, inserts and deletes daily
    settings = LakeSettings(**{**settings.__dict__, "departments_dir": departments})
    second = DEMO_DATE + timedelta(days=1)
    lake = settings.lake()
    for ds in (DEMO_DATE, second):
        if ds == second:
            simulator.advance_day(departments)
        open_night(Night.open(ds, f"run-{ds}", settings))
        extract_and_validate(
            load_catalog().datasets, departments, ds, lake=lake, store=lake.store,
            run_id=f"run-{ds}", work_dir=tmp_path / "work",
        )  # fmt: skip
    unify(Night.open(DEMO_DATE, "first", settings))
    kept = settings.var / "cache" / "unify"
    before = (kept / "state.duckdb").read_bytes()

    marker = tmp_path / "committed"
    code = [sys.executable, "-c", _PAUSED_UNIFY, str(tmp_path), str(marker), second.isoformat()]
    proc = subprocess.Popen(code, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not marker.exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "the unification never reached its commit"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # the kept state is untouched; the killed night's next state is left beside it
    assert (kept / "state.duckdb").read_bytes() == before
    assert len(list(kept.glob("state.next-*"))) == 1
    assert lake.store.unification(second) is None  # its figures were never recorded

    unify(Night.open(second, "rerun", settings))
    assert lake.store.unification(second).details["how"] == "incremental"
    shown = CliRunner().invoke(main, ["status"], env={"YIMEN_HOME": str(tmp_path)})
    assert "persons re-resolved (model of 2026-11-28)" in shown.output, shown.output
    assert [p.name for p in kept.iterdir()] == ["state.duckdb"]  # the leftover is removed

    def tables() -> dict[str, pd.DataFrame]:
        out = {}
        for name in TABLES:
            frame = lake.read_partition(lake.unified_partition(name, second)).to_pandas()
            out[name] = frame.sort_values(list(frame.columns[:3])).reset_index(drop=True)
        return out

    incremental = tables()
    unify(Night.open(second, "rebuild", settings))  # a rerun: a rebuild, with the kept model
    assert lake.store.unification(second).details["how"].startswith("rebuild")
    rebuilt = tables()
    for name in TABLES:
        pd.testing.assert_frame_equal(rebuilt[name], incremental[name], obj=name)


def test_a_kept_model_serves_only_the_lake_and_the_week_that_kept_it(tmp_path) -> None:
    """A rebuild reuses the kept model (so that a rerun equals the first run) only while the
    night the state is of is still committed as the state wrote it, and for a week: a lake
    deleted or reset under a kept state, or an old model, is estimated again."""
    from datetime import timedelta

    from catalog.store import CatalogStore, PartitionRecord
    from etl.unify_state import PERSON_TABLES, StateMark, UnifyState, state_code

    store = CatalogStore(f"sqlite:///{tmp_path / 'catalog.db'}")
    state = UnifyState(tmp_path / "unify")
    model = {"threshold": 20.0, "m": {"name": [0.9, 0.1]}, "u": {"name": [0.01, 0.99]}, "rows": 9}
    fingerprints = {name: f"sha256:{i}" for i, name in enumerate(PERSON_TABLES)}
    mark = StateMark(DS, fingerprints, state_code(), model, DS, {})
    with workspace() as ws:
        state.write_next(ws, {"person_name": "SELECT 'chen wei' AS k_name, 0.5 AS name_tf"})
    state.mark_next(mark)
    state.publish_next()
    assert state.kept_model(store, DS, 7) is None  # a lake that never committed that night

    def commit(fingerprint_of) -> None:
        store.start_run("r", DS)
        for name in PERSON_TABLES:
            part = PartitionRecord(RAW_UNIFIED, name, DS, f"x/{name}", 1, fingerprint_of(name))
            store.record_partition("r", part)

    commit(lambda name: "sha256:rewritten")
    assert state.kept_model(store, DS, 7) is None  # that night written again since
    commit(fingerprints.get)
    kept = state.kept_model(store, DS + timedelta(days=6), 7)
    assert kept is not None and kept.model.threshold == 20.0 and kept.rows == 9
    assert kept.name_tf.to_pydict() == {"k_name": ["chen wei"], "name_tf": [0.5]}
    assert state.kept_model(store, DS + timedelta(days=7), 7) is None  # a week old
