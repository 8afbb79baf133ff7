"""Where things live. One place that reads the environment, so nothing else does.

Defaults put everything a run writes under ``<repo>/var/``; environment variables move it:
``YIMEN_HOME`` (the folder holding ``var/``), ``YIMEN_LAKE_ROOT`` (a local path or an
object-store URI such as ``s3://bucket/lake``) and ``YIMEN_CATALOG_URL`` (any SQLAlchemy URL).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SOURCE_POOL = "source_connections"  # the Airflow pool for reads against department systems


@dataclass(frozen=True)
class LakeSettings:
    home: Path
    lake_root: str
    catalog_url: str
    departments_dir: Path
    ground_truth_dir: Path

    @property
    def var(self) -> Path:
        return self.home / "var"

    @classmethod
    def under(cls, home: Path) -> LakeSettings:
        """Everything under ``home/var`` (tests, benchmarks, a second lake on one machine)."""
        var = home / "var"
        return cls(
            home=home,
            lake_root=str(var / "lake"),
            catalog_url=f"sqlite:///{var / 'catalog.db'}",
            departments_dir=var / "departments",
            ground_truth_dir=var / "ground_truth",
        )

    @classmethod
    def from_env(cls) -> LakeSettings:
        home = Path(os.environ.get("YIMEN_HOME", REPO_ROOT)).resolve()
        var = home / "var"
        return cls(
            home=home,
            lake_root=os.environ.get("YIMEN_LAKE_ROOT", str(var / "lake")),
            catalog_url=os.environ.get("YIMEN_CATALOG_URL", f"sqlite:///{var / 'catalog.db'}"),
            departments_dir=Path(os.environ.get("YIMEN_DEPARTMENTS_DIR", var / "departments")),
            ground_truth_dir=Path(os.environ.get("YIMEN_GROUND_TRUTH_DIR", var / "ground_truth")),
        )
