"""Standardisation repairs what is certain and leaves the rest for validation to reject."""

from __future__ import annotations

import pyarrow as pa
import pytest

from catalog.definitions import FieldDef, load_catalog
from etl.standardise import (
    canonical_dates,
    canonical_phone,
    normalised_enterprise_name,
    standardise,
    standardise_column,
)

ID = FieldDef(name="id_no", rule="resident_id", level="restricted")
NAME = FieldDef(name="name", pii="name", level="conditional")
CANONICAL_ID = "44070319850214123X"


@pytest.mark.parametrize(
    "dirty",
    [
        "44070319850214123x",  # lowercase x
        "４４０７０３１９８５０２１４１２３Ｘ",  # full-width
        " 440703 19850214123X\t",  # stray spaces
        "4407\u200b0319850214123X\ufeff",  # zero-width characters
        "440703850214123",  # old 15-digit ID (born 1985, same body)
    ],
)
def test_resident_id_dirt_is_repaired(dirty: str) -> None:
    assert standardise_column(pa.array([dirty]), ID).to_pylist() == [CANONICAL_ID]


def test_unrepairable_values_are_left_as_delivered() -> None:
    wrong_check = "440703198502141230"
    assert standardise_column(pa.array([wrong_check]), ID).to_pylist() == [wrong_check]
    assert canonical_dates(pa.array(["2017-13-45", "soon"]), with_time=False).to_pylist() == [
        "2017-13-45",
        "soon",
    ]


def test_every_delivered_date_format_becomes_iso() -> None:
    dates = pa.array(["2017-02-23", "2017/2/23", "20170223", "2017年2月23日", "2017.02.23", None])
    assert canonical_dates(dates, with_time=False).to_pylist() == ["2017-02-23"] * 5 + [None]
    times = pa.array(["2017/2/3 9:05", "2017-02-03 10:11:12", "2017-02-03"])
    assert canonical_dates(times, with_time=True).to_pylist() == [
        "2017-02-03 09:05:00",
        "2017-02-03 10:11:12",
        "2017-02-03 00:00:00",
    ]


def test_phone_formats() -> None:
    phones = pa.array(["+86 138-1234-5678", "138 1234 5678", "86-13812345678", "0750-3123456"])
    assert canonical_phone(phones).to_pylist() == ["13812345678"] * 3 + ["07503123456"]


def test_names_lose_spaces_and_traditional_characters() -> None:
    names = pa.array(["陳 大文", "黃小明", "Li Ming", "  张三  "])
    assert standardise_column(names, NAME).to_pylist() == ["陈大文", "黄小明", "Li Ming", "张三"]


def test_characters_simplified_text_also_uses_are_not_converted() -> None:
    # OpenCC would turn 於 into 于 and 乾 into 干; both are real simplified-era names
    names = pa.array(["於立新", "乾明", "陳於乾"])
    assert standardise_column(names, NAME).to_pylist() == ["於立新", "乾明", "陈於乾"]


def test_enterprise_names_get_one_normalised_spelling() -> None:
    variants = pa.array(
        [
            "江门市蓬江区华美五金有限责任公司",
            "蓬江区华美五金有限公司",
            "江门市蓬江区华美五金有限公司",
        ]
    )
    assert set(normalised_enterprise_name(variants).to_pylist()) == {"蓬江区华美五金有限公司"}
    brackets = normalised_enterprise_name(pa.array(["华美（江门）五金有限公司"]))
    assert brackets.to_pylist() == ["华美(江门)五金有限公司"]


def test_standardise_counts_repairs_and_adds_normalised_columns() -> None:
    dataset = load_catalog().dataset("zhijian.org_code")
    table = pa.table({f: pa.array(["x", "y"]) for f in dataset.field_names})
    table = table.set_column(0, "org_code", pa.array(["12345678-8", "123456788"]))
    table = table.set_column(1, "name", pa.array(["江门市华美有限责任公司", "华美有限公司"]))
    out, report = standardise(table, dataset)
    assert out.column("org_code").to_pylist() == ["123456788", "123456788"]
    assert out.column("name_norm").to_pylist() == ["华美有限公司", "华美有限公司"]
    assert report.repaired["org_code"] == 1


def test_columns_that_repeat_their_values_are_repaired_once_per_value_with_equal_results() -> None:
    """A large batch whose columns repeat their values (employers, names, statuses) takes
    the once-per-distinct-value path; every value comes out as the one-by-one repair gives."""
    import numpy as np

    dataset = load_catalog().dataset("renshe.insured_person")
    rng = np.random.default_rng(7)
    dirty = {
        "name": ["陳 大文", "张三", " 李四\u200b", "ＡＢＣ", None, "王五"],
        "employer_name": [
            "江門市 蓬江区某某有限责任公司",
            "某某（江门）有限公司",
            None,
            "广东省江门市甲乙",
        ],
        "status": ["正常", " 正常", "暂停", None],
        "employer_uscc": ["91440703ma4x0000 1", "91440703MA4X00001", None],
    }
    rows = 5 * 16_384  # past the sample the path is chosen by
    raw = pa.table(
        {
            name: pa.array([values[i] for i in rng.integers(len(values), size=rows)], pa.string())
            for name, values in dirty.items()
        }
    )
    fast, _ = standardise(raw, dataset)
    fields = {f.name: f for f in dataset.fields}
    for name in dirty:
        one_by_one = standardise_column(raw.column(name).combine_chunks(), fields[name])
        assert fast.column(name).to_pylist() == one_by_one.to_pylist(), name
    assert fast.column("employer_name_norm").to_pylist() == (
        normalised_enterprise_name(fast.column("employer_name").combine_chunks()).to_pylist()
    )


def _obvious_repairs() -> dict:
    """The whole-column formulations the repairs had before they skipped clean rows."""
    import pyarrow.compute as pc

    from catalog.identifiers import upgrade_resident_id15

    def short_ids(v: pa.Array) -> pa.Array:
        short = pc.fill_null(pc.match_substring_regex(v, r"^[0-9]{15}$"), False)
        if not pc.any(short).as_py():
            return v
        up = upgrade_resident_id15(pc.filter(v, short).to_numpy(zero_copy_only=False))
        return pc.replace_with_mask(v, short, pa.array(up.tolist(), pa.string()))

    def phone(v: pa.Array) -> pa.Array:
        digits = pc.replace_substring_regex(v, r"[^0-9]", "")
        cc = pc.fill_null(pc.match_substring_regex(digits, r"^861[3-9][0-9]{9}$"), False)
        return pc.if_else(cc, pc.utf8_slice_codeunits(digits, 2), digits)

    def spaces(v: pa.Array) -> pa.Array:
        spaced = pc.fill_null(pc.match_substring_regex(v, r"\s"), False)
        cjk = pc.fill_null(pc.match_substring_regex(v, r"[\x{4e00}-\x{9fff}]"), False)
        where = pc.and_(spaced, cjk)
        joined = pc.replace_substring_regex(pc.filter(v, where), r"\s+", "")
        return pc.replace_with_mask(v, where, joined)

    return {
        "_identifier_text": lambda v: pc.utf8_upper(pc.replace_substring_regex(v, r"[\s\-]", "")),
        "upgrade_short_ids": short_ids,
        "canonical_phone": phone,
        "_without_spaces_in_cjk": spaces,
    }


def test_repairs_that_skip_clean_rows_give_what_the_whole_column_repairs_give() -> None:
    """Each repair finds the rows it can change by a byte scan or a literal search and
    rewrites only those: on dirt of every kind, exactly what rewriting every row gives."""
    import numpy as np

    import etl.standardise as standardise_module

    rng = np.random.default_rng(13)
    pieces = [
        *"0123456789",
        "X",
        "x",
        "a",
        "ß",
        "ñ",
        "-",
        " ",
        "\t",
        "\v",
        "\n",
        "\u3000",
        "\xa0",
        "４",
        "Ｘ",
        "陳",
        "黃",
        "張",
        "於",
        "乾",
        "陈",
        "张",
        "华",
        "美",
        "江门市",
        "广东省",
        "有限责任公司",
        "有限公司",
        "（",
        "）",
        "(",
        "+86",
        "86",
        "1",
        "\u4000",
        "\u9fff",
        "é",
        "亞",
        "並",
    ]
    values = ["".join(rng.choice(pieces, size=rng.integers(0, 12))) for _ in range(20_000)]
    values += [
        "440703850214123",
        "44070319850214123x",
        "8613812345678",
        "+86 138-1234-5678",
        "13812345678",
        "0750-3123456",
        "江门市蓬江区华美五金有限责任公司",
        "广东省江门市甲乙（江门）有限公司",
        " 江门市丙",
        "陳 大文",
        "Li Ming",
        "",
        None,
    ]
    column = pa.array(values, pa.string())
    for name, obvious in _obvious_repairs().items():
        fast = getattr(standardise_module, name)
        for part in (column, column.slice(7, 5_000)):  # sliced arrays too
            assert fast(part).to_pylist() == obvious(part).to_pylist(), name


def test_enterprise_names_and_their_normalised_spelling_from_one_pass_over_distinct_names() -> None:
    """Names that repeat less than twice on average (here 2 in 3 distinct) still take the
    dictionary path for the costly enterprise-name repairs: both columns as one by one."""
    import numpy as np
    import pyarrow.compute as pc

    from etl.rules import _SAMPLE

    dataset = load_catalog().dataset("renshe.insured_person")
    rng = np.random.default_rng(5)
    rows = 70_000
    common = rng.random(rows) < 0.3  # big employers, then many small ones
    number = np.where(common, rng.integers(2_000, size=rows), rng.integers(200_000, size=rows))
    forms = np.array(["有限责任公司", "有限公司", "（江门）有限公司", " 五金厂"])
    names = [f"{'江门市' if n % 3 else ''}華{n}{forms[n % 4]}" for n in number.tolist()]
    column = pa.array(names, pa.string())
    distinct = pc.count_distinct(column).as_py() / rows
    assert 0.5 < distinct <= 0.75  # past the default share, within this one
    assert pc.count_distinct(column.slice(0, _SAMPLE)).as_py() <= 0.85 * _SAMPLE
    table = pa.table({"employer_name": column})
    fast, report = standardise(table, dataset)
    field = next(f for f in dataset.fields if f.name == "employer_name")
    one_by_one = standardise_column(column, field)
    assert fast.column("employer_name").to_pylist() == one_by_one.to_pylist()
    assert fast.column("employer_name_norm").to_pylist() == (
        normalised_enterprise_name(one_by_one).to_pylist()
    )
    assert report.repaired["employer_name"] == sum(
        a != b for a, b in zip(names, one_by_one.to_pylist(), strict=True)
    )
