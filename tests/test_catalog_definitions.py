"""The catalog YAML loads, and a broken definition fails with file, dataset and field."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from catalog.definitions import DEFINITIONS_DIR, load_catalog
from catalog.errors import CatalogError

DESIGN_DATASETS = {
    "gongan.population": "sql",
    "renshe.insured_person": "csv",
    "weiji.health_record": "jsonl",
    "gongshang.enterprise_registration": "sql",
    "zhijian.org_code": "csv",
    "guoshui.taxpayer": "excel",
    "dishui.taxpayer": "sql",
    "xingzheng.service_case": "sql",
}


def test_catalog_declares_every_department_source_of_the_design() -> None:
    cat = load_catalog()
    assert {d.id: d.source.kind for d in cat.datasets} == DESIGN_DATASETS
    assert cat.dataset("renshe.insured_person").source.encoding == "gbk"
    assert cat.dataset("zhijian.org_code").source.encoding == "utf-8-sig"
    # every personal field has a level, and restricted identifiers are join keys
    for ds in cat.datasets:
        for f in ds.fields:
            if f.pii == "id_no":
                assert f.level == "restricted" and f.join_key, (ds.id, f.name)


def test_lookup_by_bare_code_and_unknown_names() -> None:
    cat = load_catalog()
    assert cat.dataset("population").id == "gongan.population"
    with pytest.raises(CatalogError, match="ambiguous"):
        cat.dataset("taxpayer")
    with pytest.raises(CatalogError, match="unknown dataset 'nope'"):
        cat.dataset("nope")
    with pytest.raises(CatalogError, match="unknown department 'police'"):
        cat.department_datasets("police")


def _copy_definitions(tmp_path: Path) -> Path:
    target = tmp_path / "defs"
    shutil.copytree(DEFINITIONS_DIR, target)
    return target


def _edit(defs: Path, file: str, *replacements: tuple[str, str]) -> None:
    """Break a copied definition file: each (old, new) must occur in it."""
    path = defs / file
    text = path.read_text(encoding="utf-8")
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new)
    path.write_text(text, encoding="utf-8")


def _problems(defs: Path) -> str:
    with pytest.raises(CatalogError) as err:
        load_catalog(defs)
    return str(err.value)


def test_every_problem_is_listed_with_file_dataset_and_field(tmp_path: Path) -> None:
    defs = _copy_definitions(tmp_path)
    _edit(
        defs,
        "gongan.yaml",
        ("level: restricted, pii: id_no", "level: secret, pii: id_no"),
        ("kind: sql", "kind: oracle"),
    )
    _edit(defs, "renshe.yaml", ("encoding: gbk", "encoding: klingon"))
    message = _problems(defs)
    assert "gongan.yaml, dataset 'population', field 'id_no', level" in message
    assert "gongan.yaml, dataset 'population', source.kind" in message
    assert "renshe.yaml, dataset 'insured_person', source" in message and "klingon" in message


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    defs = _copy_definitions(tmp_path)
    (defs / "weiji.yaml").write_text("department: {code: weiji\ndatasets: [\n", encoding="utf-8")
    assert re.search(r"weiji.yaml:\d+: not valid YAML", _problems(defs))


def test_key_must_be_a_declared_field(tmp_path: Path) -> None:
    defs = _copy_definitions(tmp_path)
    _edit(defs, "zhijian.yaml", ("key: [org_code]", "key: [code]"))
    assert re.search(r"zhijian.yaml, dataset 'org_code'.*'code' is used as key", _problems(defs))


def test_csv_source_must_declare_its_encoding(tmp_path: Path) -> None:
    defs = _copy_definitions(tmp_path)
    _edit(defs, "renshe.yaml", ("      encoding: gbk\n", ""))
    assert re.search(r"renshe.yaml, dataset 'insured_person'.*must declare", _problems(defs))


def test_keys_must_be_required_and_dates_must_say_their_rule(tmp_path: Path) -> None:
    defs = _copy_definitions(tmp_path)
    _edit(
        defs,
        "dishui.yaml",
        (
            "{name: taxpayer_id, type: string, required: true,",
            "{name: taxpayer_id, type: string, required: false,",
        ),
    )
    _edit(
        defs,
        "zhijian.yaml",
        ("{name: issued_date, type: date, rule: date,", "{name: issued_date, type: date,"),
    )
    message = _problems(defs)
    assert "dishui.yaml, dataset 'taxpayer'" in message
    assert "key field 'taxpayer_id' must be required" in message
    assert "field 'issued_date' of type date needs rule: date" in message
