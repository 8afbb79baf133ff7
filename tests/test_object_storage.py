"""A whole night on object storage, where rename is not atomic: a local S3 server from PyPI.

``moto[server]``'s ThreadedMotoServer runs in the test process on 127.0.0.1; the lake root
is ``s3://…`` and the steps are the ones the DAG runs. The commit point is a database row,
so a reader sees complete nights only, also when a rerun dies between clean and quarantine.
"""

from __future__ import annotations

import contextlib
import socket
from dataclasses import replace
from datetime import timedelta

import pyarrow.fs as pafs
import pytest

from catalog.definitions import load_catalog
from catalog.errors import LakeError
from etl.nightly import Night, extract_dataset, open_night, quality_gate, validate_dataset
from etl.settings import LakeSettings, storage_from_env
from etl.zones import RAW_CLEAN, RAW_QUARANTINE, RAW_SOURCES, Lake
from tests.helpers import DEMO_DATE, connections

CATALOG = load_catalog()


@pytest.fixture
def s3_settings(tmp_path, departments):
    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    env = {  # what an operator would export; the lake reads no YAML for this
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
    }
    storage = storage_from_env(env)
    fs = pafs.S3FileSystem(
        endpoint_override=f"127.0.0.1:{port}",
        scheme="http",
        region="us-east-1",
        access_key="test",
        secret_key="test",
        allow_bucket_creation=True,
    )
    fs.create_dir("city-lake")
    local = LakeSettings.under(tmp_path)
    yield (
        replace(
            local,
            lake_root="s3://city-lake/yimen",
            storage=storage,
            departments_dir=departments.out_dir,
        ),
        fs,
    )
    server.stop()


def test_a_whole_night_on_object_storage_shows_complete_nights_only(s3_settings) -> None:
    settings, fs = s3_settings
    conns = connections(settings.departments_dir)
    night = Night.open(DEMO_DATE, "s3-night", settings)
    open_night(night)
    for dataset in CATALOG.datasets:
        extract_dataset(night, dataset.id, conns[dataset.source.connection_id])
        with contextlib.suppress(LakeError):  # a tripped breaker still committed both
            validate_dataset(night, dataset.id)
    figures = quality_gate(night)
    assert set(figures) == {d.id for d in CATALOG.datasets}

    lake = night.lake
    assert lake.root == "city-lake/yimen" and not lake.is_local
    files = fs.get_file_info(pafs.FileSelector("city-lake/yimen/raw/clean", recursive=True))
    assert any("/dt=" in f.path and f.path.endswith(".parquet") for f in files)
    for dataset in CATALOG.datasets:  # every row is where the figures say it is
        rows = {
            zone: lake.read_partition(lake.dataset_partition(zone, dataset, DEMO_DATE)).num_rows
            for zone in (RAW_SOURCES, RAW_CLEAN, RAW_QUARANTINE)
        }
        f = figures[dataset.id]
        assert rows[RAW_SOURCES] == f["delivered"] > 0, dataset.id
        assert (rows[RAW_CLEAN], rows[RAW_QUARANTINE]) == (f["clean"], f["quarantined"])

    # a rerun that dies after committing the quarantine and before the clean table
    dataset = CATALOG.dataset("gongan.population")
    paths = [lake.dataset_partition(z, dataset, DEMO_DATE) for z in (RAW_CLEAN, RAW_QUARANTINE)]
    before = [lake.read_manifest(p).fingerprint for p in paths]
    extract_dataset(night, dataset.id, conns[dataset.source.connection_id])  # new batch rows
    original = Lake._commit_iceberg
    calls = []

    def dies_before_the_second_commit(self, one, run_id):
        calls.append(one.ref.zone)
        if len(calls) == 2:
            raise ConnectionError("the object store went away")
        return original(self, one, run_id)

    Lake._commit_iceberg = dies_before_the_second_commit
    try:
        with pytest.raises(ConnectionError):
            validate_dataset(replace(night, run_id="s3-rerun"), dataset.id)
    finally:
        Lake._commit_iceberg = original
    assert calls == [RAW_QUARANTINE, RAW_CLEAN]
    reader = settings.lake()  # a fresh reader, as another process would be
    assert [reader.read_manifest(p).fingerprint for p in paths] == before
    assert set(reader.read_partition(paths[1]).column("_batch_id").to_pylist()) == {"s3-night"}

    validate_dataset(replace(night, run_id="s3-rerun"), dataset.id)
    assert reader.read_manifest(paths[0]).rows == figures[dataset.id]["clean"]
    reports = reader.maintain(orphan_age=timedelta(0))
    assert len(reports) == 3 * len(CATALOG.datasets)
    assert reader.read_manifest(paths[0]).rows == figures[dataset.id]["clean"]
