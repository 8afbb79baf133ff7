"""Open data (issue 12): k-anonymity on every published table, blocking, statistics against
the clean data, no personal data in any public file, DCAT with real byte sizes, lineage
back to the deliveries, and one-line errors for bad input.

Everything runs on the session's simulated departments: the open-able datasets are
extracted and validated into a private lake, then published as the night does it.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from catalog.definitions import DEFINITIONS_DIR, Catalog, load_catalog
from catalog.errors import CatalogError, LakeError, PublicationBlocked
from catalog.lineage import source_deliveries, upstream
from catalog.store import CatalogStore, PartitionRecord
from etl.publish_public import LeakFound, publish_open_data
from etl.statistics import month_labels, suppressed_small_cells
from etl.zones import PUBLIC, RAW_CLEAN, RAW_SOURCES, Lake, excel_csv
from masking.leak_scan import scan_table
from tests.helpers import DEMO_DATE, extract_and_validate

CATALOG = load_catalog()
OPENABLE = [d for d in CATALOG.datasets if d.openable]
OPENABLE_IDS = {d.id for d in OPENABLE}


@dataclass
class Published:
    root: Path
    lake: Lake
    store: CatalogStore

    @property
    def public(self) -> Path:
        return Path(self.lake.root) / PUBLIC

    def clean(self, dataset_id: str) -> pd.DataFrame:
        ds = CATALOG.dataset(dataset_id)
        return self.lake.read_partition(
            self.lake.dataset_partition(RAW_CLEAN, ds, DEMO_DATE)
        ).to_pandas()

    def table(self, name: str, ds=DEMO_DATE) -> pd.DataFrame:
        return self.lake.read_partition(self.lake.public_partition(name, ds)).to_pandas()


def _lake_with_clean_data(root: Path, departments) -> Published:
    lake = Lake(str(root / "lake"), f"sqlite:///{root / 'catalog.db'}")
    store = CatalogStore(f"sqlite:///{root / 'catalog.db'}")
    extract_and_validate(
        OPENABLE, departments.out_dir, DEMO_DATE, lake=lake, store=store, run_id="t",
        work_dir=root,
    )  # fmt: skip
    return Published(root, lake, store)


@pytest.fixture(scope="module")
def published(departments, tmp_path_factory) -> Published:
    p = _lake_with_clean_data(tmp_path_factory.mktemp("public"), departments)
    publish_open_data(CATALOG, p.lake, p.store, DEMO_DATE, "night-1")
    return p


@pytest.fixture
def fresh(departments, tmp_path: Path) -> Published:
    """A lake of its own, published once, for the tests that publish again."""
    p = _lake_with_clean_data(tmp_path / "fresh", departments)
    publish_open_data(CATALOG, p.lake, p.store, DEMO_DATE, "night-1")
    return p


def _catalog_with(tmp_path: Path, department: str, old: str, new: str) -> Catalog:
    folder = tmp_path / "definitions"
    shutil.copytree(DEFINITIONS_DIR, folder)
    path = folder / f"{department}.yaml"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")
    return load_catalog(folder)


def _public_files(public: Path) -> list[Path]:
    return sorted(p for p in public.rglob("*") if p.suffix in (".parquet", ".csv"))


# --------------------------------------------------------------------------- microdata


def test_every_open_dataset_is_published_k_anonymous(published: Published) -> None:
    """k computed here with pandas on the published file, independent of masking.kanon."""
    for dataset in OPENABLE:
        table = published.table(dataset.id)
        qis = [f.name for f in dataset.fields if f.quasi_identifier and f.name in table.columns]
        assert len(table) > 0, dataset.id
        if qis:
            sizes = table.groupby(qis, dropna=False).size()
            assert sizes.min() >= dataset.public.k, dataset.id
        report = published.store.publications(DEMO_DATE)
        figures = {r.name: r.report for r in report}[dataset.id]
        assert figures["achieved_k"] >= dataset.public.k
        assert figures["rows_published"] == len(table)
        clean_rows = len(published.clean(dataset.id))
        assert figures["suppressed_rows"] == clean_rows - len(table)
        assert figures["suppressed_rows"] <= dataset.public.max_suppression * clean_rows
        if qis:
            assert figures["highest_risk"] == pytest.approx(1 / sizes.min())
            assert figures["average_risk"] == pytest.approx(len(sizes) / len(table))


def test_public_rules_generalise_and_drop(published: Published) -> None:
    population = published.table("gongan.population")
    assert not {"id_no", "name", "person_no", "ethnicity", "updated_at"} & set(population.columns)
    assert set(population["sex"].dropna()) <= {"男", "女"}
    # birth date → birth year or a band of years, never a day
    assert population["birth_date"].astype(str).str.fullmatch(r"\d{4}(-\d{4})?|\*").all()
    assert population["address"].dropna().str.fullmatch(r"4407\d\d").all()
    cases = published.table("xingzheng.service_case")
    assert not {"applicant_name", "applicant_id_no", "phone"} & set(cases.columns)
    schema = pq.read_schema(
        published.public / f"gongan.population/dt={DEMO_DATE}/gongan.population.parquet"
    )
    assert schema.field("address").metadata[b"masking"] == b"generalise.district_code"
    assert schema.field("birth_date").metadata[b"pii"] == b"birth_date"
    assert schema.field("birth_date").metadata[b"kanon_level"] in (b"year", b"5-year band")


def test_no_public_file_holds_an_id_a_mobile_a_name_column_or_a_token(
    published: Published,
) -> None:
    files = _public_files(published.public)
    assert len(files) == 2 * (len(OPENABLE) + 11)  # Parquet + CSV of each table
    ids = set(published.clean("gongan.population")["id_no"].dropna())
    phones = set(published.clean("xingzheng.service_case")["phone"].dropna())
    assert ids and phones
    for path in files:
        if path.suffix == ".parquet":
            table = pq.read_table(path)
        else:
            table = pacsv.read_csv(
                path, convert_options=pacsv.ConvertOptions(strings_can_be_null=True)
            )
            table = table.cast(pa.schema([pa.field(n, pa.string()) for n in table.column_names]))
        exempt = ["reg_no"] if path.name.startswith("gongshang") else []  # 15-digit reg. no.
        assert scan_table(table, exempt_columns=exempt) == [], path
        names = set(table.column_names)
        owner = path.parent.parent.name  # public/<dataset id>/dt=…/file
        personal = {
            f.name
            for d in CATALOG.datasets
            if d.id == owner or owner not in OPENABLE_IDS
            for f in d.fields
            if f.pii in ("name", "id_no", "phone")
        }
        assert not personal & names, path
        assert not [n for n in names if "token" in n], path
        text = path.read_bytes().decode("utf-8", errors="replace")
        # independent of the leak scan: no real ID (right check character) or phone of the data
        for found in re.findall(r"\d{17}[\dX]", text):
            assert found not in ids, path
        assert not {m for m in re.findall(r"1[3-9]\d{9}", text)} & phones, path


def test_published_registration_numbers_pass_the_scan_only_as_declared(
    published: Published,
) -> None:
    table = pq.read_table(
        published.public
        / f"gongshang.enterprise_registration/dt={DEMO_DATE}"
        / "gongshang.enterprise_registration.parquet"
    )
    findings = scan_table(table, exempt_columns=["reg_no"])
    assert findings == []


# --------------------------------------------------------------------------- blocking


def test_suppression_past_the_limit_blocks_and_keeps_the_previous_publication(
    fresh: Published, tmp_path: Path
) -> None:
    published = fresh
    strict = _catalog_with(
        tmp_path,
        "xingzheng",
        "      k: 5\n      max_suppression: 0.05\n      generalise_up_to: {applicant",
        "      k: 1000000\n      max_suppression: 0.0\n      generalise_up_to: {applicant",
    )
    before = (published.public / f"xingzheng.service_case/dt={DEMO_DATE}").stat().st_mtime_ns
    later = DEMO_DATE + timedelta(days=1)
    with pytest.raises(PublicationBlocked, match=r"'xingzheng.service_case' blocked.*k=1000000"):
        publish_open_data(strict, published.lake, published.store, later, "night-2")
    assert not (published.public / f"xingzheng.service_case/dt={later}").exists()
    assert (published.public / f"xingzheng.service_case/dt={DEMO_DATE}").stat().st_mtime_ns == (
        before
    )
    # the others are not held back: unchanged since DEMO_DATE, they keep that publication
    others = {p.name: p for p in published.store.publications(later)}
    assert others["gongan.population"].status == "published"
    assert others["gongan.population"].report["unchanged_since"] == str(DEMO_DATE)
    jsonld = (published.public / "catalog.jsonld").read_text(encoding="utf-8")
    assert f"xingzheng.service_case/dt={DEMO_DATE}/" in jsonld  # still the previous one
    blocked = {p.name: p for p in published.store.publications(later)}["xingzheng.service_case"]
    assert blocked.status == "blocked" and "k=1000000" in blocked.report["reason"]


def test_a_leak_publishes_nothing_of_the_night(fresh: Published, tmp_path: Path) -> None:
    published = fresh
    leaky = _catalog_with(
        tmp_path,
        "xingzheng",
        "{name: phone, type: string, rule: phone, level: conditional, pii: phone",
        "{name: phone, type: string, rule: phone, level: open, pii: phone",
    )
    index = (published.public / "index.html").read_bytes()
    later = DEMO_DATE + timedelta(days=3)
    with pytest.raises(LeakFound, match=r"xingzheng.service_case.*'phone' holds mobile"):
        publish_open_data(leaky, published.lake, published.store, later, "night-4")
    assert not list(published.public.glob(f"*/dt={later}*"))
    assert not list(published.public.glob(f"stats/*/dt={later}*"))
    assert (published.public / "index.html").read_bytes() == index
    assert not [p for p in published.public.rglob("*") if ".tmp-" in p.name]


# --------------------------------------------------------------------------- statistics


def test_statistics_agree_with_counts_from_the_clean_data(published: Published) -> None:
    k = 5
    cases = published.clean("xingzheng.service_case")

    def agrees(table: str, by: list[str], counts: pd.Series, column: str = "cases") -> None:
        stats = published.table(f"stats/{table}").set_index(by)
        for key, n in counts.items():
            shown = stats.loc[key, column]
            if n >= k and not stats.loc[key, "suppressed"]:
                assert shown == n, (table, key)
            else:
                assert pd.isna(shown), (table, key)
        assert len(stats) == len(counts)

    agrees("cases_by_district", ["district_code"], cases.groupby("district_code").size())
    agrees("cases_by_department", ["department"], cases.groupby("department").size())
    agrees("cases_by_applicant_type", ["applicant_type"], cases.groupby("applicant_type").size())
    month = pd.to_datetime(cases["accepted_at"]).dt.strftime("%Y-%m")
    agrees("cases_by_month", ["month"], cases.groupby(month).size())
    agrees("satisfaction", ["satisfaction"], cases.groupby("satisfaction").size())
    types = published.table("stats/cases_by_applicant_type").set_index("applicant_type")
    assert types["cases"].sum() == len(cases)
    done = cases[cases["status"].eq("办结")]
    days = (pd.to_datetime(done["completed_at"]) - pd.to_datetime(done["accepted_at"])).dt
    within_a_day = int((days.total_seconds() < 86400).sum())
    bands = published.table("stats/processing_time_bands").set_index("band")["cases"]
    assert bands.sum() == len(done) or bands.isna().any()
    if within_a_day >= k:
        assert bands["1天内"] == within_a_day
    online = published.table("stats/online_service").set_index("measure")
    assert online.loc["零跑动", "cases"] == int(cases["channel"].eq("网上").sum())
    assert online.loc["零跑动", "of_cases"] == len(cases)
    assert online.loc["网上办结", "of_cases"] == len(done)
    enterprises = published.clean("gongshang.enterprise_registration")
    agrees(
        "enterprises_by_district_type_status",
        ["division_code", "ent_type", "status"],
        enterprises.groupby(["division_code", "ent_type", "status"]).size(),
        "enterprises",
    )
    population = published.clean("gongan.population")
    living = population[population["status"].eq("正常")]
    by_district = published.table("stats/population_by_district_sex_age")
    totals = by_district.groupby("division_code")["persons"].sum(min_count=1)
    direct = living.groupby("division_code").size()
    for code, n in direct.items():
        assert totals[code] <= n  # suppressed cells only ever remove
    cell = living.groupby(["division_code", "sex"]).size()
    per_cell = by_district.groupby(["division_code", "sex"])["persons"].sum(min_count=1)
    for key, n in cell.items():
        assert per_cell[key] <= n


def test_population_statistics_count_each_resident_in_one_cell() -> None:
    """Residents are counted per district, sex and birth date first, then banded: the same
    cells as banding each resident (NULL district, sex or birth date included), and only
    residents whose status is normal."""
    from datetime import date

    import numpy as np

    from etl.statistics import age_band, population_table

    rng = np.random.default_rng(11)
    rows = 5_000
    births = pd.to_datetime("1930-01-01") + pd.to_timedelta(rng.integers(0, 33_000, rows), "D")
    table = pa.table(
        {
            "division_code": pa.array(rng.choice(["440703", "440705", None], rows)),
            "sex": pa.array(rng.choice(["男", "女", None], rows)),
            "birth_date": pa.array(
                [None if i % 97 == 0 else d.date() for i, d in enumerate(births)], pa.date32()
            ),
            "status": pa.array(rng.choice(["正常", "迁出", None], rows)),
        }
    )
    ds = date(2026, 11, 28)
    frame = table.to_pandas(date_as_object=False)
    frame = frame[frame["status"].eq("正常")]
    frame = frame.assign(age_band=age_band(frame["birth_date"], ds))
    direct = (
        frame.groupby(["division_code", "sex", "age_band"], dropna=False, observed=True)
        .size()
        .rename("persons")
        .reset_index()
    )
    published = population_table(table, ds, k=1).frame
    pd.testing.assert_frame_equal(
        published.drop(columns=["district_name", "suppressed"]), direct, check_dtype=False
    )
    assert published["persons"].sum() == int(pc.sum(pc.equal(table["status"], "正常")).as_py())


def test_overdue_counts_follow_the_item_limits(published: Published) -> None:
    from etl.statistics import case_frame, overdue_flags

    cases = published.lake.read_partition(
        published.lake.dataset_partition(
            RAW_CLEAN, CATALOG.dataset("xingzheng.service_case"), DEMO_DATE
        )
    )
    flags = overdue_flags(case_frame(cases), DEMO_DATE)
    assert (flags["over_promised"] >= flags["over_statutory"]).all()  # a promise is shorter
    table = published.table("stats/overdue_cases")
    statutory = table[table["limit"].eq("法定时限")].set_index("department")
    direct = flags.groupby("department")["over_statutory"].sum()
    for department, n in direct.items():
        shown = statutory.loc[department, "overdue"]
        assert shown == n or (pd.isna(shown) and n < 5)


def test_small_cells_are_suppressed_with_a_complement() -> None:
    frame = pd.DataFrame({"g": list("abcd"), "n": [100, 3, 50, 40]})
    out = suppressed_small_cells(frame, "n", 5)
    assert out["n"].isna().tolist() == [False, True, False, True]  # 3, and the next smallest
    assert out["suppressed"].tolist() == [False, True, False, True]
    two = suppressed_small_cells(pd.DataFrame({"n": [1, 2, 9]}), "n", 5)
    assert two["n"].isna().tolist() == [True, True, False]


def test_public_csv_is_excel_safe(published: Published) -> None:
    """The public CSVs are the deliveries' Excel-safe CSV: BOM, formulas defused."""
    table = pa.table({"text": ["=HYPERLINK(1)", "+86", "-2+3", "@SUM(A1)", "蓬江区"]})
    text = excel_csv(table).decode("utf-8")
    assert text.startswith("\ufeff")
    assert "'=HYPERLINK(1)" in text and "'+86" in text and "'-2+3" in text and "'@SUM" in text
    path = published.public / f"xingzheng.service_case/dt={DEMO_DATE}/xingzheng.service_case.csv"
    data = path.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    frame = pd.read_csv(path, encoding="utf-8-sig", dtype=str)
    assert len(frame) == len(published.table("xingzheng.service_case"))
    assert not frame.apply(lambda c: c.str.match(r"^[=+\-@]").any()).any()


def test_every_public_csv_is_what_excel_csv_writes_of_its_parquet(published: Published) -> None:
    """The CSV copies are written with Arrow kernels (``public_csv``): byte for byte the
    deliveries' Excel-safe CSV (``zones.excel_csv``, pandas) of the same table."""
    checked = 0
    for parquet in published.public.rglob("*.parquet"):
        table = pq.read_table(parquet)
        assert parquet.with_suffix(".csv").read_bytes() == excel_csv(table), parquet.name
        checked += 1
    assert checked >= len(OPENABLE) + 10  # the microdata and the statistics tables


# --------------------------------------------------------------------------- DCAT


def test_dcat_parses_and_lists_every_distribution_with_its_size(published: Published) -> None:
    from rdflib import Graph, Namespace, URIRef
    from rdflib.namespace import DCAT, DCTERMS, FOAF, RDF

    spdx = Namespace("http://spdx.org/rdf/terms#")
    catalog_file = published.public / "catalog.jsonld"
    graph = Graph().parse(catalog_file, format="json-ld")
    datasets = set(graph.subjects(RDF.type, DCAT.Dataset))
    assert len(datasets) == len(OPENABLE) + 11
    (catalog,) = graph.subjects(RDF.type, DCAT.Catalog)
    assert set(graph.objects(catalog, DCAT.dataset)) == datasets
    for dataset in datasets:
        titles = {t.language for t in graph.objects(dataset, DCTERMS.title)}
        assert titles == {"zh", "en"}
        assert graph.value(dataset, DCTERMS.license) is not None
        assert graph.value(graph.value(dataset, DCTERMS.publisher), FOAF.name) is not None
        assert list(graph.objects(dataset, DCAT.theme)) and list(
            graph.objects(dataset, DCAT.keyword)
        )
        assert graph.value(dataset, DCTERMS.accrualPeriodicity) is not None
        assert graph.value(dataset, DCTERMS.modified) is not None
    listed = {}
    for distribution in graph.subjects(RDF.type, DCAT.Distribution):
        url = graph.value(distribution, DCAT.downloadURL)
        assert isinstance(url, URIRef) and str(url).startswith("file://")
        path = Path(str(url).removeprefix("file://"))
        size = int(graph.value(distribution, DCAT.byteSize))
        checksum = graph.value(graph.value(distribution, spdx.checksum), spdx.checksumValue)
        assert size == path.stat().st_size, path
        assert str(checksum) == hashlib.sha256(path.read_bytes()).hexdigest()
        assert graph.value(distribution, DCAT.mediaType) is not None
        listed[path] = size
    assert sorted(listed) == _public_files(published.public)
    assert "CSVW" not in catalog_file.read_text()  # field descriptions use the real csvw terms
    columns = list(graph.subjects(RDF.type, URIRef("http://www.w3.org/ns/csvw#Column")))
    assert len(columns) > 50


# --------------------------------------------------------------------------- lineage


def test_lineage_of_a_public_partition_leads_back_to_the_deliveries(
    published: Published,
) -> None:
    for dataset in OPENABLE:
        path = published.lake.public_partition(dataset.id, DEMO_DATE)
        leaves = source_deliveries(upstream(published.store, path))
        raw = published.lake.dataset_partition(RAW_SOURCES, dataset, DEMO_DATE)
        assert [leaf.path for leaf in leaves] == [raw]
        assert leaves[0].fingerprint == published.lake.read_manifest(raw).fingerprint
    stats = published.lake.public_partition("stats/cases_by_district", DEMO_DATE)
    (leaf,) = source_deliveries(upstream(published.store, stats))
    assert "raw/sources/xingzheng/service_case" in leaf.path


def test_lake_lineage_prints_both_ways_and_rejects_an_unknown_path(
    published: Published, monkeypatch
) -> None:
    from etl.cli import main

    monkeypatch.setenv("YIMEN_LAKE_ROOT", published.lake.root)
    monkeypatch.setenv("YIMEN_CATALOG_URL", published.store.url)
    runner = CliRunner()
    out = runner.invoke(main, ["lineage", f"public/gongan.population/dt={DEMO_DATE}"])
    assert out.exit_code == 0, out.output
    assert f"raw/sources/gongan/population/dt={DEMO_DATE}" in out.output
    assert "delivered from" in out.output and "sha256:" in out.output
    raw = f"raw/sources/gongan/population/dt={DEMO_DATE}/part-00000.parquet"
    out = runner.invoke(main, ["lineage", raw])
    assert f"public/gongan.population/dt={DEMO_DATE}" in out.output.split("went to:")[1]
    bad = runner.invoke(main, ["lineage", "public/nothing/dt=2026-01-01"])
    assert bad.exit_code == 1
    assert bad.output.count("\n") == 1 and "no partition recorded" in bad.output


# --------------------------------------------------------------------------- catalog


def test_public_settings_are_checked_at_load(tmp_path: Path) -> None:
    with pytest.raises(CatalogError) as bad_qi:
        _catalog_with(
            tmp_path / "a",
            "gongan",
            "generalise_up_to: {birth_date: 10-year band",
            "generalise_up_to: {birth_day: 10-year band",
        )
    (line,) = str(bad_qi.value).splitlines()[1:]
    assert "gongan.yaml, dataset 'population'" in line and "'birth_day' is not a declared" in line
    with pytest.raises(CatalogError) as bad_k:
        _catalog_with(tmp_path / "b", "gongan", "      k: 5\n", "      k: 1\n")
    (line,) = str(bad_k.value).splitlines()[1:]
    assert "gongan.yaml, dataset 'population', public" in line and "at least 2" in line
    with pytest.raises(CatalogError, match="'household_type', which is not a quasi_identifier"):
        _catalog_with(
            tmp_path / "c",
            "gongan",
            "generalise_up_to: {birth_date: 10-year band",
            "generalise_up_to: {household_type: value, birth_date: 10-year band",
        )
    assert [d.id for d in OPENABLE] == [
        "gongan.population",
        "gongshang.enterprise_registration",
        "xingzheng.service_case",
        "zhijian.org_code",
    ]


def test_catalog_search_finds_chinese_and_english_words() -> None:
    from catalog.search import search_catalog

    found = {(h.dataset_id, h.field) for h in search_catalog(CATALOG, "出生日期")}
    assert ("gongan.population", "birth_date") in found
    assert ("xingzheng.service_case", "applicant_birth_date") in found
    found = {(h.dataset_id, h.field) for h in search_catalog(CATALOG, "Enterprise")}
    assert ("gongshang.enterprise_registration", None) in found
    assert search_catalog(CATALOG, "no such word anywhere") == []
    out = CliRunner().invoke(__import__("etl.cli").cli.main, ["catalog", "search", "办件"])
    assert "xingzheng.service_case" in out.output


def test_verify_scans_the_committed_public_zone(fresh: Published) -> None:
    from etl.publish_public import verify_public

    findings, scanned = verify_public(CATALOG, fresh.lake, fresh.store, DEMO_DATE)
    assert findings == [] and scanned == len(OPENABLE) + 11
    # a mobile number planted into a published CSV after the night is found, without its value
    path = fresh.public / f"zhijian.org_code/dt={DEMO_DATE}/zhijian.org_code.csv"
    text = path.read_text(encoding="utf-8-sig").splitlines()
    text[1] = text[1].replace(text[1].split(",")[1], "13912345678", 1)
    path.write_text("\ufeff" + "\n".join(text) + "\n", encoding="utf-8")
    findings, _ = verify_public(CATALOG, fresh.lake, fresh.store, DEMO_DATE)
    assert len(findings) == 1
    assert (
        "zhijian.org_code.csv: column 'name' holds mobile (1 rows, first at row 0)" in findings[0]
    )
    assert "13912345678" not in findings[0]


def test_birth_years_band_like_birth_dates() -> None:
    from masking.kanon import birth_date_hierarchy, birth_year_hierarchy

    years = birth_year_hierarchy("y")
    dates = birth_date_hierarchy("d")
    assert years.level_names == dates.level_names[1:]
    values = pa.array([1987, 1990, None], pa.int32())
    as_dates = pa.array(["1987-06-01", "1990-01-31", None])
    for level in (1, 2, 3):  # 5-year band, 10-year band, *
        assert (
            years.levels[level].generalise(values).to_pylist()
            == dates.levels[level + 1].generalise(as_dates).to_pylist()
        )
    assert years.levels[1].generalise(values).to_pylist() == ["1985-1989", "1990-1994", None]


def test_current_clean_state_stacks_incremental_nights(tmp_path: Path) -> None:
    """An incremental source's clean partitions hold each night's changes: the public zone
    publishes the newest row per key as of the night, never one night's delta alone."""
    from datetime import datetime

    from catalog.store import PartitionRecord
    from etl.publish_public import current_clean
    from etl.zones import clean_schema

    dataset = CATALOG.dataset("xingzheng.service_case")
    lake = Lake(str(tmp_path / "lake"), f"sqlite:///{tmp_path / 'c.db'}")
    store = CatalogStore(f"sqlite:///{tmp_path / 'c.db'}")
    schema = clean_schema(dataset)

    def night(ds, rows: list[tuple[str, str, str]]) -> str:
        table = pa.Table.from_pylist(
            [
                {"case_no": no, "status": status, "updated_at": datetime.fromisoformat(at)}
                for no, status, at in rows
            ],
            schema=schema,
        )
        path = lake.dataset_partition(RAW_CLEAN, dataset, ds)
        manifest = lake.write_partition(path, table.to_batches(), schema)
        store.record_partition(
            "r", PartitionRecord(RAW_CLEAN, dataset.id, ds, path, manifest.rows, "f")
        )
        return path

    first = night(
        DEMO_DATE, [("A", "受理", "2026-11-28 09:00:00"), ("B", "办结", "2026-11-28 10:00:00")]
    )
    second = night(
        DEMO_DATE + timedelta(days=1),
        [("A", "办结", "2026-11-29 11:00:00"), ("C", "受理", "2026-11-29 12:00:00")],
    )
    now = current_clean(lake, store, dataset, DEMO_DATE + timedelta(days=1))
    rows = now.table.select(["case_no", "status"]).to_pylist()
    assert sorted((r["case_no"], r["status"]) for r in rows) == [
        ("A", "办结"),
        ("B", "办结"),
        ("C", "受理"),
    ]
    assert now.inputs == [first, second]
    then = current_clean(lake, store, dataset, DEMO_DATE)
    assert sorted(then.table["status"].to_pylist()) == ["办结", "受理"] and then.inputs == [first]
    with pytest.raises(LakeError, match="no clean partition on or before"):
        current_clean(lake, store, dataset, DEMO_DATE - timedelta(days=1))


# --------------------------------------------------------------------------- incremental


def _shown(p: Published, ds) -> dict[str, tuple[object, pa.Table]]:
    """What the public zone shows as of ``ds``: each table's latest publication (its date
    and rows), as the catalogue lists it."""
    latest = {}
    for record in p.store.partitions(zone=PUBLIC):
        if record.ds <= ds:
            latest[record.dataset_id] = record
    return {n: (r.ds, p.lake.read_partition(r.path)) for n, r in latest.items()}


def test_an_incremental_publication_equals_a_full_rebuild(fresh: Published) -> None:
    """Decision 0016: a night rebuilds only the tables whose inputs changed (here one
    night of service cases, and the statistics as of the new date); the others keep their
    publication. What the public zone then shows is what a full rebuild publishes."""
    from etl.zones import clean_schema

    p, later = fresh, DEMO_DATE + timedelta(days=1)
    cases = CATALOG.dataset("xingzheng.service_case")
    schema = clean_schema(cases)
    night = p.lake.read_partition(p.lake.dataset_partition(RAW_CLEAN, cases, DEMO_DATE))
    night = night.select(schema.names).slice(0, 40)
    done = pa.array(["办结"] * len(night), night.schema.field("status").type)
    night = night.set_column(night.schema.get_field_index("status"), "status", done)
    path = p.lake.dataset_partition(RAW_CLEAN, cases, later)
    manifest = p.lake.write_partition(path, night.to_batches(), schema)
    p.store.record_partition(
        "night-2", PartitionRecord(RAW_CLEAN, cases.id, later, path, manifest.rows, "f2")
    )

    incremental = publish_open_data(CATALOG, p.lake, p.store, later, "night-2")
    kept = {"gongan.population", "gongshang.enterprise_registration", "zhijian.org_code"}
    assert kept | {"stats/enterprises_by_district_type_status"} == set(incremental.unchanged)
    assert "xingzheng.service_case" in incremental.published
    assert "stats/population_by_district_sex_age" in incremental.published  # ages on `later`
    assert not (p.public / f"gongan.population/dt={later}").exists()
    shown = _shown(p, later)
    assert {shown[n][0] for n in kept} == {DEMO_DATE}
    reports = {x.name: x.report for x in p.store.publications(later)}
    assert reports["gongan.population"]["unchanged_since"] == str(DEMO_DATE)
    jsonld = (p.public / "catalog.jsonld").read_text(encoding="utf-8")
    assert f"gongan.population/dt={DEMO_DATE}/" in jsonld

    full = publish_open_data(CATALOG, p.lake, p.store, later, "night-2-full", full=True)
    assert not full.unchanged and set(full.published) == set(shown)
    rebuilt = _shown(p, later)
    assert {d for d, _ in rebuilt.values()} == {later}
    for name, (_, table) in shown.items():
        assert rebuilt[name][1].equals(table, check_metadata=True), name
    again = {x.name: x.report for x in p.store.publications(later)}
    for name in kept:
        assert again[name] == {k: v for k, v in reports[name].items() if k != "unchanged_since"}


def test_month_labels_are_strftimes_of_every_stamp() -> None:
    """The cases' months are formatted once per distinct month: the same text as each
    stamp's ``strftime("%Y-%m")``, NaT as NULL, before 1970 and at a month's edges too."""
    rng = np.random.default_rng(4)
    seconds = rng.integers(-20 * 365 * 86_400, 40 * 365 * 86_400, 5_000)
    stamps = np.datetime64("1970-01-01T00:00:00", "us") + seconds.astype("timedelta64[s]")
    edges = ["1969-12-31T23:59:59.999999", "2026-11-30T23:59:59", "2026-12-01T00:00:00"]
    stamps = np.concatenate([stamps, np.array(edges, "datetime64[us]"), [np.datetime64("NaT")]])
    series = pd.Series(stamps, index=np.arange(len(stamps)) * 3)
    assert month_labels(series).equals(series.dt.strftime("%Y-%m"))
