"""`lake sql`, `lake status --as-of` and `lake maintain` on a small Iceberg lake."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pyarrow as pa
from click.testing import CliRunner

from catalog.definitions import load_catalog
from etl.cli import main
from etl.settings import LakeSettings
from etl.zones import RAW_CLEAN, RAW_QUARANTINE

DAY = date(2026, 11, 28)
POPULATION = load_catalog().dataset("gongan.population")


def _lake_with_a_rerun(home: Path) -> LakeSettings:
    settings = LakeSettings.under(home)
    lake = settings.lake()
    schema = pa.schema([("person_no", pa.string()), ("district", pa.string())])
    for run, rows in (("first", 30), ("rerun", 20)):
        table = pa.table(
            {"person_no": [f"p{i}" for i in range(rows)], "district": ["a", "b"] * (rows // 2)},
            schema=schema,
        )
        staged = [
            lake.stage_partition(
                lake.dataset_partition(zone, POPULATION, DAY), table.to_batches(), schema
            )
            for zone in (RAW_QUARANTINE, RAW_CLEAN)
        ]
        lake.commit(staged, run_id=run)
    return settings


def test_sql_status_as_of_and_maintain(tmp_path: Path) -> None:
    settings = _lake_with_a_rerun(tmp_path)
    env = {"YIMEN_HOME": str(tmp_path)}
    runner = CliRunner()

    sql = runner.invoke(
        main,
        [
            "sql",
            "SELECT dt, district, count(*) AS n FROM clean.gongan_population "
            "GROUP BY ALL ORDER BY 2",
        ],
        env=env,
    )
    assert sql.exit_code == 0, sql.output
    assert "2026-11-28" in sql.output and sql.output.count("│    10 │") == 2

    status = runner.invoke(main, ["status", "--as-of", DAY.isoformat()], env=env)
    assert status.exit_code == 0, status.output
    clean = next(
        line for line in status.output.splitlines() if line.strip().startswith("raw/clean")
    )
    assert "gongan/population" in clean and " 20 " in clean and "rerun" in clean
    assert "(30 rows)" in clean, "what the date held before the rerun"

    maintain = runner.invoke(main, ["maintain"], env=env)
    assert maintain.exit_code == 0, maintain.output
    assert "2 tables maintained" in maintain.output
    assert (
        settings.lake()
        .read_manifest(settings.lake().dataset_partition(RAW_CLEAN, POPULATION, DAY))
        .rows
        == 20
    )

    wrong = runner.invoke(main, ["sql", "SELEC 1"], env=env)
    assert wrong.exit_code == 1 and wrong.output.startswith("error: sql: Parser Error")
    missing = runner.invoke(main, ["status", "--as-of", "2026-11-01"], env=env)
    assert missing.exit_code == 1 and "no night 2026-11-01" in missing.output
