"""Validation rules: identifier checks against python-stdnum, division codes, cross-field rules."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
from stdnum.cn import ric, uscc

from catalog.identifiers import JIANGMEN_DIVISIONS, JIANGMEN_RETIRED_DIVISIONS, make_org_codes
from etl.rules import (
    FIELD_RULES,
    division_codes,
    id_agrees_with_birth_date_and_sex,
    id_kind_matches_applicant_type,
    not_before,
    valid_business_reg_no,
    valid_org_code,
    valid_phone,
    valid_resident_id,
    valid_tax_no,
    valid_uscc,
)
from tests.helpers import resident_ids, usccs

N = 3000
AS_OF = date(2026, 11, 28)  # the partition date the rules judge against
rng = np.random.default_rng(11)


def _ids(n: int = N) -> pd.Series:
    return pd.Series(resident_ids(rng, n, [*JIANGMEN_DIVISIONS, *JIANGMEN_RETIRED_DIVISIONS]))


def _usccs(n: int = N) -> pd.Series:
    return pd.Series(usccs(rng, n, list(JIANGMEN_DIVISIONS)))


def test_retired_jiangmen_codes_are_real_division_codes() -> None:
    assert set(JIANGMEN_DIVISIONS) | set(JIANGMEN_RETIRED_DIVISIONS) <= division_codes()
    assert "999999" not in division_codes()


def test_resident_id_rule_agrees_with_stdnum_check_characters() -> None:
    ids = _ids()
    assert valid_resident_id(ids, AS_OF).all()
    # flip the check character: stdnum's calc_check_digit is the oracle for the right one
    wrong = ids.str.slice(0, 17) + ids.map(lambda i: "0" if ric.calc_check_digit(i) != "0" else "1")
    assert not valid_resident_id(wrong, AS_OF).any()


def test_resident_id_rule_rejects_births_after_the_partition_date() -> None:
    body = "44070320991231001"
    future = body + ric.calc_check_digit(body + "0")
    assert not valid_resident_id(pd.Series([future]), AS_OF)[0]


def test_a_newborn_registered_on_the_partition_date_is_valid_that_night() -> None:
    """The rule's "now" is the partition date, not the machine's clock (years ahead here)."""
    night = date(2031, 6, 1)
    body = "440703" + night.strftime("%Y%m%d") + "001"
    newborn = pd.Series([body + ric.calc_check_digit(body + "0")])
    assert valid_resident_id(newborn, night)[0]
    assert not valid_resident_id(newborn, night - timedelta(days=1))[0]
    assert valid_tax_no(newborn + "00", night)[0]
    assert id_kind_matches_applicant_type(newborn, pd.Series(["自然人"]), night)[0]


def test_a_dated_rule_refuses_to_run_without_a_reference_date() -> None:
    with pytest.raises(ValueError, match="reference date"):
        FIELD_RULES["resident_id"].passes(_ids(1), as_of=None)


def test_resident_id_rule_rejects_bad_dates_divisions_and_shapes() -> None:
    good = _ids(1)[0]
    bad_date = good[:10] + "1332" + good[14:17]
    unknown_division = "990000" + good[6:17]
    cases = pd.Series(
        [
            bad_date + ric.calc_check_digit(bad_date + "0"),
            unknown_division + ric.calc_check_digit(unknown_division + "0"),
            good.lower(),
            good[:17],
            None,
        ]
    )
    assert valid_resident_id(cases, AS_OF).tolist() == [False, False, good[-1] != "X", False, True]


def test_uscc_rule_agrees_with_stdnum_and_checks_the_embedded_org_code() -> None:
    codes = _usccs()
    assert valid_uscc(codes).all()
    assert all(uscc.calc_check_digit(c[:17]) == c[17] for c in codes[:200])
    # a wrong embedded organisation-code check char with a recomputed USCC check char:
    # stdnum accepts it, our rule does not
    body = codes[0][:16] + ("0" if codes[0][16] != "0" else "1")
    forged = body + uscc.calc_check_digit(body)
    assert uscc.is_valid(forged) and not valid_uscc(pd.Series([forged]))[0]


def test_org_codes_tax_numbers_and_registration_numbers() -> None:
    orgs = pd.Series(make_org_codes(np.array(["12345678", "D2143569", "MA4W2X3B"])))
    assert valid_org_code(orgs).all()
    assert not valid_org_code(pd.Series(["123456789", "12345678-8", "1234567"])).any()
    ids = _ids(3)
    taxes = pd.Series(
        [
            _usccs(1)[0],  # a USCC
            "440703" + orgs[0],  # old 15-character number: division + org code
            ids[0] + "00",  # an individual business: owner's ID + 00
            ids[1] + "01",  # the owner's second business
            "440703" + orgs[0][:8] + "0",  # wrong org check
            "999999" + orgs[0],  # not a division
        ]
    )
    assert valid_tax_no(taxes, AS_OF).tolist() == [True, True, True, True, False, False]
    assert valid_business_reg_no(pd.Series(["440700000123454", "440700000123455"])).tolist() == [
        True,
        False,
    ]


def test_dates_and_times_must_be_canonical() -> None:
    from etl.rules import valid_date, valid_datetime

    times = pd.Series(
        ["2026-11-28 10:00:00", "2026-11-28\t10:00:00", "2026-11-28 1:0:0", "2026-11-28", None]
    )
    assert valid_datetime(times).tolist() == [True, False, False, False, True]
    dates = pd.Series(["2026-11-28", "2026-2-3", "2026-02-30", "20261128", None])
    assert valid_date(dates).tolist() == [True, False, False, False, True]


def test_phones() -> None:
    phones = pd.Series(["13812345678", "07503123456", "12812345678", "1381234567", None])
    assert valid_phone(phones).tolist() == [True, True, False, False, True]


def test_cross_field_rules() -> None:
    ids = pd.Series(["44070319850214123X", "44070319850214123X", None, "440703198502141220"])
    births = pd.Series(["1985-02-14", "1985-02-15", "2000-01-01", "1985-02-14"])
    sexes = pd.Series(["男", "男", "女", "男"])  # 17th digit 3 = male, 2 = female
    assert id_agrees_with_birth_date_and_sex(ids, births, sexes).tolist() == [
        True,
        False,
        True,
        False,
    ]
    later = pd.Series(["2020-01-02 09:00:00", "2020-01-01 09:00:00", None])
    earlier = pd.Series(["2020-01-01 10:00:00", "2020-01-01 10:00:00", "2020-01-01 10:00:00"])
    assert not_before(later, earlier).tolist() == [True, False, True]
    applicants = pd.Series([ids[0], _usccs(1)[0], _usccs(1)[0], ids[0]])
    kinds = pd.Series(["自然人", "法人", "自然人", "法人"])
    matches = id_kind_matches_applicant_type(applicants, kinds, AS_OF)
    assert matches.tolist() == [True, True, False, False]


def test_rule_names_the_catalog_accepts_are_the_rules_that_exist() -> None:
    """A rule named in the catalog has a function behind it, and every function a name."""
    from typing import get_args

    from catalog.definitions import CROSS_FIELD_ARITY, CheckName, RuleName
    from etl.rules import CROSS_FIELD_RULES, FIELD_RULES

    assert set(get_args(RuleName)) == set(FIELD_RULES)
    assert set(get_args(CheckName)) == set(CROSS_FIELD_RULES) == set(CROSS_FIELD_ARITY)
    for name, rule in CROSS_FIELD_RULES.items():  # the arity the catalog checks is the real one
        params = rule.check.__code__.co_argcount - rule.dated  # as_of is no column
        assert params == CROSS_FIELD_ARITY[name], name
