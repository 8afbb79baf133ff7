"""The leak scan finds IDs, mobiles, ungranted columns and foreign tokens, and never says them."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import stdnum.cn.ric as ric

from catalog.identifiers import JIANGMEN_DIVISIONS
from masking import leak_scan
from masking.leak_scan import scan_table
from tests.helpers import resident_ids

RNG = np.random.default_rng(7)
IDS = resident_ids(RNG, 50, list(JIANGMEN_DIVISIONS))


def kinds(findings) -> set[tuple[str, str]]:
    return {(f.column, f.kind) for f in findings}


def test_masked_output_is_clean() -> None:
    masked = [f"{i[0]}{'*' * 16}{i[-1]}" for i in IDS]
    table = pa.table(
        {
            "id_no": masked,
            "name": ["张**"] * 50,
            "phone": ["138****5678"] * 50,
            "person_token": [f"{n:032x}" for n in range(50)],
            "capital": pa.array(range(50), pa.int64()),
        }
    )
    assert scan_table(table) == []


def test_ids_inside_text_are_found_only_with_a_right_check_char() -> None:
    assert all(ric.calc_check_digit(i[:17] + "?") == i[17] for i in IDS)  # the oracle agrees
    good = IDS[3]
    wrong = good[:17] + ("0" if good[17] != "0" else "1")
    values = ["备注", f"联系人身份证{good}，已核实", wrong, None, f"x{good.lower()}"]
    (finding,) = scan_table(pa.table({"remark": values}))
    assert (finding.kind, finding.rows, finding.first_row) == ("resident_id", 2, 1)
    assert good not in finding.describe("shared/dishui/gongan.population")


def test_mobiles_in_any_notation_and_numeric_ids_are_found() -> None:
    notes = ["call +86 138-1234-5678", "13812345678", "tel 0750-3212345", "1381234567"]
    (finding,) = scan_table(pa.table({"note": notes}))
    assert (finding.kind, finding.rows, finding.first_row) == ("mobile", 2, 0)
    ids_as_numbers = [i for i in IDS if i[-1] != "X"][:3]
    numeric = pa.table({"id_no": pa.array([int(i) for i in ids_as_numbers], pa.int64())})
    assert kinds(scan_table(numeric)) == {("id_no", "resident_id")}


def test_old_15_digit_ids_unless_the_column_is_exempt() -> None:
    old = [i[:6] + i[8:17] for i in IDS[:4]]
    table = pa.table({"holder": old, "reg_no": ["440703000012345"] * 4})
    assert kinds(scan_table(table)) == {("holder", "resident_id15")}
    assert kinds(scan_table(table, exempt_columns=["holder"])) == set()


def test_ungranted_columns_and_foreign_tokens() -> None:
    table = pa.table({"person_token": ["aa" * 16, "bb" * 16, "cc" * 16], "address": ["x"] * 3})
    findings = scan_table(
        table,
        expected_columns=["person_token"],
        foreign_tokens={"person_token": pa.array(["bb" * 16, "dd" * 16])},
    )
    assert kinds(findings) == {("address", "ungranted_column"), ("person_token", "foreign_token")}
    foreign = next(f for f in findings if f.kind == "foreign_token")
    assert (foreign.rows, foreign.first_row) == (1, 1)


def test_the_candidate_pass_drops_no_finding(monkeypatch) -> None:
    """Only values with eleven digits and nothing but separators between them go through the
    ID and mobile patterns (``CANDIDATE_RE2``): on random text built from leaks with
    separators everywhere, near misses, letters and CJK, the findings (kinds, row counts,
    first rows) are those of the patterns run over every value."""
    rng = np.random.default_rng(11)
    separators = [" ", "-", "(", ")", "（", "）", "\t", "\n", "  "]
    mobiles = [f"1{rng.integers(3, 10)}{rng.integers(0, 10**9):09d}" for _ in range(40)]
    spread = ["".join(c + str(rng.choice(separators)) for c in m)[:-1] for m in mobiles[::2]]
    pieces = [*IDS[:20], *(i[:15] for i in IDS[20:30]), *mobiles[1::2], *spread]
    pieces += [f"+86 {m[:3]}-{m[3:7]}-{m[7:]}" for m in mobiles[:10]]
    pieces += [m[:10] for m in mobiles[:10]] + ["2026-11-28 10:23:45", "XZ2026112800017", ":"]
    pieces += ["张三", "Jiangmen", "，", "、", "x", "", "0", "12", "·"]
    values: list[str | None] = []
    for _ in range(3_000):
        parts = rng.choice(len(pieces), size=rng.integers(0, 4))
        values.append("".join(pieces[p] for p in parts) if rng.random() > 0.03 else None)
    table = pa.table({"remark": values, "reg_no": values[::-1]})
    narrowed = scan_table(table, exempt_columns=["reg_no"])
    monkeypatch.setattr(leak_scan, "CANDIDATE_RE2", "")  # every value a candidate
    everywhere = scan_table(table, exempt_columns=["reg_no"])
    assert narrowed == everywhere
    assert {f.kind for f in narrowed} == {"resident_id", "resident_id15", "mobile"}
