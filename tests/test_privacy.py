"""Nothing personal outside the raw zone, and what a night writes is for its owner only.

A real night through Airflow (`lake run` in its own process) on deliveries with an ID
number, a name and a mobile number planted in every path that leads out of the raw zone:
a headerless CSV (its first data row becomes the header), a notes cell beside an .xlsx
header (an added column named "导出人: 陈大文 13812345678"), a value that breaks a rule (its
quarantine reason quotes it) and a malformed row whose parser error quotes it. Then the
Airflow log, `lake run`'s output, every table of the catalog store, the manifests and
``var/quality/`` are searched for them.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import MetaData, create_engine, select

from catalog.definitions import load_catalog
from catalog.errors import impersonal, shown_column
from catalog.store import CatalogStore
from etl.settings import LakeSettings
from tests.helpers import DEMO_DATE, REPO

NIGHT = DEMO_DATE + timedelta(days=7)
PLANTED_ID = "440703199001011230"  # wrong check digit: breaks the resident_id rule
PLANTED_NAME = "陈大文"
PLANTED_PHONE = "13812345678"
ADDED_HEADER = "备注"  # an added column (a notes-cell header now fails the header contract)
PLANTED = (PLANTED_ID, PLANTED_NAME, PLANTED_PHONE)
CATALOG = load_catalog()


def _drop(departments_dir: Path, dataset_id: str, ds: date) -> Path:
    dataset = CATALOG.dataset(dataset_id)
    return (
        departments_dir / dataset.department / dataset.source.path.format(ds_nodash=f"{ds:%Y%m%d}")
    )


def _plant_deliveries(departments_dir: Path) -> None:
    from simulator.writers import control_path, write_control_file

    for dataset in CATALOG.datasets:  # that night's drops: the first night's files again
        if dataset.source.kind != "sql":
            first, again = (_drop(departments_dir, dataset.id, d) for d in (DEMO_DATE, NIGHT))
            shutil.copy(first, again)
            control = json.loads(control_path(first).read_text("utf-8"))
            write_control_file(again, control["rows"])
    # renshe (GBK CSV) arrives without its header: the first data row is read as one
    renshe = _drop(departments_dir, "renshe.insured_person", NIGHT)
    frame = pd.read_csv(renshe, encoding="gbk", dtype=str, keep_default_na=False)
    frame.loc[0, ["id_no", "name", "phone"]] = PLANTED
    renshe.write_bytes(frame.to_csv(index=False, header=False).encode("gbk"))
    # weiji (JSON Lines): an added column, and a record whose ID breaks the resident_id rule
    # (its quarantine reason quotes it, in raw). renshe's header row above is the header
    # path: its cells are the planted ID, name and phone.
    weiji = _drop(departments_dir, "weiji.health_record", NIGHT)
    records = [json.loads(line) for line in weiji.read_text("utf-8").splitlines() if line]
    for record in records:
        record[ADDED_HEADER] = "见附件"
    records[0].update(id_no=PLANTED_ID, name=PLANTED_NAME, phone=PLANTED_PHONE)
    weiji.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), "utf-8")
    # zhijian (UTF-8 CSV): a row with one field too many; the parser's error quotes the row
    zhijian = _drop(departments_dir, "zhijian.org_code", NIGHT)
    with open(zhijian, "a", encoding="utf-8") as out:
        out.write(f'"12345678-9","{PLANTED_NAME}",{PLANTED_ID},{PLANTED_PHONE},a,b,c,d,e\n')
    # each department's control file agrees with what it sent: only the content lies
    write_control_file(renshe, len(frame))
    write_control_file(weiji, len(records))
    write_control_file(zhijian, json.loads(control_path(zhijian).read_text("utf-8"))["rows"] + 1)


@dataclass(frozen=True)
class PlantedNight:
    run_id: str
    failed_tasks: str  # as `lake run` names them
    terminal: str  # what `lake run` printed


@pytest.fixture(scope="module")
def planted_night(departments, session_settings: LakeSettings) -> PlantedNight:
    """`lake run` in its own process, as people run it: its log file is the Airflow log."""
    _plant_deliveries(departments.out_dir)
    done = subprocess.run(
        [sys.executable, "-m", "etl.cli", "run", "--date", NIGHT.isoformat()],
        capture_output=True,
        text=True,
        env=os.environ | {"YIMEN_HOME": str(session_settings.home)},
        cwd=REPO,
    )
    assert done.returncode == 1, done.stderr[-2000:]
    run_id = CatalogStore(session_settings.catalog_url).runs(1)[0].run_id
    return PlantedNight(run_id, done.stderr, done.stdout + done.stderr)


def _store_dump(url: str) -> str:
    """Every row of every table of the catalog store, as text."""
    engine = create_engine(url)
    meta = MetaData()
    meta.reflect(engine)
    with engine.connect() as conn:
        rows = [
            json.dumps([str(v) for v in row], ensure_ascii=False)
            for t in meta.sorted_tables
            for row in conn.execute(select(t))
        ]
    engine.dispose()
    return "\n".join(rows)


def _files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


def test_the_planted_values_reach_the_raw_zone_only(
    planted_night, session_settings: LakeSettings
) -> None:
    night = planted_night
    # renshe's headerless file and zhijian's malformed row fail extraction
    assert "zhijian__org_code.extract" in night.failed_tasks
    assert "renshe__insured_person.extract" in night.failed_tasks
    log_file = session_settings.var / "airflow" / "logs" / f"lake-run-{NIGHT}.log"
    assert "zhijian.org_code" in log_file.read_text()  # the tasks did log there
    store = CatalogStore(session_settings.catalog_url)
    lake = session_settings.lake()
    # the plants did land: in the raw zone, which keeps deliveries as delivered
    weiji = CATALOG.dataset("weiji.health_record")
    quarantine = lake.read_partition(lake.dataset_partition("raw/quarantine", weiji, NIGHT))
    assert any(PLANTED_ID in (r or "") for r in quarantine.column("_reason").to_pylist())
    raw = lake.read_partition(lake.dataset_partition("raw/sources", weiji, NIGHT))
    assert ADDED_HEADER in raw.column_names  # raw keeps the delivered header

    searched = {
        "terminal": night.terminal,
        "Airflow log": "\n".join(
            p.read_text(errors="replace")
            for p in _files_under(session_settings.var / "airflow" / "logs")
        ),
        "catalog store": _store_dump(session_settings.catalog_url),
        "quality page and Data Docs": "\n".join(
            p.read_text(errors="replace") for p in _files_under(session_settings.var / "quality")
        ),
        "manifests": "\n".join(
            json.dumps(lake.read_manifest(p.path) and lake.read_manifest(p.path).extra)
            for p in store.partitions(ds=NIGHT)
        ),
    }
    assert f"lake-run-{NIGHT}" in str(_files_under(session_settings.var / "airflow" / "logs"))
    for where, text in searched.items():
        for value in PLANTED:
            assert value not in text, f"{value} found in the {where}"
        assert json.dumps(PLANTED_NAME)[1:-1] not in text, f"escaped name in the {where}"

    # what people are told still says what went wrong and where
    errors = {e.step: e.message for e in store.errors(night.run_id)}
    assert "Expected 8 columns, got 9" in errors["extract zhijian.org_code"]
    assert "zhijian.org_code" in errors["extract zhijian.org_code"]
    quality = {q.dataset_id: q for q in store.quality(NIGHT)}
    width = len(weiji.fields)
    notes = quality["weiji.health_record"].schema_notes
    assert f"column {width + 1} (not in the catalog): kept in raw only" in notes
    assert "header looks like data" in errors["extract renshe.insured_person"]
    assert not list((session_settings.var / "tmp").glob("*-*"))  # no spill files left


def test_what_a_night_writes_outside_the_lake_is_owner_only(
    planted_night, session_settings: LakeSettings
) -> None:
    var = session_settings.var
    written = [
        var / "catalog.db",
        var / "quality" / "index.html",
        var / "airflow" / "logs" / f"lake-run-{NIGHT}.log",
        var / "airflow" / "fernet_key",
    ]
    written += _files_under(var / "airflow" / "logs") + _files_under(var / "quality")
    written += [p for p in var.glob("catalog.db*")] + _files_under(var / "tmp")
    folders = [var / "airflow", var / "airflow" / "logs", var / "quality", var / "tmp"]
    folders += [p for p in (var / "quality").rglob("*") if p.is_dir()]
    assert len(_files_under(var / "quality" / "docs")) > 8  # GX Data Docs are among them
    for path in written:
        mode = stat.S_IMODE(os.stat(path).st_mode)
        assert mode & 0o077 == 0, f"{path} is {mode:o}"
    for path in folders:
        mode = stat.S_IMODE(os.stat(path).st_mode)
        assert mode & 0o077 == 0, f"{path} is {mode:o}"
    # the raw zone stays readable by the platform team's group, never by others
    assert stat.S_IMODE(os.stat(session_settings.lake_root).st_mode) == 0o750
    raw = list((session_settings.var / "lake" / "raw").rglob("*"))  # data and Iceberg metadata
    assert any(f"dt={NIGHT}" in str(p) for p in raw)
    for path in raw:  # group may read (the platform team), others may not
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o750 if path.is_dir() else 0o640), path


def test_impersonal_masks_what_looks_personal_and_keeps_the_rest() -> None:
    line = (
        f"{PLANTED_NAME} id {PLANTED_ID} / 44070319900101123X / 440703900101123, "
        f"tel +86 138-1234-5678, {PLANTED_PHONE}, 0750-3123456, USCC 91440703MA4UKL1X2P, "
        "could not convert 'x', account 6222021234567890123"
    )
    masked = impersonal(line)
    for value in (*PLANTED, "123X", "5678", "3123456", "MA4UK", "'x'", "6222"):
        assert value not in masked
    kept = "row 6002 of /var/renshe/insured_person_20261128.csv: Expected 8 columns, got 9"
    assert impersonal(kept) == kept
    assert impersonal("a\x00b\nc") == "a b c"
    assert shown_column("name", 2, ["name"]) == "name"
    assert (
        shown_column(f"导出人: {PLANTED_NAME} {PLANTED_PHONE}", 12, ["name"])
        == "column 12 (not in the catalog)"
    )
