"""Shared extracts: exactly the grants, masked by level, tokens per consumer, leaks blocked.

The session's simulated departments are extracted and validated into a private lake; grants
are recorded in its catalog store and the real shared step writes the extracts.
"""

from __future__ import annotations

import base64
import csv
import io
import re
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from catalog.definitions import load_catalog
from catalog.errors import CatalogError, LakeError, MaskingKeyError, PublicationBlocked
from catalog.grants import GrantRegistry, GrantRequest
from catalog.store import CatalogStore
from etl.extract import extract_to_raw
from etl.publish_shared import publish_for_consumer
from etl.settings import LakeSettings
from etl.validate import validate_partition
from etl.verify import reidentify_token, verify_shared
from etl.zones import RAW_CLEAN, clean_schema
from masking.keys import MasterKey, create_key_file
from tests.helpers import DEMO_DATE, connections

CATALOG = load_catalog()
DATASETS = ["gongan.population", "renshe.insured_person", "gongshang.enterprise_registration"]
NEXT_DAY = DEMO_DATE + timedelta(days=1)


class SharedLake:
    """A validated lake, a master key and a grant registry, for one module."""

    def __init__(self, home: Path, departments) -> None:
        self.settings = LakeSettings.under(home)
        self.lake = self.settings.lake()
        self.store = CatalogStore(self.settings.catalog_url)
        self.registry = GrantRegistry(self.store)
        self.key = create_key_file(self.settings.var / "masking.key")
        conns = connections(departments.out_dir)
        for dataset_id in DATASETS:
            ds = CATALOG.dataset(dataset_id)
            extract_to_raw(
                ds, conns[ds.source.connection_id], DEMO_DATE, lake=self.lake, store=self.store,
                batch_id="t",
            )  # fmt: skip
            validate_partition(
                ds, DEMO_DATE, lake=self.lake, store=self.store, run_id="t",
                work_dir=self.settings.var / "tmp",
            )  # fmt: skip
            # the next night: the same clean rows (a quiet day), written as its own partition
            clean = self.lake.read_partition(self.lake.dataset_partition(RAW_CLEAN, ds, DEMO_DATE))
            self.lake.write_partition(
                self.lake.dataset_partition(RAW_CLEAN, ds, NEXT_DAY),
                clean.to_batches(),
                clean_schema(ds),
                private=True,
            )

    def grant(self, consumer: str, dataset_id: str, fields: list[str], **more):
        request = GrantRequest(
            consumer=consumer,
            dataset_id=dataset_id,
            fields=fields,
            purpose=more.pop("purpose", "测试 test"),
            legal_basis="测试依据",
            valid_from=DEMO_DATE,
            **more,
        )
        return self.registry.add(request, CATALOG, by="test")

    def publish(self, consumer: str, ds=DEMO_DATE, load_key=None):
        return publish_for_consumer(
            consumer,
            ds,
            catalog=CATALOG,
            lake=self.lake,
            store=self.store,
            run_id=f"run-{ds}",
            load_key=load_key or (lambda: self.key),
        )

    def extract(self, consumer: str, dataset_id: str, ds=DEMO_DATE) -> pd.DataFrame:
        path = self.lake.shared_partition(consumer, CATALOG.dataset(dataset_id), ds)
        return pq.read_table(f"{path}/part-00000.parquet").to_pandas()

    def clean(self, dataset_id: str, ds=DEMO_DATE) -> pd.DataFrame:
        path = self.lake.dataset_partition(RAW_CLEAN, CATALOG.dataset(dataset_id), ds)
        return self.lake.read_partition(path).to_pandas()


@pytest.fixture(scope="module")
def shared(departments, tmp_path_factory) -> SharedLake:
    lake = SharedLake(tmp_path_factory.mktemp("shared"), departments)
    person = ["person_no", "id_no", "name", "sex", "birth_date", "address", "status"]
    lake.grant("dishui", "gongan.population", person, clear_fields=["name", "address"])
    lake.grant("dishui", "renshe.insured_person", ["insured_no", "id_no", "name", "status"])
    lake.grant("renshe", "gongan.population", ["person_no", "id_no", "name", "birth_date"])
    lake.grant(
        "xingzheng",
        "renshe.insured_person",
        ["id_no", "name", "phone", "insurance_type", "monthly_base", "status"],
        csv_encoding="gb18030",
    )
    for consumer in ("dishui", "renshe", "xingzheng"):
        lake.publish(consumer)
    return lake


def test_granted_fields_only_and_conditional_fields_clear_only_when_approved(shared) -> None:
    clean = shared.clean("gongan.population").set_index("person_no")
    approved = shared.extract("dishui", "gongan.population").set_index("person_no")
    other = shared.extract("renshe", "gongan.population").set_index("person_no")
    assert list(approved.columns) == [
        "person_token", "name", "sex", "birth_date", "address", "status",
    ]  # fmt: skip
    assert list(other.columns) == ["person_token", "name", "birth_date"]
    both = clean.index.intersection(other.index)
    assert len(both) == len(clean)  # every clean row delivered, nothing else
    assert (approved.loc[both, "name"] == clean.loc[both, "name"]).all()
    # renshe holds no clear approval: the name is masked to its first character
    names = clean.loc[both, "name"]
    expected = names.str[0] + names.str.len().sub(1).map(lambda n: "*" * n)
    two_chars = names.str.len() == 2
    assert (other.loc[both[~two_chars.to_numpy()], "name"] == expected[~two_chars]).all()
    assert not (other.loc[both, "name"] == names).any()  # never a name in clear
    years_months = pd.to_datetime(clean.loc[both, "birth_date"]).dt.strftime("%Y-%m")
    assert (other.loc[both, "birth_date"] == years_months).all()
    for table in (approved, other):  # the ID travels only as a token
        assert "id_no" not in table.columns
        assert table["person_token"].dropna().str.fullmatch(r"[0-9a-f]{32}").all()


def test_a_department_without_a_grant_receives_nothing(shared) -> None:
    path = shared.lake.shared_partition(
        "xingzheng", CATALOG.dataset("gongan.population"), DEMO_DATE
    )
    assert not Path(path).exists()
    assert shared.publish("gongshang") == []  # no grants: no extract, no key needed
    assert not (Path(shared.settings.lake_root) / "shared" / "gongshang").exists()


def test_tokens_join_within_a_consumer_and_not_across(shared) -> None:
    population = shared.extract("dishui", "gongan.population")
    insured = shared.extract("dishui", "renshe.insured_person")
    clean_pop = shared.clean("gongan.population")[["person_no", "id_no"]]
    clean_ins = shared.clean("renshe.insured_person")[["insured_no", "id_no"]]
    same_person = clean_pop.merge(clean_ins, on="id_no").dropna()
    assert len(same_person) > 100  # the simulator's people appear in both registers
    pop = population.merge(same_person, on="person_no")
    joined = pop.merge(insured, on="insured_no", suffixes=("_pop", "_ins"))
    assert (joined["person_token_pop"] == joined["person_token_ins"]).all()
    theirs = shared.extract("xingzheng", "renshe.insured_person")
    assert set(theirs["person_token"].dropna()).isdisjoint(insured["person_token"].dropna())


def test_a_planted_mobile_number_blocks_publication(shared) -> None:
    dataset = CATALOG.dataset("gongan.population")
    path = shared.lake.dataset_partition(RAW_CLEAN, dataset, NEXT_DAY)
    table = shared.lake.read_partition(path)
    address = table.column("address").to_pylist()
    address[7] = "蓬江区建设路1号 联系人 13812345678"
    planted = table.set_column(
        table.schema.get_field_index("address"), "address", pa.array(address)
    )
    shared.lake.write_partition(
        path, planted.cast(clean_schema(dataset)).to_batches(), clean_schema(dataset)
    )
    with pytest.raises(PublicationBlocked) as blocked:
        shared.publish("dishui", NEXT_DAY)
    message = str(blocked.value)
    assert "column 'address' holds mobile (1 rows, first at row 7)" in message
    assert "13812345678" not in message
    assert not Path(shared.lake.shared_partition("dishui", dataset, NEXT_DAY)).exists()
    log = {(d.dataset_id, d.delivered) for d in shared.registry.distributions(NEXT_DAY)}
    assert ("gongan.population", False) in log and ("renshe.insured_person", True) in log


def test_a_revoked_grant_delivers_nothing_from_then_on(shared) -> None:
    grant = next(g for g in shared.registry.active(NEXT_DAY, "renshe"))
    shared.registry.revoke(grant.id, "test", "purpose fulfilled")
    assert shared.publish("renshe", NEXT_DAY) == []
    dataset = CATALOG.dataset(grant.dataset_id)
    assert Path(shared.lake.shared_partition("renshe", dataset, DEMO_DATE)).exists()  # history
    assert not Path(shared.lake.shared_partition("renshe", dataset, NEXT_DAY)).exists()
    with pytest.raises(CatalogError, match="needs a reason"):
        shared.registry.revoke(grant.id, "test", " ")


def test_a_missing_key_stops_the_step_with_the_documented_error(shared) -> None:
    with pytest.raises(MaskingKeyError, match="set YIMEN_MASKING_KEY .* or YIMEN_MASKING_KEY_FILE"):
        shared.publish("xingzheng", NEXT_DAY, load_key=lambda: MasterKey.from_env({}))


def test_csv_opens_in_excel_terms_with_chinese_intact(shared) -> None:
    folder = Path(
        shared.lake.shared_partition("dishui", CATALOG.dataset("gongan.population"), DEMO_DATE)
    )
    raw = (folder / "data.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # the BOM that makes Excel read UTF-8
    frame = pd.read_csv(folder / "data.csv", encoding="utf-8-sig", dtype=str)
    parquet = shared.extract("dishui", "gongan.population").astype(str)
    assert frame["name"].tolist() == parquet["name"].tolist()
    assert frame["name"].str.contains(r"[\u4e00-\u9fff]").all()
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows[0] == list(parquet.columns) and len(rows) == len(parquet) + 1
    gbk = Path(
        shared.lake.shared_partition(
            "xingzheng", CATALOG.dataset("renshe.insured_person"), DEMO_DATE
        )
    )
    frame = pd.read_csv(gbk / "data.csv", encoding="gb18030", dtype=str)
    assert frame["name"].str.match(r"[\u4e00-\u9fff]\*+").all()  # 张** in GB18030


def test_parquet_fields_say_how_they_were_treated_without_key_material(shared) -> None:
    path = shared.lake.shared_partition(
        "xingzheng", CATALOG.dataset("renshe.insured_person"), DEMO_DATE
    )
    schema = pq.read_schema(f"{path}/part-00000.parquet")
    token = schema.field("person_token").metadata
    assert token[b"level"] == b"restricted" and token[b"key_id"] == shared.key.key_id.encode()
    assert b'"op": "mask"' in schema.field("name").metadata[b"operator"]
    assert b'"op": "round"' in schema.field("monthly_base").metadata[b"operator"]


def test_key_material_is_nowhere_in_what_the_run_wrote(shared) -> None:
    secrets = [shared.key._secret] + [
        shared.key.token_key(c).secret for c in ("dishui", "renshe", "xingzheng")
    ]
    forms = []
    for s in secrets:
        forms += [s, s.hex().encode(), s.hex().upper().encode(), base64.b64encode(s)]
        forms += [base64.urlsafe_b64encode(s), base64.b64encode(s).rstrip(b"=")]
    key_file = shared.settings.var / "masking.key"
    files = [p for p in shared.settings.home.rglob("*") if p.is_file() and p != key_file]
    assert len(files) > 10
    for path in files:
        data = path.read_bytes()
        assert not any(form in data for form in forms), path
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"


def test_verify_and_audited_reidentification(shared) -> None:
    findings, scanned = verify_shared(shared.settings, DEMO_DATE)
    assert findings == [] and scanned >= 4
    extract = shared.extract("dishui", "gongan.population")
    token = extract["person_token"].dropna().iloc[3]
    person_no = extract["person_token"].dropna().index[3]
    with pytest.raises(LakeError, match="needs a reason"):
        reidentify_token(shared.settings, token, "dishui", "", "alice", shared.key, DEMO_DATE)
    found = reidentify_token(
        shared.settings, token, "dishui", "tax fraud case 17", "alice", shared.key, DEMO_DATE
    )
    people = {row["person_no"] for dataset_id, row in found if dataset_id == "gongan.population"}
    assert people == {extract.loc[person_no, "person_no"]}
    assert any(d == "renshe.insured_person" for d, _ in found)  # the same person, other register
    (entry,) = shared.registry.audit_log()
    assert (entry.who, entry.token, entry.reason, entry.found) == (
        "alice", token, "tax fraud case 17", len(found),
    )  # fmt: skip
    # another consumer's key does not lead back to anyone
    assert (
        reidentify_token(shared.settings, token, "renshe", "check", "bob", shared.key, DEMO_DATE)
        == []
    )


def test_bad_grants_are_one_line_errors(shared) -> None:
    cases = {
        "unknown dataset 'gongan.nothing'": ("dishui", "gongan.nothing", ["name"]),
        "unknown field(s) shoe_size": ("dishui", "gongan.population", ["name", "shoe_size"]),
        "unknown consumer department 'police'": ("police", "gongan.population", ["name"]),
    }
    for message, (consumer, dataset_id, fields) in cases.items():
        with pytest.raises(CatalogError, match=re.escape(message)) as error:
            shared.grant(consumer, dataset_id, fields)
        assert "\n" not in str(error.value)
