"""The enterprise fallback: legacy records no code links, joined on name and address.

Hand-written clean batches (the columns the clean zone holds, the normalised name made by
the clean zone's own function) go through ``enterprise_mentions`` and
``resolve_enterprises``, the pure cores the unify step runs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from catalog.identifiers import make_org_codes
from etl.standardise import normalised_enterprise_name
from etl.unify_enterprise import EnterpriseResolution, enterprise_mentions, resolve_enterprises
from etl.unify_enterprise_fuzzy import THRESHOLD
from tests.helpers import resident_ids, usccs

RNG = np.random.default_rng(11)
USCC_A, USCC_B, USCC_C, USCC_D = usccs(RNG, 4, ["440703"])
OWNER = resident_ids(RNG, 1, ["440703"])[0]
STALE_1, STALE_2, STALE_3, STALE_4 = make_org_codes(
    ["00000011", "00000012", "00000013", "00000014"]
)
AT = "2020-01-01 00:00:00"


def _norm(names: pd.Series) -> pd.Series:
    return pd.Series(normalised_enterprise_name(pa.array(names.tolist())).to_pylist())


def _registration(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    frame = frame.assign(
        reg_no=frame.get("reg_no"),
        ent_type="有限责任公司",
        legal_rep_id_no=None,
        division_code="440703",
        status="存续",
        updated_at=pd.Timestamp(AT),
    )
    return frame.assign(name_norm=_norm(frame["name"]))


def _org_codes(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    frame = frame.assign(org_type=frame.get("org_type", "企业法人"), updated_at=pd.Timestamp(AT))
    for col in ("address", "legal_rep_name"):
        if col not in frame:
            frame[col] = None
    return frame.assign(name_norm=_norm(frame["name"]))


def _taxpayers(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows).assign(status="正常", updated_at=pd.Timestamp(AT))
    if "legal_rep_name" not in frame:
        frame["legal_rep_name"] = None
    return frame.assign(taxpayer_name_norm=_norm(frame["taxpayer_name"]))


def _resolve(**batches: pd.DataFrame) -> EnterpriseResolution:
    datasets = {
        "registration": "gongshang.enterprise_registration",
        "org_codes": "zhijian.org_code",
        "dishui": "dishui.taxpayer",
    }
    mentions = [enterprise_mentions(datasets[k], v) for k, v in batches.items()]
    return resolve_enterprises(pd.concat(mentions, ignore_index=True))


def _row(resolved: EnterpriseResolution, dataset: str, key: str) -> pd.Series:
    m = resolved.mentions
    row = m[(m["dataset"] == dataset) & (m["source_key"] == key)]
    assert len(row) == 1
    return row.iloc[0]


REGISTERED = [
    {"reg_id": "DJ1", "uscc": USCC_A, "name": "江门市蓬江区嘉禾科技有限公司",
     "address": "广东省江门市蓬江区白沙街道五四路74号", "legal_rep_name": "陈伟"},
    # the same trade name in another district: a different firm
    {"reg_id": "DJ2", "uscc": USCC_B, "name": "江门市新会区嘉禾科技有限公司",
     "address": "广东省江门市新会区会城街道朝阳路12号", "legal_rep_name": "李明"},
]  # fmt: skip


def test_a_legacy_record_with_a_name_variant_and_the_same_address_links_to_its_firm() -> None:
    """Stale org code (in no USCC), 有限责任公司, district dropped, a typo, 號 and no 广东省."""
    resolved = _resolve(
        registration=_registration(REGISTERED),
        org_codes=_org_codes(
            [{"org_code": STALE_1, "name": "江门市嘉禾科枝有限责任公司",
              "address": "江门市蓬江区白沙街道五四路74號"}]
        ),
    )  # fmt: skip
    legacy = _row(resolved, "zhijian.org_code", STALE_1)
    firm = _row(resolved, "gongshang.enterprise_registration", "DJ1")
    other = _row(resolved, "gongshang.enterprise_registration", "DJ2")
    assert legacy["cluster"] == firm["cluster"] != other["cluster"]
    assert legacy["anchor"] == USCC_A and legacy["linked"]
    assert legacy["match_rule"] == "fuzzy_name"
    assert THRESHOLD <= legacy["match_score"] < 1.0  # a real score: name one character off
    assert firm["match_rule"] == "exact_uscc" and firm["match_score"] == 1.0


def test_the_same_name_at_another_address_stays_apart() -> None:
    def certificate_signed_by(legal_rep: str) -> EnterpriseResolution:
        return _resolve(
            registration=_registration(REGISTERED),
            org_codes=_org_codes(
                [{"org_code": STALE_1, "name": "江门市蓬江区嘉禾科技有限公司",
                  "address": "广东省江门市蓬江区荷塘镇农林路218号", "legal_rep_name": legal_rep}]
            ),
        )  # fmt: skip

    legacy = _row(certificate_signed_by("黄志强"), "zhijian.org_code", STALE_1)
    assert not legacy["linked"] and legacy["match_rule"] == "unlinked"
    assert legacy["anchor"] == "org:" + STALE_1
    # the same name and address with the representative agreeing does link (a moved firm
    # would need the representative; here the address is the one on the register)
    moved = certificate_signed_by("陈伟")
    assert _row(moved, "zhijian.org_code", STALE_1)["anchor"] == USCC_A


def test_two_different_uscc_are_never_merged_however_alike() -> None:
    same = {
        "name": "江门市蓬江区嘉禾科技有限公司",
        "address": "广东省江门市蓬江区白沙街道五四路74号",
    }
    resolved = _resolve(
        registration=_registration(
            [{"reg_id": "DJ1", "uscc": USCC_A, **same, "legal_rep_name": "陈伟"},
             {"reg_id": "DJ3", "uscc": USCC_C, **same, "legal_rep_name": "陈伟"}]
        ),
        dishui=_taxpayers(
            [{"taxpayer_id": "DS1", "tax_no": USCC_D, "taxpayer_name": same["name"],
              "legal_rep_name": "陈伟"}]
        ),
    )  # fmt: skip
    m = resolved.mentions
    assert m["cluster"].nunique() == 3
    assert sorted(m["anchor"]) == sorted([USCC_A, USCC_C, USCC_D])


def test_an_ambiguous_legacy_record_links_to_nothing() -> None:
    """No address, no district, no representative: the name fits two firms equally."""
    resolved = _resolve(
        registration=_registration(REGISTERED),
        org_codes=_org_codes([{"org_code": STALE_1, "name": "嘉禾科技有限公司"}]),
    )
    legacy = _row(resolved, "zhijian.org_code", STALE_1)
    assert not legacy["linked"] and legacy["match_rule"] == "unlinked"
    assert resolved.mentions["cluster"].nunique() == 3
    assert resolved.fuzzy.ambiguous == 1


def test_legacy_records_of_an_unregistered_firm_become_one_unlinked_enterprise() -> None:
    """An org-code certificate and a tax record under the owner's ID + 00, no registration."""
    shop = "蓬江区兴盛五金店"
    resolved = _resolve(
        registration=_registration(REGISTERED),
        org_codes=_org_codes(
            [{"org_code": STALE_2, "name": shop, "org_type": "个体工商户",
              "address": "广东省江门市蓬江区环市街道建设路9号", "legal_rep_name": "区志华"},
             # another shop: same name, another org code (two certificates = two firms)
             {"org_code": STALE_3, "name": "新会区兴盛五金店", "org_type": "个体工商户",
              "address": "广东省江门市新会区会城街道朝阳路3号"}]
        ),
        dishui=_taxpayers(
            [{"taxpayer_id": "DS2", "tax_no": OWNER + "00", "taxpayer_name": shop + " ",
              "legal_rep_name": "区志华"}]
        ),
    )  # fmt: skip
    certificate = _row(resolved, "zhijian.org_code", STALE_2)
    taxed = _row(resolved, "dishui.taxpayer", "DS2")
    other = _row(resolved, "zhijian.org_code", STALE_3)
    assert certificate["cluster"] == taxed["cluster"] != other["cluster"]
    for row in (certificate, taxed):
        assert not row["linked"] and row["match_rule"] == "unlinked"
        assert row["match_score"] >= THRESHOLD
    assert np.isnan(other["match_score"])
    assert resolved.fuzzy.linked_orphans == 2


def test_two_orphans_with_different_org_codes_stay_apart() -> None:
    same = {"name": "台山市福临建材厂", "address": "广东省江门市台山市台城街道环北大道7号"}
    resolved = _resolve(
        org_codes=_org_codes(
            [{"org_code": STALE_3, **same}, {"org_code": STALE_4, **same}]
        ),
    )  # fmt: skip
    assert resolved.mentions["cluster"].nunique() == 2


def test_a_second_shop_taxed_under_the_owner_id_does_not_join_the_first() -> None:
    """The owner's one registered shop takes ``ID + 00``; ``ID + 01``, another name, stays out."""
    registration = _registration(
        [
            {
                "reg_id": "DJ9",
                "uscc": USCC_C,
                "name": "新会区艺天物流店",
                "address": "广东省江门市新会区崖门镇滨江路34号",
                "legal_rep_name": "苏宗",
            }
        ]
    ).assign(ent_type="个体工商户", legal_rep_id_no=OWNER)
    resolved = _resolve(
        registration=registration,
        dishui=_taxpayers(
            [{"taxpayer_id": "DS3", "tax_no": OWNER + "00", "taxpayer_name": "新会区艺天物流店",
              "legal_rep_name": "苏宗"},
             {"taxpayer_id": "DS4", "tax_no": OWNER + "01", "taxpayer_name": "恩平市邑嘉医药店",
              "legal_rep_name": "苏宗"}]
        ),
    )  # fmt: skip
    shop = _row(resolved, "gongshang.enterprise_registration", "DJ9")
    first = _row(resolved, "dishui.taxpayer", "DS3")
    second = _row(resolved, "dishui.taxpayer", "DS4")
    assert first["cluster"] == shop["cluster"] and first["match_rule"] == "owner_id"
    assert second["cluster"] != shop["cluster"] and second["match_rule"] == "unlinked"
