"""The policy answers DESIGN §6 cell by cell; catalog overrides are checked at load."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from catalog.definitions import DEFINITIONS_DIR, DatasetDef, FieldDef, load_catalog
from catalog.errors import CatalogError
from catalog.masking_overrides import OPERATOR_FIELD_TYPES, MaskingOverride
from masking.keys import MasterKey
from masking.operators import (
    OPERATOR_VARIANTS,
    Band,
    Context,
    Drop,
    Generalise,
    Keep,
    Mask,
    Round,
    Token,
)
from masking.policy import (
    field_treatment,
    operator_from_spec,
    output_metadata,
    public_treatment,
    treated_columns,
)

PII_TYPES = {"birth_date": "date", "amount": "decimal"}


def field(name: str = "f", **kw: Any) -> FieldDef:
    kw.setdefault("type", PII_TYPES.get(kw.get("pii") or "", "string"))
    if kw["type"] in ("date", "datetime"):
        kw.setdefault("rule", kw["type"])
    return FieldDef(name=name, **kw)


def dataset(*fields: FieldDef) -> DatasetDef:
    key = FieldDef(name="row_id", required=True, level="open")
    return DatasetDef.model_validate(
        {
            "code": "people",
            "resource_code": "X-1",
            "title": "人口",
            "title_en": "people",
            "update_cycle": "daily",
            "share_type": "conditional",
            "open_type": "shared",
            "source": {"kind": "sql", "connection_id": "c", "load": "snapshot", "table": "t"},
            "key": ["row_id"],
            "fields": [key, *fields],
            "department": "gongan",
        }
    )


def shared(f: FieldDef, granted: bool) -> list[tuple[str, Any]]:
    t = field_treatment(dataset(f), f.name, "dishui", granted)
    assert t.zone == "shared" and t.consumer == "dishui"
    return [(o.column, o.operator) for o in t.outputs]


def public(f: FieldDef) -> list[tuple[str, Any]]:
    t = public_treatment(f)
    assert t.zone == "public"
    return [(o.column, o.operator) for o in t.outputs]


# -- the level table -----------------------------------------------------------------------


@pytest.mark.parametrize("granted", [True, False])
def test_open_and_shared_levels_are_clear_in_the_shared_zone(granted: bool) -> None:
    for level in ("open", "shared"):
        f = field(level=level, pii="name")
        assert shared(f, granted) == [("f", Keep())]
        assert field_treatment(dataset(f), f, "dishui", granted).clear


def test_conditional_is_clear_for_the_granted_consumer_only() -> None:
    f = field(level="conditional", pii="name")
    assert shared(f, True) == [("f", Keep())]
    assert shared(f, False) == [("f", Mask(keep_first=1))]
    treatment = field_treatment(dataset(f), f, "dishui", False)
    assert not treatment.clear and "not granted" in treatment.rule


@pytest.mark.parametrize("granted", [True, False])
def test_restricted_is_a_token_for_join_keys_and_dropped_otherwise(granted: bool) -> None:
    key = field("id_no", level="restricted", pii="id_no", join_key=True)
    assert shared(key, granted) == [("person_token", Token())]
    other = field("legal_rep_id_no", level="restricted", pii="id_no", join_key=True)
    assert shared(other, granted) == [("legal_rep_person_token", Token())]
    health = field("diagnosis", level="restricted", pii="health")
    assert shared(health, granted) == []
    assert field_treatment(dataset(health), "diagnosis", "dishui", granted).dropped


def test_public_zone_by_level() -> None:
    assert public(field(level="open", pii="name")) == [("f", Keep())]
    assert public(field(level="restricted", pii="id_no", join_key=True)) == []
    assert public(field(level="shared", pii="birth_date")) == [("f", Generalise("year"))]
    assert public(field(level="conditional", pii="address")) == [("f", Generalise("district_code"))]


# -- the PII-kind table --------------------------------------------------------------------

SHARED_RULES = {
    "id_no": [("id_no", Mask(keep_first=1, keep_last=1)), ("person_token", Token())],
    "name": [("name", Mask(keep_first=1))],
    "phone": [("phone", Mask(keep_first=3, keep_last=4))],
    "address": [("address", Generalise("district"))],
    "birth_date": [("birth_date", Generalise("year_month"))],
    "amount": [("amount", Round(to=100))],
    "health": [],
    "free_text": [],
}
PUBLIC_RULES = {
    "id_no": [],
    "name": [],
    "phone": [],
    "address": [("address", Generalise("district_code"))],
    "birth_date": [("birth_date", Generalise("year"))],
    "amount": [("amount", Band(width=1000))],
    "health": [],
    "free_text": [],
}


@pytest.mark.parametrize("pii", sorted(SHARED_RULES))
def test_default_rules_by_pii_kind(pii: str) -> None:
    f = field(pii, level="conditional", pii=pii)
    assert shared(f, granted=False) == SHARED_RULES[pii]
    assert public(f) == PUBLIC_RULES[pii]
    assert public(field(pii, level="shared", pii=pii)) == PUBLIC_RULES[pii]


def test_fields_without_a_pii_kind() -> None:
    assert shared(field("tax_no", level="conditional", join_key=True), False) == [
        ("tax_no_token", Token())
    ]
    assert shared(field("ethnicity", level="conditional"), False) == []
    assert public(field("status", level="shared", allowed=["a", "b"])) == [("status", Keep())]
    assert public(field("sex", level="shared", quasi_identifier=True)) == [("sex", Keep())]
    assert public(field("person_no", level="shared")) == []
    assert public(field("tax_no", level="conditional", join_key=True)) == []


def test_the_real_catalog_never_leaks_conditional_or_tokens_in_public() -> None:
    cat = load_catalog()
    for ds in cat.datasets:
        for f in ds.fields:
            other = field_treatment(ds, f, "dishui", granted=False)
            if f.level in ("conditional", "restricted"):
                assert not other.clear, (ds.id, f.name)
            if f.level == "restricted":
                assert all(isinstance(o.operator, Token) for o in other.outputs)
            pub = public_treatment(f, ds)
            assert not pub.tokenised, (ds.id, f.name)
            if f.level == "restricted" or f.pii in ("id_no", "name", "phone"):
                assert pub.dropped, (ds.id, f.name)


def test_treated_columns_and_metadata() -> None:
    f = field("id_no", level="conditional", pii="id_no")
    t = field_treatment(dataset(f), f, "dishui", granted=False)
    key = MasterKey(bytes(32)).token_key("dishui")
    values = pa.array(["44070319900101123X", None])
    columns = treated_columns(t, values, Context(key=key))
    assert columns["id_no"].to_pylist() == ["4" + "*" * 16 + "X", None]
    assert columns["person_token"] == Token().apply(values, Context(key=key))
    meta = output_metadata(f, t.outputs[1], key.key_id)
    assert meta["key_id"] == key.key_id and meta["level"] == "conditional"
    assert key.secret.hex() not in str(meta)
    with pytest.raises(ValueError, match="record its key id"):
        output_metadata(f, t.outputs[1])
    assert "person_token = token()" in t.describe()


# -- catalog overrides ---------------------------------------------------------------------


def test_registry_in_catalog_equals_the_operators_in_masking() -> None:
    assert {op.variant: op.field_types() for op in OPERATOR_VARIANTS} == OPERATOR_FIELD_TYPES


def test_every_override_spec_builds_its_operator() -> None:
    specs = [
        {"op": "keep"},
        {"op": "drop"},
        {"op": "mask", "keep_first": 2, "char": "#"},
        {"op": "token"},
        {"op": "generalise", "to": "age_band", "width": 10},
        {"op": "band", "width": 500},
        {"op": "round", "to": 10},
        {"op": "fake", "kind": "phone"},
    ]
    built = [operator_from_spec(MaskingOverride(shared=s).shared) for s in specs]
    assert built[2] == Mask(keep_first=2, char="#")
    assert built[4] == Generalise("age_band", width=10)
    assert [type(b).__name__ for b in built] == [
        "Keep", "Drop", "Mask", "Token", "Generalise", "Band", "Round", "Fake"
    ]  # fmt: skip


def test_override_replaces_the_default_rule() -> None:
    f = field(
        "name",
        level="conditional",
        pii="name",
        masking={"shared": {"op": "mask", "keep_first": 2}, "public": {"op": "drop"}},
    )
    assert shared(f, False) == [("name", Mask(keep_first=2))]
    assert "catalog override" in field_treatment(dataset(f), f, "dishui", False).rule
    birth = field("birth_date", level="shared", pii="birth_date",
                  masking={"public": {"op": "generalise", "to": "age_band"}})  # fmt: skip
    assert public(birth) == [("birth_date", Generalise("age_band"))]
    tokenised = field("name", level="conditional", pii="name", masking={"shared": {"op": "token"}})
    assert shared(tokenised, False) == [("name_token", Token())]
    assert shared(field("s", level="conditional", masking={"shared": {"op": "drop"}}), False) == []
    assert public(field("s", level="shared", masking={"public": {"op": "keep"}})) == [("s", Keep())]


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"type": "date", "masking": {"shared": {"op": "mask"}}}, "'mask' cannot apply to a date"),
        ({"masking": {"shared": {"op": "round", "to": 5}}}, "'round' cannot apply to a string"),
        ({"masking": {"public": {"op": "token"}}}, "'token' is not allowed here"),
        ({"masking": {"public": {"op": "keep"}}}, "'keep' is not allowed here"),
        ({"masking": {"shared": {"op": "fake", "kind": "name"}}}, "'fake' is not allowed"),
        ({"level": "restricted", "masking": {"shared": {"op": "mask"}}}, "take no override"),
        ({"level": "shared", "masking": {"shared": {"op": "mask"}}}, "conditional fields only"),
        ({"masking": {"shared": {"op": "scramble"}}}, "does not match any of the expected tags"),
        ({"masking": {"shared": {"op": "mask", "keep_frist": 1}}}, "Extra inputs"),
    ],
)
def test_bad_overrides_fail_at_load(kw: dict, message: str) -> None:
    kw.setdefault("level", "conditional")
    with pytest.raises(ValueError, match=message):
        field("f", **kw)


def test_bad_override_in_yaml_names_file_dataset_and_field(tmp_path: Path) -> None:
    defs = tmp_path / "defs"
    shutil.copytree(DEFINITIONS_DIR, defs)
    path = defs / "gongan.yaml"
    text = path.read_text(encoding="utf-8")
    old = "level: conditional, pii: name,"
    assert old in text
    text = text.replace(old, old + " masking: {shared: {op: scramble}},", 1)
    old = "level: conditional, pii: birth_date,"
    text = text.replace(old, old + " masking: {shared: {op: mask, keep_first: 1}},", 1)
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CatalogError) as err:
        load_catalog(defs)
    message = str(err.value)
    assert "gongan.yaml, dataset 'population', field 'name', masking.shared: Input tag" in message
    assert "'scramble'" in message
    assert (
        "gongan.yaml, dataset 'population', field 'birth_date': Value error, masking.shared: "
        "'mask' cannot apply to a date field" in message
    )


def test_drop_operator_is_not_a_column() -> None:
    assert public(field(level="conditional", masking={"public": {"op": "drop"}})) == []
    assert Drop().describe() == "drop() → no column"
