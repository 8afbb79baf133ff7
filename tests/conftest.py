"""Test session setup: a throw-away lake home, with Airflow pointed at it before import.

Airflow configures its metadata database when first imported, so the environment is set
here at import time, before any test module imports airflow.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

_SESSION_HOME = Path(tempfile.mkdtemp(prefix="yimen-test-"))
os.environ["YIMEN_HOME"] = str(_SESSION_HOME)
for _name in (
    "YIMEN_LAKE_ROOT",
    "YIMEN_CATALOG_URL",
    "YIMEN_DEPARTMENTS_DIR",
    "YIMEN_GROUND_TRUTH_DIR",
):
    os.environ.pop(_name, None)

from etl.airflow_runner import apply_airflow_environment  # noqa: E402
from etl.settings import LakeSettings  # noqa: E402
from tests.helpers import DEMO_DATE, TEST_SCALE, postgres_url  # noqa: E402

apply_airflow_environment(LakeSettings.from_env())


@pytest.fixture(scope="session")
def session_settings() -> LakeSettings:
    """Settings of the session's lake home (shared by the Airflow end-to-end tests)."""
    return LakeSettings.from_env()


@pytest.fixture
def settings(tmp_path: Path) -> LakeSettings:
    """A fresh, private lake home for one test."""
    return LakeSettings.under(tmp_path)


@pytest.fixture(scope="session")
def departments(session_settings: LakeSettings):
    """The session's simulated departments; public security lives on PostgreSQL when available."""
    import simulator

    pg = postgres_url()
    return simulator.build_departments(
        session_settings.departments_dir,
        scale=TEST_SCALE,
        as_of=DEMO_DATE,
        sql_urls={"gongan_db": pg} if pg else None,
        ground_truth_dir=session_settings.ground_truth_dir,
    )
