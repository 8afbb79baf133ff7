"""Identifier rules (docs/architecture.md §4) against python-stdnum as an outside oracle."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest
from stdnum.cn import ric, uscc
from stdnum.iso7064 import mod_11_10

from catalog.identifiers import (
    JIANGMEN_DIVISIONS,
    business_reg_no_check_digits,
    downgrade_resident_id18,
    is_valid_resident_id,
    make_business_reg_nos,
    make_org_codes,
    make_usccs,
    org_code_check_chars,
    resident_id_check_chars,
    upgrade_resident_id15,
    uscc_check_chars,
)
from tests.helpers import resident_ids

N = 5000
rng = np.random.default_rng(7)
AS_OF = date(2026, 11, 28)


def _random_ids(n: int = N) -> np.ndarray:
    return resident_ids(rng, n, [*JIANGMEN_DIVISIONS, "110101", "440106"])


def test_resident_id_check_chars_agree_with_stdnum() -> None:
    ids = _random_ids()
    # stdnum wants the whole number (it ignores the last char)
    expected = [ric.calc_check_digit(i[:17] + "?") for i in ids]
    assert list(resident_id_check_chars(np.array([i[:17] for i in ids]))) == expected
    assert is_valid_resident_id(ids, AS_OF).all()


def test_bad_check_char_and_bad_shapes_are_invalid() -> None:
    ids = _random_ids(200)
    wrong = np.array([i[:17] + ("0" if i[17] != "0" else "1") for i in ids])
    assert not is_valid_resident_id(wrong, AS_OF).any()
    junk = ["", None, "44070319850214123", "4407031985021412３X", "44070319851340123X"]
    assert not is_valid_resident_id(junk, AS_OF).any()


def test_fifteen_digit_ids_upgrade_to_the_same_eighteen() -> None:
    ids = _random_ids()
    born_1900s = np.array([i for i in ids if i[6:8] == "19"])
    assert (upgrade_resident_id15(downgrade_resident_id18(born_1900s)) == born_1900s).all()


def test_org_code_and_uscc_check_chars_agree_with_stdnum() -> None:
    alphabet = np.array(list("0123456789ABCDEFGHJKLMNPQRTUWXY"))
    bodies = np.array(["".join(r) for r in rng.choice(alphabet[:10], (N, 8))])
    orgs = make_org_codes(bodies)
    assert (org_code_check_chars(bodies) == np.array([o[8] for o in orgs])).all()
    codes = make_usccs(
        rng.choice(["91", "92", "93"], N), rng.choice(list(JIANGMEN_DIVISIONS), N), orgs
    )
    assert [uscc.calc_check_digit(c[:17]) for c in codes] == list(
        uscc_check_chars(np.array([c[:17] for c in codes]))
    )
    assert all(uscc.is_valid(c) for c in codes)


@pytest.mark.parametrize(
    "body, check",
    [
        # 1·3+2·7+3·9+4·10+5·5+6·8+7·4+8·2 = 201; 201 mod 11 = 3; 11−3 = 8
        ("12345678", "8"),
        # letters count A=10 … Z=35: M22·3+A10·7+4·9+W32·10+2·5+X33·8+3·4+B11·2 = 800;
        # 800 mod 11 = 8; 11−8 = 3
        ("MA4W2X3B", "3"),
        # 9·3+9·7+9·9+9·10+9·5+9·8+9·4+9·2 = 432; 432 mod 11 = 3; 11−3 = 8
        ("99999999", "8"),
        # all zeros: sum 0; 11−0 = 11, written "0"
        ("00000000", "0"),
        # D13·3+2·7+1·9+4·10+3·5+5·8+6·4+9·2 = 199; 199 mod 11 = 1; 11−1 = 10, written "X"
        ("D2143569", "X"),
    ],
)
def test_org_code_known_values(body: str, check: str) -> None:
    # worked by hand from GB 11714 (weights 3 7 9 10 5 8 4 2), independent of the code
    assert org_code_check_chars(np.array([body]))[0] == check


def test_business_reg_no_check_digit_agrees_with_iso7064() -> None:
    bodies = np.array(["".join(map(str, r)) for r in rng.integers(0, 10, (N, 14))])
    numbers = make_business_reg_nos(bodies)
    assert all(mod_11_10.is_valid(n) for n in numbers)
    assert list(business_reg_no_check_digits(bodies)) == [
        mod_11_10.calc_check_digit(b) for b in bodies
    ]
