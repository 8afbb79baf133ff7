"""Simulator tests: determinism, formats, identifier validity, dirt rates, daily changes,
connections and hostile deliveries. Small scale so the whole file runs in seconds."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import sqlite3
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from stdnum.cn import ric, uscc
from stdnum.iso7064 import mod_11_10

from catalog.identifiers import org_code_check_chars
from etl.contract import control_path, file_sha256
from simulator import (
    HOSTILE_KINDS,
    DailyRates,
    DirtRates,
    advance_day,
    build_departments,
    make_hostile_delivery,
)
from simulator import enterprises as ent
from simulator.catalog_view import catalog_by_id
from simulator.departments import PLANS
from simulator.hostile import (
    ADDED_COLUMN,
    CUT_SHARE,
    HUGE_FIELD_BYTES,
    NOTES,
    hostile_kinds,
    renamed,
    victim,
)
from simulator.population import names as person_names
from simulator.vocab import TRADITIONAL
from simulator.writers import sql_connection_entry
from tests.helpers import postgres_url

AS_OF = date(2017, 2, 23)
NEXT = date(2017, 2, 24)
SCALE = 0.002
CATALOG = catalog_by_id()
SQL_TABLES = {
    v.id: (v.department, v.source.table) for v in CATALOG.values() if v.source.kind == "sql"
}
FULLWIDTH_RE = re.compile("[\uff10-\uff19\uff21-\uff3a\uff41-\uff5a]")
ZERO_WIDTH_RE = re.compile("[\u200b\ufeff]")
DATE_STYLES = {
    "iso": re.compile(r"^\d{4}-\d{2}-\d{2}$"),
    "slash": re.compile(r"^\d{4}/\d{1,2}/\d{1,2}$"),
    "compact": re.compile(r"^\d{8}$"),
    "chinese": re.compile(r"^\d{4}年\d{1,2}月\d{1,2}日$"),
}
PHONE_CLEAN = re.compile(r"^1\d{10}$")


def _build(root: Path, **kwargs) -> Path:
    out = root / "departments"
    build_departments(out, scale=kwargs.pop("scale", SCALE), as_of=AS_OF, **kwargs)
    return out


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(tmp_path_factory.mktemp("clean"))


FULLWIDTH_BACK = str.maketrans({0xFF10 + i: c for i, c in enumerate("0123456789")}) | {
    0xFF21 + i: c for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
}

# dirt set well above the defaults so that counts are meaningful at small scale
HIGH = DirtRates(
    duplicate=0.05,
    id15=0.10,
    lower_x=0.5,
    fullwidth=0.05,
    spaces=0.08,
    zero_width=0.05,
    traditional=0.10,
    name_space=0.05,
    homophone=0.10,
    no_id=0.05,
    bad_check=0.05,
    date_format=0.30,
    phone_format=0.25,
    ent_name_variant=0.30,
    ent_name_typo=0.10,
    ent_address_variant=0.30,
    stale_org_code=0.10,
    legacy_tax_no=0.7,
    org_code_no_hyphen=0.2,
)


@pytest.fixture(scope="module")
def dirty_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(tmp_path_factory.mktemp("dirty"), scale=0.004, dirt=HIGH)


def _sql(out: Path, dataset: str) -> pd.DataFrame:
    dept, table = SQL_TABLES[dataset]
    with sqlite3.connect(out / dept / f"{dept}.db") as conn:
        return pd.read_sql_query(f'SELECT * FROM "{table}" ORDER BY rowid', conn, dtype=str)


def _drop(out: Path, dataset: str, ds: date = AS_OF) -> pd.DataFrame:
    view = CATALOG[dataset]
    path = out / view.department / view.file_name(ds.strftime("%Y%m%d"))
    kind = view.source.kind
    if kind == "csv":
        return pd.read_csv(
            path, dtype=str, encoding=view.source.encoding, keep_default_na=False, na_values=[""]
        )
    if kind == "jsonl":
        return pd.DataFrame([json.loads(line) for line in path.read_text("utf-8").splitlines()])
    return pd.read_excel(path, engine="calamine", dtype=str)


def _delivered(out: Path, dataset: str, ds: date = AS_OF) -> pd.DataFrame:
    return _sql(out, dataset) if dataset in SQL_TABLES else _drop(out, dataset, ds)


def _truth(out: Path, dataset: str) -> pd.DataFrame:
    return pd.read_parquet(out.parent / "ground_truth" / f"{dataset}.parquet")


def _has(truth: pd.DataFrame, kind: str) -> np.ndarray:
    return truth["dirt"].fillna("").str.split(";").apply(lambda kinds: kind in kinds).to_numpy()


# --- shape and determinism --------------------------------------------------------------


def test_row_counts_and_catalog_columns(clean_run: Path) -> None:
    meta = json.loads((clean_run / "_state" / "meta.json").read_text("utf-8"))
    for dataset, plan in PLANS.items():
        frame = _delivered(clean_run, dataset)
        assert list(frame.columns) == list(CATALOG[dataset].fields), dataset
        assert len(frame) == round(plan.full_rows * SCALE) == meta["datasets"][dataset]["rows"]
        truth = _truth(clean_run, dataset)
        assert list(truth.columns) == ["source_key", "entity_id", "entity_kind", "dirt"]
        assert truth["source_key"].tolist() == frame[CATALOG[dataset].key].tolist()
        assert frame[CATALOG[dataset].key].is_unique, dataset


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path, clean_run: Path) -> None:
    again = _build(tmp_path / "again")
    other = _build(tmp_path / "other", seed=7)
    for view in CATALOG.values():
        if view.source.kind == "sql":
            assert _sql(again, view.id).equals(_sql(clean_run, view.id)), view.id
            assert not _sql(other, view.id).equals(_sql(clean_run, view.id)), view.id
        else:
            name = view.file_name("20170223")
            first = (clean_run / view.department / name).read_bytes()
            assert (again / view.department / name).read_bytes() == first, view.id
            assert (other / view.department / name).read_bytes() != first, view.id
        assert _truth(again, view.id).equals(_truth(clean_run, view.id))


def test_many_small_batches_keep_counts_and_unique_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches are seeded by (seed, batch index): many small batches still give exact
    row counts, unique keys and duplicates spread over all of them."""
    monkeypatch.setattr("simulator.build.BATCH_ROWS", 1000)
    out = _build(tmp_path)
    frame = _sql(out, "gongan.population")
    truth = _truth(out, "gongan.population")
    assert len(frame) == round(PLANS["gongan.population"].full_rows * SCALE)
    assert frame["person_no"].is_unique and frame["id_no"].notna().all()
    dup_rows = np.flatnonzero(_has(truth, "duplicate"))
    assert len(np.unique(dup_rows // 1000)) >= 5  # every batch has its share


# --- formats ------------------------------------------------------------------------------


def test_file_formats(clean_run: Path) -> None:
    renshe = next((clean_run / "renshe").glob("*.csv")).read_bytes()
    renshe.decode("gbk")
    with pytest.raises(UnicodeDecodeError):
        renshe.decode("utf-8")
    assert renshe.decode("gbk").splitlines()[0].replace('"', "").split(",") == list(
        CATALOG["renshe.insured_person"].fields
    )

    zhijian = next((clean_run / "zhijian").glob("*.csv")).read_bytes()
    assert zhijian.startswith(b"\xef\xbb\xbf")
    assert not zhijian[3:].startswith(b"\xef\xbb\xbf")

    for line in next((clean_run / "weiji").glob("*.jsonl")).read_text("utf-8").splitlines():
        record = json.loads(line)
        assert list(record) == list(CATALOG["weiji.health_record"].fields)
        assert all(v is None or isinstance(v, str) for v in record.values())

    xlsx = _drop(clean_run, "guoshui.taxpayer")
    state = pd.read_parquet(clean_run / "_state" / "guoshui.taxpayer.parquet")
    assert xlsx["tax_no"].tolist() == state["tax_no"].tolist()  # leading zeros and X kept
    bare = xlsx["tax_no"].str.replace(r"[\s\u200b\ufeff]", "", regex=True)
    assert bare.str.len().isin([15, 18, 20]).all()
    assert not bare.str.contains(r"e\+|\.0$", regex=True).any()


def test_sql_tables_are_text_with_updated_at_index(clean_run: Path) -> None:
    for dataset, (dept, table) in SQL_TABLES.items():
        with sqlite3.connect(clean_run / dept / f"{dept}.db") as conn:
            types = {row[2] for row in conn.execute(f'PRAGMA table_info("{table}")')}
            indexes = [row[1] for row in conn.execute(f'PRAGMA index_list("{table}")')]
            cols = [conn.execute(f'PRAGMA index_info("{ix}")').fetchall()[0][2] for ix in indexes]
            stamps = [r[0] for r in conn.execute(f'SELECT updated_at FROM "{table}"')]
        assert types == {"TEXT"}, dataset
        assert "updated_at" in cols, dataset
        assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", s) for s in stamps)
        assert max(stamps) < "2017-02-24"


# --- identifiers -------------------------------------------------------------------------


def test_world_identifiers_are_valid(clean_run: Path) -> None:
    persons = pd.read_parquet(clean_run / "_state" / "persons.parquet")
    ids = persons["id_no"].tolist()
    assert len(set(ids)) == len(ids)
    assert all(ric.calc_check_digit(i) == i[17] for i in ids)
    # odd sequence = male
    assert all(
        (int(i[16]) % 2 == 1) == (sex == 0) for i, sex in zip(ids, persons["sex"], strict=True)
    )
    firms = pd.read_parquet(clean_run / "_state" / "enterprises.parquet")
    assert firms["name"].is_unique and firms["uscc"].is_unique
    assert all(uscc.calc_check_digit(c[:17]) == c[17] for c in firms["uscc"])
    assert (firms["uscc"].str.slice(8, 17) == firms["org_code"]).all()
    org = firms["org_code"].to_numpy(dtype=str)
    assert (org_code_check_chars([o[:8] for o in org]) == [o[8] for o in org]).all()
    reg = firms.loc[firms["reg_no"] != "", "reg_no"]
    assert len(reg) > 0 and all(mod_11_10.is_valid(r) for r in reg)


def test_clean_delivered_ids_valid(clean_run: Path) -> None:
    frame = _sql(clean_run, "gongan.population")
    truth = _truth(clean_run, "gongan.population")
    clean = frame[
        (truth["dirt"] == "").to_numpy()
        | ~truth["dirt"]
        .str.contains("id15|bad_check|lower_x|fullwidth|spaces|zero_width")
        .to_numpy()
    ]
    assert len(clean) > 0.8 * len(frame)
    assert all(ric.calc_check_digit(i) == i[17] for i in clean["id_no"])


def test_population_is_realistic(clean_run: Path) -> None:
    persons = pd.read_parquet(clean_run / "_state" / "persons.parquet")
    ids = persons["id_no"]
    outside = ~ids.str.startswith("4407")
    assert 0.08 < outside.mean() < 0.16
    retired = ids.str.slice(0, 6).isin(
        ["440702", "440711", "440721", "440722", "440723", "440724", "440725", "440782"]
    )
    assert 0.05 < retired.mean() < 0.3
    surnames = person_names(persons.iloc[:5000])
    top = pd.Series([s[0] for s in surnames]).value_counts()
    assert top.index[0] == "陈"
    assert 0.47 < (persons["sex"] == 1).mean() < 0.52
    firms = pd.read_parquet(clean_run / "_state" / "enterprises.parquet")
    assert (firms["uscc"].str.slice(0, 2) == "92").mean() > 0.25  # individual businesses


# --- dirt ----------------------------------------------------------------------------------


def _rate_close(observed: int, eligible: int, rate: float) -> None:
    expected = eligible * rate
    assert eligible > 50
    assert abs(observed - expected) <= max(4 * np.sqrt(expected * (1 - rate)), 0.25 * expected), (
        observed,
        expected,
    )


def test_identifier_dirt_rates(dirty_run: Path) -> None:
    frame = _sql(dirty_run, "gongan.population")
    truth = _truth(dirty_run, "gongan.population")
    ids = frame["id_no"].fillna("")
    normal = ids.str.replace(r"[\s\u200b\ufeff]", "", regex=True).map(
        lambda s: s.translate({c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F)})
    )

    fullwidth = _has(truth, "fullwidth")
    _rate_close(fullwidth.sum(), len(frame), HIGH.fullwidth)
    assert (ids[fullwidth].str.contains(FULLWIDTH_RE)).all()
    assert not ids[~fullwidth].str.contains(FULLWIDTH_RE).any()

    spaces = _has(truth, "spaces")
    _rate_close(spaces.sum(), len(frame), HIGH.spaces)
    assert ids[spaces].str.contains(" ").all() and not ids[~spaces].str.contains(" ").any()

    zero = _has(truth, "zero_width")
    _rate_close(zero.sum(), len(frame), HIGH.zero_width)
    assert ids[zero].str.contains(ZERO_WIDTH_RE).all()
    assert not ids[~zero].str.contains(ZERO_WIDTH_RE).any()

    id15 = _has(truth, "id15")
    born_1900s = (normal.str.len() == 15) | (normal.str.slice(6, 8) == "19")
    _rate_close(id15.sum(), int(born_1900s.sum()), HIGH.id15)
    assert (normal[id15].str.len() == 15).all() and (normal[~id15].str.len() == 18).all()

    bad = _has(truth, "bad_check")
    _rate_close(bad.sum(), int((~id15).sum()), HIGH.bad_check)
    upper = normal.str.upper()
    check_ok = upper.map(lambda s: len(s) == 18 and ric.calc_check_digit(s) == s[17])
    assert not check_ok[bad].any() and check_ok[~bad & ~id15].all()

    lower = _has(truth, "lower_x")
    ends_x = normal.str.upper().str.endswith("X")
    _rate_close(lower.sum(), int(ends_x.sum()), HIGH.lower_x)
    assert normal[lower].str.endswith("x").all() and not normal[~lower].str.endswith("x").any()


def test_name_dirt_rates(dirty_run: Path, clean_run: Path) -> None:
    frame = _sql(dirty_run, "gongan.population")
    truth = _truth(dirty_run, "gongan.population")
    persons = pd.read_parquet(dirty_run / "_state" / "persons.parquet")
    rows = truth["entity_id"].str.slice(1).astype(int).to_numpy() - 1
    true_names = pd.Series(person_names(persons.iloc[rows]), index=frame.index)
    delivered = frame["name"]

    space = _has(truth, "name_space")
    _rate_close(space.sum(), len(frame), HIGH.name_space)
    assert delivered[space].str.contains(" ").all()
    assert not delivered[~space].str.contains(" ").any()

    trad = _has(truth, "traditional")
    simplified = "[" + "".join(TRADITIONAL) + "]"
    traditional = "[" + "".join(TRADITIONAL.values()) + "]"
    assert delivered[trad].str.contains(traditional).all()
    assert not delivered[~trad].str.contains(traditional).any()
    _rate_close(trad.sum(), int(true_names.str.contains(simplified).sum()), HIGH.traditional)

    homophone = _has(truth, "homophone")
    assert homophone.sum() > 20
    untouched = ~(space | trad | homophone)
    assert (delivered[untouched] == true_names[untouched]).all()
    assert (delivered[homophone & ~space & ~trad] != true_names[homophone & ~space & ~trad]).all()


def test_duplicates_and_missing_ids(dirty_run: Path) -> None:
    for dataset in (
        "gongan.population",
        "renshe.insured_person",
        "gongshang.enterprise_registration",
    ):
        truth = _truth(dirty_run, dataset)
        dup = _has(truth, "duplicate")
        _rate_close(dup.sum(), len(truth), HIGH.duplicate)
        assert truth.loc[dup, "entity_id"].isin(truth.loc[~dup, "entity_id"]).all()
        assert truth["source_key"].is_unique
    frame = _drop(dirty_run, "renshe.insured_person")
    truth = _truth(dirty_run, "renshe.insured_person")
    no_id = _has(truth, "no_id")
    _rate_close(no_id.sum(), len(frame), HIGH.no_id)
    assert frame.loc[no_id, "id_no"].isna().all() and frame.loc[~no_id, "id_no"].notna().all()
    assert frame.loc[no_id, ["name", "birth_date"]].notna().all().all()
    # systems that always hold an ID never lose it
    assert _sql(dirty_run, "gongan.population")["id_no"].notna().all()


def test_date_and_phone_formats(dirty_run: Path) -> None:
    frame = _drop(dirty_run, "renshe.insured_person")
    truth = _truth(dirty_run, "renshe.insured_person")
    dated = _has(truth, "date_format")
    _rate_close(dated.sum(), len(frame), HIGH.date_format)
    style = frame["birth_date"].map(
        lambda v: next(k for k, rx in DATE_STYLES.items() if rx.match(v))
    )
    assert (style[~dated] == "iso").all()
    assert (style[dated] != "iso").all()
    assert set(style[dated]) == {"slash", "compact", "chinese"}

    phoned = _has(truth, "phone_format")
    has_phone = frame["phone"].notna()
    _rate_close(phoned.sum(), int(has_phone.sum()), HIGH.phone_format)
    assert frame.loc[has_phone & ~phoned, "phone"].str.match(PHONE_CLEAN).all()
    odd = frame.loc[phoned, "phone"]
    assert not odd.str.match(PHONE_CLEAN).any()
    assert odd.str.replace(r"\D", "", regex=True).str[-11:].str.match(PHONE_CLEAN).all()


def test_enterprise_name_variants_and_legacy_codes(dirty_run: Path) -> None:
    frame = _sql(dirty_run, "gongshang.enterprise_registration")
    truth = _truth(dirty_run, "gongshang.enterprise_registration")
    firms = pd.read_parquet(dirty_run / "_state" / "enterprises.parquet")
    rows = truth["entity_id"].str.slice(1).astype(int).to_numpy() - 1
    true_names = firms["name"].to_numpy()[rows]
    variant = _has(truth, "ent_name_variant")
    typo = _has(truth, "ent_name_typo")
    assert variant.sum() > 0.6 * HIGH.ent_name_variant * len(frame)
    assert typo.sum() > 0.6 * HIGH.ent_name_typo * len(frame)
    dirty = variant | typo
    assert (frame.loc[dirty, "name"].to_numpy() != true_names[dirty]).all()
    assert (frame.loc[~dirty, "name"].to_numpy() == true_names[~dirty]).all()
    # a variant normalises back to the true name's normal form; a typo changes one character
    from etl.standardise import normalised_enterprise_name, simplified_chinese

    def norm(names) -> list:
        arrow = pa.array(pd.Series(names).str.strip().tolist(), pa.string())
        return normalised_enterprise_name(simplified_chinese(pc.utf8_normalize(arrow, "NFKC")))

    only_variant = variant & ~typo
    spelt = norm(frame.loc[only_variant, "name"])
    true = norm(true_names[only_variant])
    district = "^(蓬江区|江海区|新会区|台山市|开平市|鹤山市|恩平市)"
    core = pc.replace_substring_regex(spelt, district, "")
    assert core.equals(pc.replace_substring_regex(true, district, ""))
    typed = frame.loc[typo & ~variant, "name"].to_numpy()
    assert all(
        len(a) == len(b) and sum(x != y for x, y in zip(a, b, strict=True)) == 1
        for a, b in zip(typed, true_names[typo & ~variant], strict=True)
    )
    addresses = ent.addresses(firms.iloc[rows])
    moved = _has(truth, "ent_address_variant")
    assert moved.sum() > 0.6 * HIGH.ent_address_variant * len(frame)
    assert (frame.loc[moved, "address"].to_numpy() != addresses[moved]).all()
    assert (frame.loc[~moved, "address"].to_numpy() == addresses[~moved]).all()

    zhijian = _drop(dirty_run, "zhijian.org_code")
    ztruth = _truth(dirty_run, "zhijian.org_code")
    plain = _has(ztruth, "org_code_no_hyphen")
    code = zhijian["org_code"].str.replace(r"[\s\u200b\ufeff]", "", regex=True)
    assert code[plain].str.fullmatch(r"[0-9A-Z０-９Ａ-Ｚ]{9}").all()
    assert code[~plain].str.fullmatch(r"[0-9A-Z０-９Ａ-Ｚ]{8}-[0-9X０-９Ｘ]").all()
    # a stale organisation code is in no firm's USCC, a current one is
    stale = _has(ztruth, "stale_org_code")
    digits = code.str.replace("-", "").str.translate(FULLWIDTH_BACK).str.upper()
    in_uscc = digits.isin(firms["uscc"].str.slice(8, 17))
    assert stale.sum() > 0 and not in_uscc[stale].any() and in_uscc[~stale].all()

    tax = _drop(dirty_run, "guoshui.taxpayer")
    ttruth = _truth(dirty_run, "guoshui.taxpayer")
    legacy = _has(ttruth, "legacy_tax_no")
    raw = tax["tax_no"].str.replace(r"[\s\u200b\ufeff]", "", regex=True)
    assert legacy.sum() > 0 and (raw[legacy].str.len() == 15).all()
    assert (raw[~legacy].str.len().isin([18, 20])).all()


def test_zero_width_never_in_gbk_file(dirty_run: Path) -> None:
    truth = _truth(dirty_run, "renshe.insured_person")
    assert not _has(truth, "zero_width").any()
    next((dirty_run / "renshe").glob("*.csv")).read_bytes().decode("gbk")


# --- one day later ---------------------------------------------------------------------


def test_advance_day(tmp_path: Path, clean_run: Path) -> None:
    out = tmp_path / "departments"
    shutil.copytree(clean_run, out)
    shutil.copytree(clean_run.parent / "ground_truth", tmp_path / "ground_truth")
    meta = json.loads((out / "_state" / "meta.json").read_text("utf-8"))
    meta["ground_truth_dir"] = str(tmp_path / "ground_truth")
    (out / "_state" / "meta.json").write_text(json.dumps(meta), "utf-8")
    before = {d: _delivered(out, d) for d in PLANS}
    rates = DailyRates(update=0.02, insert=0.01, delete=0.005)
    twin = tmp_path / "twin"
    shutil.copytree(out, twin / "departments")
    shutil.copytree(tmp_path / "ground_truth", twin / "ground_truth")
    tmeta = json.loads((twin / "departments" / "_state" / "meta.json").read_text("utf-8"))
    tmeta["ground_truth_dir"] = str(twin / "ground_truth")
    (twin / "departments" / "_state" / "meta.json").write_text(json.dumps(tmeta), "utf-8")

    summary = advance_day(out, rates=rates)
    assert summary.as_of == NEXT
    for dataset in PLANS:
        old, key = before[dataset], CATALOG[dataset].key
        new = _delivered(out, dataset, NEXT)
        assert list(new.columns) == list(CATALOG[dataset].fields)
        assert summary.inserts[dataset] > 0, dataset
        truth = _truth(out, dataset)
        assert set(truth["source_key"]) == set(new[key]), dataset
        if dataset in SQL_TABLES:
            assert len(new) == len(old) + summary.inserts[dataset]
            today = new["updated_at"].str.startswith("2017-02-24")
            changed = summary.updates[dataset] + summary.inserts[dataset] + summary.deletes[dataset]
            assert today.sum() == changed, dataset
            # untouched rows keep their old updated_at
            kept = new.iloc[: len(old)][~today.iloc[: len(old)].to_numpy()]
            assert (
                kept["updated_at"].to_numpy() == old.loc[kept.index, "updated_at"].to_numpy()
            ).all()
            if PLANS[dataset].delete:
                col, flag = PLANS[dataset].delete
                assert summary.deletes[dataset] > 0
                flagged = (new[col] == flag).sum() - (old[col] == flag).sum()
                assert flagged == summary.deletes[dataset]
        else:
            gone = set(old[key]) - set(new[key])
            added = set(new[key]) - set(old[key])
            assert len(gone) == summary.deletes[dataset] > 0, dataset  # hard deletes
            assert len(added) == summary.inserts[dataset], dataset
            assert (new["updated_at"].str.startswith("2017-02-24")).sum() == (
                summary.updates[dataset] + summary.inserts[dataset]
            )
            assert summary.updates[dataset] > 0

    # the same day again from the same state gives the same result
    advance_day(twin / "departments", rates=rates)
    for dataset in PLANS:
        assert _delivered(twin / "departments", dataset, NEXT).equals(
            _delivered(out, dataset, NEXT)
        ), dataset


def test_a_simulated_day_holds_no_event_after_it(tmp_path: Path, clean_run: Path) -> None:
    """Birth dates (in IDs too), registrations, visits, acceptances, completions and
    ``updated_at`` of every system stay on or before the day simulated, night after night."""
    import pyarrow as pa

    from catalog.definitions import load_catalog
    from etl.standardise import canonical_dates

    out = tmp_path / "departments"
    shutil.copytree(clean_run, out)
    shutil.copytree(clean_run.parent / "ground_truth", tmp_path / "ground_truth")
    meta = json.loads((out / "_state" / "meta.json").read_text("utf-8"))
    meta["ground_truth_dir"] = str(tmp_path / "ground_truth")
    (out / "_state" / "meta.json").write_text(json.dumps(meta), "utf-8")
    lake_catalog = load_catalog()
    rates = DailyRates(update=0.05, insert=0.05, delete=0.005)  # many events per day
    for night in range(4):  # the day built, then three simulated days
        day = advance_day(out, rates=rates).as_of if night else AS_OF
        for dataset in PLANS:
            rows = _delivered(out, dataset, day)
            for f in lake_catalog.dataset(dataset).fields:
                values = pa.array(rows[f.name].astype("string"), pa.string(), from_pandas=True)
                if f.type in {"date", "datetime"} and f.name != "valid_until":
                    iso = pd.Series(
                        canonical_dates(values, with_time=False).to_pandas(), dtype="string"
                    ).str.slice(0, 10)
                    late = iso.dropna()[iso.dropna() > day.isoformat()]
                    assert late.empty, f"{dataset}.{f.name} after {day}: {late.head(3).tolist()}"
                if f.rule in {"resident_id", "applicant_id"}:
                    ids = rows[f.name]
                    if f.rule == "applicant_id":  # legal persons apply with a USCC
                        ids = ids[rows["applicant_type"] == "自然人"]
                    ids = ids.dropna()
                    births = ids[ids.str.fullmatch(r"[0-9]{17}[0-9Xx]")].str.slice(6, 14)
                    late = births[births > day.strftime("%Y%m%d")]
                    assert late.empty, f"{dataset}.{f.name} born after {day}: {late.tolist()}"


# --- connections ---------------------------------------------------------------------------


def test_connections_json(clean_run: Path) -> None:
    conns = json.loads((clean_run / "connections.json").read_text("utf-8"))
    assert set(conns) == {v.source.connection_id for v in CATALOG.values()}
    for view in CATALOG.values():
        entry = conns[view.source.connection_id]
        if view.source.kind == "sql":
            assert entry["conn_type"] == "sqlite" and Path(entry["host"]).is_file()
        else:
            assert entry["conn_type"] == "fs"
            assert Path(entry["extra"]["path"]) == clean_run / view.department


def test_postgres_url_becomes_airflow_connection() -> None:
    entry = sql_connection_entry("postgresql+psycopg://lake:secret@db.local:5433/gongan")
    assert entry == {
        "conn_type": "postgres",
        "host": "db.local",
        "port": 5433,
        "login": "lake",
        "password": "secret",
        "schema": "gongan",
    }


# --- hostile deliveries -------------------------------------------------------------------

FILE_DROPS = [v.id for v in CATALOG.values() if v.source.kind != "sql"]


def _read_any(path: Path, dataset: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a delivery, read the strict way."""
    view = CATALOG[dataset]
    if view.source.kind == "excel":
        frame = pd.read_excel(path, engine="calamine", dtype=str, sheet_name=view.source.sheet)
        return list(frame.columns), frame.fillna("").to_numpy().tolist()
    text = path.read_bytes().decode(view.source.encoding or "utf-8")
    if view.source.kind == "jsonl":
        records = [json.loads(line) for line in text.splitlines() if line.strip()]
        return (list(records[0]) if records else []), [list(r.values()) for r in records]
    csv.field_size_limit(1 << 30)
    table = list(csv.reader(io.StringIO(text)))
    return table[0], table[1:]


@pytest.mark.parametrize("dataset", FILE_DROPS)
def test_hostile_deliveries(tmp_path: Path, clean_run: Path, dataset: str) -> None:
    out = tmp_path / "departments"
    shutil.copytree(clean_run, out)
    view = CATALOG[dataset]
    fields = list(view.fields)
    good = out / view.department / view.file_name("20170223")
    header, rows = _read_any(good, dataset)
    full = round(PLANS[dataset].full_rows * SCALE)
    assert header == fields and len(rows) == full
    first_row = rows[0]
    good_text = good.read_bytes() if view.source.kind != "excel" else b""
    assert _control(good) == {"file": good.name, "rows": full, "sha256": file_sha256(good)}
    assert set(hostile_kinds(dataset)) <= set(HOSTILE_KINDS)
    for kind in hostile_kinds(dataset):
        path = make_hostile_delivery(out, dataset, kind, AS_OF)
        assert path == good
        control = _control(path)
        if kind in ("truncated", "cut_at_row"):  # the full export's control file stays
            assert control["rows"] == full and control["sha256"] != file_sha256(path)
        elif kind != "empty":  # the department's tool wrote it for the file it sent
            assert control["sha256"] == file_sha256(path)
        if kind == "empty":
            assert path.stat().st_size == 0
        elif kind == "header_only":
            assert path.stat().st_size > 0
            header, rows = _read_any(path, dataset)
            assert rows == [] and header in (fields, [])
        elif kind == "truncated":
            if view.source.kind == "excel":
                with pytest.raises(Exception):  # noqa: B017 - any reader error: not a zip
                    pd.read_excel(path, engine="calamine", dtype=str)
            elif view.source.kind == "jsonl":
                last = path.read_text("utf-8").splitlines()[-1]
                with pytest.raises(json.JSONDecodeError):
                    json.loads(last)
            else:
                header, rows = _read_any(path, dataset)
                assert 0 < len(rows) < round(PLANS[dataset].full_rows * SCALE)
                assert len(rows[-1]) < len(fields)
        elif kind == "wrong_encoding":
            data = path.read_bytes()
            declared = (view.source.encoding or "utf-8").lower()
            if declared == "gbk":
                text = data.decode("utf-8")  # declared GBK, written as UTF-8
                assert data.decode("gbk", "replace") != text
            else:
                assert not data.startswith(b"\xef\xbb\xbf")
                with pytest.raises(UnicodeDecodeError):
                    data.decode("utf-8")
        elif kind == "added_column":
            header, rows = _read_any(path, dataset)
            assert header == [*fields, ADDED_COLUMN]
        elif kind == "missing_column":
            header, _ = _read_any(path, dataset)
            assert header == [f for f in fields if f != victim(view)]
        elif kind == "renamed_column":
            header, _ = _read_any(path, dataset)
            assert victim(view) not in header and renamed(victim(view)) in header
            assert len(header) == len(fields)
        elif kind == "huge_field":
            header, rows = _read_any(path, dataset)
            longest = max(len(str(v).encode("utf-8")) for row in rows for v in row)
            assert longest >= HUGE_FIELD_BYTES
        elif kind == "cut_at_row":  # cleanly after a row: every row whole, 40 % missing
            header, rows = _read_any(path, dataset)
            assert len(rows) == int(full * CUT_SHARE) and header == fields
            assert all(len(r) == len(fields) for r in rows)
            if view.source.kind != "excel":
                assert path.read_bytes().endswith(b"\n")
        elif kind == "notes_sheet":
            from python_calamine import CalamineWorkbook

            book = CalamineWorkbook.from_path(str(path))
            assert book.sheet_names == ["说明", view.source.sheet]
            assert [r[0] for r in book.get_sheet_by_index(0).iter_rows()] == NOTES
            assert _read_any(path, dataset)[0] == fields and control["rows"] == full
        elif kind == "headerless":
            header, rows = _read_any(path, dataset)
            assert header == first_row and len(rows) == full - 1 and control["rows"] == full
        elif kind == "duplicated_column":
            header = _raw_header(path, dataset)
            assert len(header) == len(fields) and len(set(header)) == len(fields) - 1

        elif kind == "mixed_encoding":
            data = path.read_bytes()
            declared = view.source.encoding or "utf-8"
            if declared.lower() == "gbk":  # UTF-8 fields that still decode: mojibake
                text = data.decode("gbk")
                assert len(text.splitlines()) == round(PLANS[dataset].full_rows * SCALE) + 1
                assert data != good_text  # written again, then mixed
            else:  # GBK rows inside a UTF-8 file
                with pytest.raises(UnicodeDecodeError):
                    data.decode("utf-8")
        elif kind == "nul_in_name":
            header, rows = _read_any(path, dataset)
            assert "\x00" in "".join(str(v) for v in rows[0])


def _control(path: Path) -> dict:
    return json.loads(control_path(path).read_text("utf-8"))


def _raw_header(path: Path, dataset: str) -> list[str]:
    """The header cells as written (pandas would rename a repeated one)."""
    view = CATALOG[dataset]
    if view.source.kind == "excel":
        from python_calamine import CalamineWorkbook

        sheet = CalamineWorkbook.from_path(str(path)).get_sheet_by_name(view.source.sheet)
        return [str(c) for c in next(sheet.iter_rows())]
    first = path.read_bytes().split(b"\n", 1)[0].decode(view.source.encoding or "utf-8")
    return next(csv.reader([first.lstrip("\ufeff")]))


def test_hostile_rejects_sql_and_unknown_kind(clean_run: Path) -> None:
    with pytest.raises(ValueError):
        make_hostile_delivery(clean_run, "gongan.population", "empty", AS_OF)
    with pytest.raises(ValueError):
        make_hostile_delivery(clean_run, "renshe_drop", "gibberish", AS_OF)  # type: ignore[arg-type]


@pytest.mark.skipif(postgres_url() is None, reason="no test PostgreSQL (make test starts one)")
def test_sql_system_in_postgresql(tmp_path: Path) -> None:
    from sqlalchemy import create_engine, text

    url = postgres_url()
    assert url is not None
    out = _build(tmp_path, sql_urls={"xingzheng_db": url})
    conns = json.loads((out / "connections.json").read_text("utf-8"))
    assert conns["xingzheng_db"]["conn_type"] == "postgres"
    assert not (out / "xingzheng" / "xingzheng.db").exists()
    engine = create_engine(url)
    query = text("SELECT count(*), max(updated_at) FROM service_case")
    with engine.connect() as conn:
        count, newest = conn.execute(query).one()
    assert count == round(PLANS["xingzheng.service_case"].full_rows * SCALE)
    summary = advance_day(out, rates=DailyRates(update=0.01, insert=0.01, delete=0.0))
    with engine.connect() as conn:
        after, today = conn.execute(
            text(
                "SELECT count(*), sum(CASE WHEN updated_at >= '2017-02-24' THEN 1 ELSE 0 END) "
                "FROM service_case"
            )
        ).one()
    engine.dispose()
    assert newest < "2017-02-24"
    assert after == count + summary.inserts["xingzheng.service_case"]
    assert (
        today
        == summary.inserts["xingzheng.service_case"] + summary.updates["xingzheng.service_case"]
    )
