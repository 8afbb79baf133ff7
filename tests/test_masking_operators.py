"""Masking operators on known inputs: Chinese names of every length, NULLs, empty strings."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from stdnum.cn import ric

from catalog.errors import MaskingKeyError
from catalog.identifiers import is_valid_resident_id, make_resident_ids
from masking.keys import MasterKey
from masking.operators import (
    Band,
    Context,
    Drop,
    Fake,
    Generalise,
    Keep,
    Mask,
    Round,
    Token,
)

MASTER = MasterKey(bytes(range(32)))
NAMES = ["王", "张三", "李小龙", "欧阳娜娜", "", None]


def tokens_for(consumer: str) -> Context:
    return Context(key=MASTER.token_key(consumer))


def fakes_for(consumer: str) -> Context:
    return Context(key=MASTER.fake_key(consumer))


def test_keep_and_drop() -> None:
    values = pa.array(NAMES)
    assert Keep().apply(values).to_pylist() == NAMES
    assert Drop().apply(values).null_count == len(NAMES)


@pytest.mark.parametrize(
    ("operator", "expected"),
    [
        (Mask(keep_first=1), ["*", "张*", "李**", "欧***", "", None]),
        # short values show at most half: a 2-character name is never shown whole
        (Mask(keep_first=1, keep_last=1), ["*", "张*", "李*龙", "欧**娜", "", None]),
        (Mask(keep_last=1), ["*", "*三", "**龙", "***娜", "", None]),
        (Mask(keep_first=2, keep_last=2), ["*", "张*", "李**", "欧阳**", "", None]),
        (Mask(), ["*", "**", "***", "****", "", None]),
        (Mask(keep_first=1, char="○"), ["○", "张○", "李○○", "欧○○○", "", None]),
    ],
)
def test_mask_counts_characters_not_bytes(operator: Mask, expected: list) -> None:
    assert operator.apply(pa.array(NAMES)).to_pylist() == expected


def test_mask_design_examples_for_phone_and_id() -> None:
    phones = pa.array(["13812345678", "12345", "0750-3456789"])
    assert Mask(keep_first=3, keep_last=4).apply(phones).to_pylist() == [
        "138****5678",
        "12***",
        "075*****6789",
    ]
    ids = pa.array(["44070319900101123X", "440703900101123"], pa.large_string())
    out = Mask(keep_first=1, keep_last=1).apply(ids)
    assert out.type == pa.large_string()
    assert out.to_pylist() == ["4" + "*" * 16 + "X", "4" + "*" * 13 + "3"]


def test_mask_takes_slices_chunks_and_pandas() -> None:
    sliced = pa.array(["甲乙丙", None, "张三", "欧阳娜娜"]).slice(1, 3)
    assert Mask(keep_first=1).apply(sliced).to_pylist() == [None, "张*", "欧***"]
    chunked = pa.chunked_array([["张三"], ["李小龙", None]])
    assert Mask(keep_first=1).apply(chunked).to_pylist() == ["张*", "李**", None]
    series = pd.Series(["张三", None, "13812345678"], dtype="str")
    assert Mask(keep_first=1).apply(series).to_pylist() == ["张*", None, "1**********"]
    mixed = pa.array(["ab张三cd", "x"])  # ASCII and Chinese in one value
    assert Mask(keep_first=2, keep_last=2).apply(mixed).to_pylist() == ["ab**cd", "*"]


def test_mask_rejects_non_string_columns() -> None:
    with pytest.raises(TypeError, match="string"):
        Mask(keep_first=1).apply(pa.array([1, 2]))


def test_token_is_per_consumer_and_stable() -> None:
    ids = pa.array(["44070319900101123X", "440703199001011235", None, "", "44070319900101123X"])
    dishui = Token().apply(ids, tokens_for("dishui")).to_pylist()
    again = Token().apply(pa.array(["x", "44070319900101123X"]), tokens_for("dishui"))
    renshe = Token().apply(ids, tokens_for("renshe")).to_pylist()
    assert dishui[0] == dishui[4] == again[1].as_py()  # same value, same token, any call
    assert dishui[0] != dishui[1]
    assert dishui[2] is None and dishui[3] == ""
    assert all(len(t) == 32 and int(t, 16) >= 0 for t in (dishui[0], dishui[1]))
    assert not set(dishui[:2]) & set(renshe[:2])  # another consumer's tokens do not join
    other_master = MasterKey(bytes(range(1, 33)))
    assert Token().apply(ids, Context(key=other_master.token_key("dishui")))[0] != dishui[0]


def test_token_is_hmac_sha256_of_the_value_under_the_derived_key() -> None:
    import hmac

    key = MASTER.token_key("dishui")
    token = Token().apply(pa.array(["张三"]), Context(key=key))[0].as_py()
    assert token == hmac.new(key.secret, "张三".encode(), "sha256").hexdigest()[:32]


def test_token_needs_a_token_key() -> None:
    with pytest.raises(MaskingKeyError, match="needs a derived masking key"):
        Token().apply(pa.array(["a"]))
    with pytest.raises(MaskingKeyError, match="needs a token key"):
        Token().apply(pa.array(["a"]), fakes_for("dishui"))


def test_token_of_integers_equals_token_of_their_text() -> None:
    ctx = tokens_for("dishui")
    assert Token().apply(pa.array([42]), ctx) == Token().apply(pa.array(["42"]), ctx)


def test_generalise_dates() -> None:
    dates = pa.array([dt.date(1990, 3, 4), None, dt.date(2001, 12, 31)])
    assert Generalise("year_month").apply(dates).to_pylist() == ["1990-03", None, "2001-12"]
    assert Generalise("year").apply(dates).to_pylist() == [1990, None, 2001]
    stamps = pa.array([dt.datetime(1990, 3, 4, 23, 59)], pa.timestamp("us"))
    assert Generalise("year_month").apply(stamps).to_pylist() == ["1990-03"]


def test_age_band_counts_birthdays_at_the_reference_date() -> None:
    births = pa.array(
        [dt.date(1990, 6, 1), dt.date(1990, 6, 2), dt.date(2000, 2, 29), dt.date(1920, 1, 1), None]
    )
    ctx = Context(reference_date=dt.date(2025, 6, 1))
    assert Generalise("age_band").apply(births, ctx).to_pylist() == [
        "35-39",  # 35 today
        "30-34",  # 34 until tomorrow
        "25-29",
        "90+",
        None,
    ]
    assert Generalise("age_band", width=10).apply(births, ctx).to_pylist()[:2] == ["30-39"] * 2
    leap = Generalise("age_band", width=1).apply(
        pa.array([dt.date(2000, 2, 29)]), Context(reference_date=dt.date(2001, 2, 28))
    )
    assert leap.to_pylist() == ["0-0"]
    with pytest.raises(ValueError, match="reference date"):
        Generalise("age_band").apply(births)


def test_generalise_address_to_district_and_codes_to_prefix() -> None:
    addresses = pa.array(
        [
            "广东省江门市新会区会城街道",
            "台山市台城镇江海路3号",
            "广州市天河区",
            "",
            None,
            "新会市旧址",
        ]
    )
    assert Generalise("district").apply(addresses).to_pylist() == [
        "新会区",
        "台山市",  # named first; the street name 江海路 is not 江海区
        None,
        None,
        None,
        "新会区",
    ]
    assert Generalise("district_code").apply(addresses).to_pylist()[:2] == ["440705", "440781"]
    codes = pa.array(["440703", None, "4407"])
    assert Generalise("prefix", length=4).apply(codes).to_pylist() == ["4407", None, "4407"]


def test_the_district_is_the_one_named_earliest_in_the_address() -> None:
    """Earliest in the text wins over listed first (恩平市 before 蓬江区 below); at one place
    the name listed first; addresses built at random from every name and filler text."""
    import random

    from masking.operators import _DISTRICT_NAMES

    assert Generalise("district").apply(pa.array(["恩平市蓬江路5号蓬江区"])).to_pylist() == [
        "恩平市"
    ]
    pieces = [name for name, _ in _DISTRICT_NAMES] + ["江门市", "路", "12号", "江海", "新会"]
    rng = random.Random(7)
    addresses = ["".join(rng.choices(pieces, k=rng.randint(0, 4))) for _ in range(3_000)]

    def earliest(address: str) -> str | None:
        found = [(address.find(n), i) for i, (n, _) in enumerate(_DISTRICT_NAMES) if n in address]
        return _DISTRICT_NAMES[min(found)[1]][1] if found else None

    got = Generalise("district_code").apply(pa.array(addresses)).to_pylist()
    assert got == [earliest(a) for a in addresses]


def test_round_and_band_amounts() -> None:
    money = pa.array([Decimal("3456.78"), Decimal("3550.00"), None], pa.decimal128(12, 2))
    rounded = Round(to=100).apply(money)
    assert rounded.type == money.type
    assert rounded.to_pylist() == [Decimal("3500.00"), Decimal("3600.00"), None]
    assert Round(to=1000).apply(pa.array([1499, 1500, -1500, None])).to_pylist() == [
        1000,
        2000,
        -2000,
        None,
    ]
    assert Band(width=1000).apply(money).to_pylist() == ["[3000, 4000)", "[3000, 4000)", None]
    assert Band(width=2.5).apply(pa.array([0, 5])).to_pylist() == ["[0, 2.5)", "[5, 7.5)"]


def _valid_ids(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    divisions = rng.choice([440703, 440705, 440785, 110101], n)
    days = rng.integers(0, 25000, n).astype("timedelta64[D]") + np.datetime64("1940-01-01")
    yyyymmdd = np.char.replace(days.astype("U10"), "-", "").astype(np.int64)
    return make_resident_ids(divisions, yyyymmdd, rng.integers(0, 1000, n))


def test_fake_ids_validate_and_keep_birth_date_and_sex() -> None:
    originals = _valid_ids(20_000)
    values = pa.array([*originals.tolist(), "garbage", "440703900101123", "", None])
    fakes = Fake("id_no").apply(values, fakes_for("test")).to_pylist()
    assert fakes[-2:] == ["", None]
    fake_ids = np.array(fakes[:-2])
    assert is_valid_resident_id(fake_ids, born_by=dt.date(2100, 1, 1)).all()
    # stdnum's check character; not ric.is_valid, which also wants the division code to
    # have existed in the birth year (蓬江区 from 1994): real IDs issued later fail that too
    assert all(ric.calc_check_digit(f) == f[17] for f in fake_ids)  # takes the whole ID
    assert not (fake_ids[:-2] == originals).any()  # nobody keeps their own ID
    for original, fake in zip(originals[:2000], fake_ids[:2000], strict=True):
        assert ric.get_birth_date(fake) == ric.get_birth_date(original)
        assert int(fake[16]) % 2 == int(original[16]) % 2  # odd: male, even: female
    assert len(set(fake_ids[:-2])) == len(set(originals))  # distinct IDs stay distinct
    assert fake_ids[-1][6:14] == "19900101" and int(fake_ids[-1][16]) % 2 == 1  # 15 → 18


def test_fakes_are_consistent_per_key() -> None:
    values = pa.array(["44070319900101123X", "张三", "13812345678"])
    for kind in ("id_no", "name", "phone"):
        first = Fake(kind).apply(values, fakes_for("test"))
        assert first == Fake(kind).apply(values, fakes_for("test"))
        assert first != Fake(kind).apply(values, fakes_for("other"))


def test_fake_names_and_phones() -> None:
    names = Fake("name").apply(pa.array(NAMES), fakes_for("test")).to_pylist()
    assert [len(n) for n in names[:4]] == [2, 2, 3, 3] and names[4:] == ["", None]
    assert names[1] != "张三"
    phones = pa.array(["13812345678", "13812345679", "0750-1234567", None])
    fakes = Fake("phone").apply(phones, fakes_for("test")).to_pylist()
    assert fakes[0].startswith("138") and fakes[1].startswith("138") and fakes[0] != fakes[1]
    assert all(len(f) == 11 and f[0] == "1" and f.isdigit() for f in fakes[:3])
    assert fakes[0] != "13812345678" and fakes[3] is None
    with pytest.raises(MaskingKeyError, match="needs a fake key"):
        Fake("phone").apply(phones, tokens_for("test"))


def test_describe_reads_like_the_design() -> None:
    assert Mask(keep_first=1).describe() == "mask(keep_first=1) → 张**"
    assert Mask(keep_first=3, keep_last=4).describe("13812345678") == (
        "mask(keep_first=3, keep_last=4) → 138****5678"
    )
    assert Generalise("year_month").describe() == "generalise(to='year_month') → 1985-06"
    assert Token().describe() == "token()"  # no key: no example token
    assert Drop().describe() == "drop() → no column"


def test_operators_declare_the_types_they_apply_to() -> None:
    assert Mask().can_apply("string") and not Mask().can_apply("date")
    assert Generalise("year").can_apply("date") and not Generalise("year").can_apply("string")
    assert Generalise("district").can_apply("string")
    assert Round(to=1).can_apply("decimal") and not Round(to=1).can_apply("string")
    assert Token().can_apply("integer") and not Token().can_apply("date")


def test_fake_ids_permute_a_whole_birth_date_without_fixed_points() -> None:
    """All 3500 male IDs born on one day in Jiangmen's 7 districts: a derangement of them."""
    codes = np.repeat([440703, 440704, 440705, 440781, 440783, 440784, 440785], 500)
    seqs = np.tile(np.arange(1, 1000, 2), 7)
    originals = make_resident_ids(codes, np.full(3500, 19851231), seqs)
    fakes = np.array(Fake("id_no").apply(pa.array(originals), fakes_for("test")).to_pylist())
    assert set(fakes) == set(originals)
    assert not (fakes == originals).any()


def test_fake_phones_are_a_derangement_within_a_prefix() -> None:
    originals = [f"139{n:08d}" for n in range(0, 10**8, 10**8 // 5000)]
    fakes = Fake("phone").apply(pa.array(originals), fakes_for("test")).to_pylist()
    assert len(set(fakes)) == len(originals)
    assert all(f.startswith("139") for f in fakes)
    assert not any(f == o for f, o in zip(fakes, originals, strict=True))


def test_mask_of_fixed_width_columns_matches_the_general_path() -> None:
    """Same-length ASCII values take a faster path; it must agree with the general one."""
    phones = ["13812345678", "13900001111", "13512340000"]
    fixed = Mask(keep_first=3, keep_last=4).apply(pa.array([*phones, None]).slice(0, 3))
    general = Mask(keep_first=3, keep_last=4).apply(pa.array([*phones, "1"]))
    assert (
        fixed.to_pylist()
        == general.to_pylist()[:3]
        == ["138****5678", "139****1111", "135****0000"]
    )
    assert Mask(keep_first=1, keep_last=1).apply(pa.array(["ab", "cd"])).to_pylist() == ["a*", "c*"]
    assert Mask(keep_first=1).apply(pa.array(["ab", None, "cd"])).to_pylist() == ["a*", None, "c*"]
