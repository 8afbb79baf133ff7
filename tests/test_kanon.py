"""The k-anonymity gate and risk figures, checked against plain pandas computed here.

The reference labels, class sizes, suppression and loss below are written independently of
``masking.kanon`` (per-row Python and ``groupby().size()`` on small frames), so a broken
encoding, roll-up, search or labelling shows up as a disagreement.
"""

from __future__ import annotations

import itertools
import math
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from catalog.definitions import load_catalog
from catalog.errors import CatalogError, PublicationBlocked
from masking.kanon import (
    AS_IS,
    SUPPRESSED,
    Hierarchy,
    Level,
    age_hierarchy,
    birth_date_hierarchy,
    categorical_hierarchy,
    date_hierarchy,
    division_hierarchy,
    k_anonymise,
    quasi_identifier_hierarchies,
    reidentification_risk,
)

DIVISIONS = ["440703", "440704", "440705", "440781", "440783", "440784", "440785"]
RETIRED = ["440721", "440782"]
TOWNS = ["440703001", "440705100201", "440781102"]  # town / village codes
ELSEWHERE = ["440106"]
ETHNICITY = ["汉族", "壮族", "瑶族", "回族", "苗族"]


def people(n: int, seed: int, null_share: float = 0.01) -> pd.DataFrame:
    """Simulated-looking residents: birth dates, sex, division code, skewed ethnicity."""
    rng = np.random.default_rng(seed)
    births = [date(1935, 1, 1) + timedelta(days=int(d)) for d in rng.integers(0, 85 * 365, n)]
    divisions = DIVISIONS + RETIRED + TOWNS + ELSEWHERE
    weights = np.array([20, 15, 25, 15, 10, 8, 7, 1, 1, 2, 1, 1, 1], dtype=float)
    frame = pd.DataFrame(
        {
            "person": np.arange(n),
            "birth_date": pd.Series(births, dtype=object),
            "sex": rng.choice(["男", "女"], n),
            "division_code": rng.choice(divisions, n, p=weights / weights.sum()),
            "ethnicity": rng.choice(ETHNICITY, n, p=[0.95, 0.02, 0.015, 0.01, 0.005]),
            "income": rng.integers(1000, 30000, n),
        }
    )
    frame.loc[rng.random(n) < null_share, "birth_date"] = None
    frame["sex"] = frame["sex"].astype(object)
    frame.loc[rng.random(n) < null_share, "sex"] = None
    return frame


def hierarchies() -> dict[str, Hierarchy]:
    return {
        "birth_date": birth_date_hierarchy(),
        "sex": categorical_hierarchy("sex"),
        "division_code": division_hierarchy(),
        "ethnicity": categorical_hierarchy("ethnicity"),
    }


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def reference_label(value: object, level: str) -> object:
    """What a level means, written out per value (independent of masking.kanon)."""
    if level == "*":
        return "*"
    if _missing(value):
        return None
    if level in ("date", "code", "value", "age"):
        return value
    if level == "year":
        return str(value.year)
    if level == "year-month":
        return f"{value.year}-{value.month:02d}"
    if level.endswith("-year band"):
        width = int(level.split("-")[0])
        number = value.year if isinstance(value, date) else int(value)
        low = number // width * width
        return f"{low}-{low + width - 1}"
    if level == "district":
        return value[:6]
    if level == "city":
        return value[:4]
    raise AssertionError(level)


def reference_column(values: pd.Series, level: str) -> pd.Series:
    return pd.Series([reference_label(v, level) for v in values], index=values.index, dtype=object)


def class_sizes(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """Equivalence class size of every row (NULL grouped as a value)."""
    keyed = frame[columns].astype(object).where(frame[columns].notna(), "<NULL>")
    return keyed.groupby(columns, dropna=False)[columns[0]].transform("size")


def output_frame(result_table: pa.Table | pd.DataFrame) -> pd.DataFrame:
    if isinstance(result_table, pa.Table):
        return result_table.to_pandas()
    return result_table


# --------------------------------------------------------------------------- the gate


@pytest.mark.parametrize("kind", ["pandas", "arrow"])
@pytest.mark.parametrize(("k", "limit"), [(2, 0.0), (5, 0.05), (10, 0.02), (25, 0.1)])
def test_output_is_k_anonymous(kind: str, k: int, limit: float) -> None:
    original = people(4000, seed=k)
    table = pa.Table.from_pandas(original, preserve_index=False) if kind == "arrow" else original
    result = k_anonymise(table, hierarchies(), k=k, max_suppression=limit)
    out = output_frame(result.table)
    qis = list(hierarchies())

    sizes = out.groupby(qis, dropna=False).size()
    assert sizes.min() >= k
    assert result.achieved_k == sizes.min()
    assert result.risk.classes == len(sizes)
    assert result.highest_risk == pytest.approx(1 / sizes.min())
    assert result.average_risk == pytest.approx(len(sizes) / len(out))
    assert result.suppressed_rows == len(original) - len(out)
    assert result.suppressed_rows <= limit * len(original)
    assert result.suppressed_share == pytest.approx(result.suppressed_rows / len(original))

    # Each kept row carries its own generalised values; other columns untouched.
    kept = original.set_index("person").loc[out["person"]]
    assert list(out["income"]) == list(kept["income"])
    for name, level in result.levels.items():
        expected = reference_column(kept[name].reset_index(drop=True), level)
        got = out[name].reset_index(drop=True).astype(object).where(out[name].notna().values)
        assert [None if _missing(v) else v for v in got] == [
            None if _missing(v) else v for v in expected
        ], name
    # The rows removed are exactly those in classes below k at the chosen node.
    generalised = pd.DataFrame(
        {n: reference_column(original[n], lv) for n, lv in result.levels.items()}
    )
    below = class_sizes(generalised, qis) < k
    assert set(out["person"]) == set(original.loc[~below.values, "person"])


def _lattice_figures(
    frame: pd.DataFrame, hierarchy: dict[str, Hierarchy], k: int
) -> dict[tuple[int, ...], tuple[int, float]]:
    """Brute force: (suppressed rows, ARX loss) at every node of the lattice."""
    names = list(hierarchy)
    labels = {
        (name, depth): reference_column(frame[name], level)
        for name in names
        for depth, level in enumerate(hierarchy[name].level_names)
    }
    value_loss = {}
    for name in names:
        distinct = frame[name].astype(object).drop_duplicates()
        domain = len(distinct)
        for depth, level in enumerate(hierarchy[name].level_names):
            general = reference_column(distinct, level).fillna("<NULL>")
            leaves = general.map(general.value_counts())
            loss = (leaves - 1) / (domain - 1) if domain > 1 else leaves * 0.0
            lookup = dict(zip(distinct.fillna("<NULL>"), loss, strict=True))
            value_loss[(name, depth)] = frame[name].astype(object).fillna("<NULL>").map(lookup)
    figures = {}
    for node in itertools.product(*(range(len(hierarchy[n].levels)) for n in names)):
        generalised = pd.DataFrame({n: labels[(n, d)] for n, d in zip(names, node, strict=True)})
        suppressed = (class_sizes(generalised, names) < k).to_numpy()
        per_row = sum(value_loss[(n, d)].to_numpy() for n, d in zip(names, node, strict=True))
        per_row = np.where(suppressed, len(names), per_row)
        figures[node] = (int(suppressed.sum()), float(per_row.mean() / len(names)))
    return figures


@pytest.mark.parametrize(
    ("seed", "k", "limit"), [(1, 5, 0.05), (2, 3, 0.0), (3, 10, 0.1), (4, 5, 0.01)]
)
def test_chosen_node_is_minimal_and_has_least_loss(seed: int, k: int, limit: float) -> None:
    frame = people(1500, seed)
    hierarchy = hierarchies()
    result = k_anonymise(frame, hierarchy, k=k, max_suppression=limit)
    figures = _lattice_figures(frame, hierarchy, k)
    allowed = math.floor(limit * len(frame) + 1e-9)
    satisfying = {node for node, (suppressed, _) in figures.items() if suppressed <= allowed}

    def below(node: tuple[int, ...]) -> list[tuple[int, ...]]:
        return [node[:i] + (v - 1,) + node[i + 1 :] for i, v in enumerate(node) if v]

    minimal = {node for node in satisfying if not any(p in satisfying for p in below(node))}
    chosen = tuple(
        hierarchy[name].level_names.index(level) for name, level in result.levels.items()
    )
    assert chosen in minimal
    assert figures[chosen][0] == result.suppressed_rows
    assert result.information_loss == pytest.approx(figures[chosen][1], abs=1e-9)
    assert figures[chosen][1] <= min(figures[node][1] for node in minimal) + 1e-9
    assert result.nodes_evaluated <= result.lattice_size == len(figures)


def test_the_gate_is_deterministic_and_kind_independent() -> None:
    frame = people(3000, seed=7)
    first = k_anonymise(frame, hierarchies())
    again = k_anonymise(frame.sample(frac=1.0, random_state=3), hierarchies())
    arrow = k_anonymise(pa.Table.from_pandas(frame, preserve_index=False), hierarchies())
    assert first.report() == again.report() == arrow.report()


def test_suppression_beyond_the_limit_blocks_publication() -> None:
    frame = people(2000, seed=11)
    capped = hierarchies() | {
        "birth_date": birth_date_hierarchy().up_to("date"),
        "division_code": division_hierarchy().up_to("code"),
    }
    with pytest.raises(PublicationBlocked) as caught:
        k_anonymise(frame, capped, k=5, max_suppression=0.05, dataset="gongan.population")
    message = str(caught.value)
    top = pd.DataFrame(
        {
            "birth_date": frame["birth_date"],
            "division_code": frame["division_code"],
            "sex": "*",
            "ethnicity": "*",
        }
    )
    best = (class_sizes(top, list(top)) < 5).mean()
    assert best > 0.05
    assert "\n" not in message
    assert "'gongan.population'" in message and "k=5" in message and "5.0%" in message
    assert f"best achievable {best:.1%}" in message
    values = {str(v) for column in ("birth_date", "division_code") for v in frame[column]}
    assert not any(value in message for value in values if value != "None")


def test_fewer_rows_than_k_blocks_even_fully_generalised() -> None:
    with pytest.raises(PublicationBlocked, match="best achievable 100.0%"):
        k_anonymise(people(4, seed=1), hierarchies(), k=5)


def test_a_small_table_is_generalised_when_suppression_would_exceed_the_limit() -> None:
    """Hand-computed: 7 men and 2 women, k = 3."""
    frame = pd.DataFrame({"sex": ["男"] * 7 + ["女"] * 2, "n": range(9)})
    sex = {"sex": categorical_hierarchy("sex")}

    lenient = k_anonymise(frame, sex, k=3, max_suppression=0.25)  # 2/9 = 22 % may go
    assert lenient.levels == {"sex": "value"}
    assert (lenient.suppressed_rows, lenient.achieved_k) == (2, 7)
    assert list(lenient.table["n"]) == list(range(7))
    assert lenient.highest_risk == pytest.approx(1 / 7)
    assert lenient.average_risk == pytest.approx(1 / 7)
    assert lenient.information_loss == pytest.approx(2 / 9)

    strict = k_anonymise(frame, sex, k=3, max_suppression=0.1)
    assert strict.levels == {"sex": "*"}
    assert (strict.suppressed_rows, strict.achieved_k) == (0, 9)
    assert list(strict.table["sex"]) == ["*"] * 9
    assert strict.information_loss == pytest.approx(1.0)


def test_null_is_a_value_of_its_own() -> None:
    frame = pd.DataFrame({"ethnicity": ["汉族"] * 6 + [None] * 5 + ["壮族"], "n": range(12)})
    result = k_anonymise(
        frame, {"ethnicity": categorical_hierarchy("ethnicity")}, k=5, max_suppression=0.1
    )
    assert result.levels == {"ethnicity": "value"}
    assert result.suppressed_rows == 1  # the one 壮族; the five NULLs are a class of five
    assert result.table["ethnicity"].isna().sum() == 5
    assert result.achieved_k == 5


def test_no_quasi_identifiers_is_one_class_of_all_rows() -> None:
    frame = people(50, seed=2)
    result = k_anonymise(frame, {}, k=5)
    assert result.levels == {}
    assert result.achieved_k == 50 and result.suppressed_rows == 0
    assert result.table.equals(frame)
    with pytest.raises(PublicationBlocked):
        k_anonymise(frame.head(3), {}, k=5)


def test_an_empty_table_passes_with_nothing_published() -> None:
    result = k_anonymise(people(10, seed=1).head(0), hierarchies())
    assert len(result.table) == 0
    assert (result.achieved_k, result.suppressed_rows, result.highest_risk) == (0, 0, 0.0)


# --------------------------------------------------------------------------- risk


def test_risk_figures_hand_computed() -> None:
    # Classes (sex, year): (男, 1980) × 1, (女, 1980) × 2, (男, 1990) × 3, (NULL, 1990) × 4.
    frame = pd.DataFrame(
        {
            "sex": ["男"] + ["女"] * 2 + ["男"] * 3 + [None] * 4,
            "year": [1980] * 3 + [1990] * 7,
        }
    )
    figures = reidentification_risk(frame, ["sex", "year"])
    assert (figures.records, figures.classes, figures.smallest_class) == (10, 4, 1)
    assert figures.highest_risk == 1.0
    assert figures.average_risk == pytest.approx(0.4)  # (1·1 + 2·½ + 3·⅓ + 4·¼) / 10
    assert figures.records_at_risk == 1.0  # every class is smaller than 5
    assert reidentification_risk(frame, ["sex", "year"], threshold=0.3).records_at_risk == 0.6
    arrow = reidentification_risk(pa.Table.from_pandas(frame), ["sex", "year"], threshold=0.3)
    assert arrow == reidentification_risk(frame, ["sex", "year"], threshold=0.3)
    whole = reidentification_risk(frame, [])
    assert (whole.classes, whole.smallest_class, whole.average_risk) == (1, 10, 0.1)


# --------------------------------------------------------------------------- hierarchies


def _labels(hierarchy: Hierarchy, values: pa.Array) -> dict[str, list[object]]:
    return {level.name: level.generalise(values).to_pylist() for level in hierarchy.levels}


def test_builtin_hierarchies_label_each_level() -> None:
    births = pa.array([date(1987, 3, 4), date(1990, 12, 31), None])
    assert _labels(birth_date_hierarchy(), births) == {
        "date": [date(1987, 3, 4), date(1990, 12, 31), None],
        "year": ["1987", "1990", None],
        "5-year band": ["1985-1989", "1990-1994", None],
        "10-year band": ["1980-1989", "1990-1999", None],
        "*": ["*", "*", "*"],
    }
    assert _labels(birth_date_hierarchy(), pa.array(["1987-03-04"]))["year"] == ["1987"]
    codes = pa.array(["440703001", "440781", "440721", None])
    assert _labels(division_hierarchy(), codes) == {
        "code": ["440703001", "440781", "440721", None],
        "district": ["440703", "440781", "440721", None],
        "city": ["4407", "4407", "4407", None],
        "*": ["*", "*", "*", "*"],
    }
    assert _labels(date_hierarchy(), pa.array([date(2024, 3, 9)])) == {
        "date": [date(2024, 3, 9)],
        "year-month": ["2024-03"],
        "year": ["2024"],
        "*": ["*"],
    }
    assert _labels(age_hierarchy(), pa.array([0, 24, 25, None])) == {
        "age": [0, 24, 25, None],
        "5-year band": ["0-4", "20-24", "25-29", None],
        "10-year band": ["0-9", "20-29", "20-29", None],
        "*": ["*"] * 4,
    }
    assert categorical_hierarchy("sex").level_names == ["value", "*"]


def test_catalog_quasi_identifiers_get_their_default_hierarchies() -> None:
    population = load_catalog().dataset("gongan.population")
    found = {
        name: h.level_names for name, h in quasi_identifier_hierarchies(population.fields).items()
    }
    assert found == {
        "sex": ["value", "*"],
        "birth_date": ["date", "year", "5-year band", "10-year band", "*"],
        "ethnicity": ["value", "*"],
        "division_code": ["code", "district", "city", "*"],
    }


# --------------------------------------------------------------------------- bad input


def _bad(call, match: str) -> None:
    with pytest.raises(CatalogError, match=match) as caught:
        call()
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("k", [1, 0, -3])
def test_k_below_two_is_refused(k: int) -> None:
    _bad(lambda: k_anonymise(people(20, 1), hierarchies(), k=k), f"k ≥ 2, got k={k}")


def test_bad_arguments_are_one_line_errors() -> None:
    frame = people(20, seed=1)
    _bad(
        lambda: k_anonymise(frame, {"religion": categorical_hierarchy("religion")}),
        "not in the table: religion",
    )
    _bad(lambda: reidentification_risk(frame, ["sex", "religion"]), "not in the table: religion")
    _bad(lambda: k_anonymise(frame, hierarchies(), max_suppression=1.5), "max_suppression")
    _bad(lambda: reidentification_risk(frame, ["sex", "sex"]), "named twice")
    _bad(lambda: Hierarchy("x", (Level("year", SUPPRESSED),)), "level 0 must be AS_IS")
    _bad(lambda: birth_date_hierarchy().up_to("decade"), "no level 'decade'")


def test_a_hierarchy_that_does_not_coarsen_is_refused() -> None:
    frame = pd.DataFrame({"code": ["440703", "440704"] * 5})
    swapped = Hierarchy(
        "odd",
        (
            Level("code", AS_IS),
            Level("city", lambda v: pa.array(["4407"] * len(v))),
            Level("district", AS_IS),  # finer than its parent level
        ),
    )
    _bad(
        lambda: k_anonymise(frame, {"code": swapped}),
        "'district' is not a coarsening of level 'city'",
    )


def test_an_unparseable_date_names_the_level_not_the_value() -> None:
    frame = pd.DataFrame({"birth_date": ["1987-03-04", "19870304x"] * 5})
    with pytest.raises(CatalogError, match="level 'year' cannot generalise 'birth_date'") as caught:
        k_anonymise(frame, {"birth_date": birth_date_hierarchy()})
    assert "19870304x" not in str(caught.value) and "\n" not in str(caught.value)


def test_a_minimal_node_wins_over_a_coarser_one_with_less_loss() -> None:
    """OLA's rule: only k-minimal nodes compete. Merging ten rare values into "rare" would
    lose 10 × 0.9 / 100 = 0.09 against 10 / 100 = 0.10 for suppressing them, but the
    minimal node (values as they are, 10 % suppressed) is the one chosen."""
    import pyarrow.compute as pc

    frame = pd.DataFrame({"kind": ["x"] * 90 + [f"r{i}" for i in range(10)]})
    rare = Hierarchy(
        "kind",
        (
            Level("value", AS_IS),
            Level("rare merged", lambda v: pc.if_else(pc.starts_with(v, "r"), "rare", v)),
            Level("*", SUPPRESSED),
        ),
    )
    result = k_anonymise(frame, {"kind": rare}, k=5, max_suppression=0.1)
    assert result.levels == {"kind": "value"}
    assert result.suppressed_rows == 10
    assert result.information_loss == pytest.approx(0.10)


@pytest.mark.parametrize("form", ["datetime64", "iso-string", "arrow-timestamp"])
def test_birth_dates_in_other_forms_generalise_alike(form: str) -> None:
    frame = people(2000, seed=5, null_share=0.0)
    expected = k_anonymise(frame, hierarchies())
    other = frame.copy()
    if form == "datetime64":
        other["birth_date"] = pd.to_datetime(other["birth_date"])
    elif form == "iso-string":
        other["birth_date"] = other["birth_date"].map(date.isoformat)
    else:
        other = pa.Table.from_pandas(
            other.assign(birth_date=pd.to_datetime(other["birth_date"])), preserve_index=False
        )
    result = k_anonymise(other, hierarchies())
    assert result.report() == expected.report()
    assert list(output_frame(result.table)["birth_date"]) == list(expected.table["birth_date"])
