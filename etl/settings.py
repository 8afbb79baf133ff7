"""Where things live. One place that reads the environment, so nothing else does.

Defaults put everything a run writes under ``<repo>/var/``; environment variables move it:
``YIMEN_HOME`` (the folder holding ``var/``), ``YIMEN_LAKE_ROOT`` (a local path or an
object-store URI such as ``s3://bucket/lake``) and ``YIMEN_CATALOG_URL`` (any SQLAlchemy URL);
``YIMEN_HEAVY_STEP_ROWS`` sizes the night's memory-heavy steps to the machine;
``YIMEN_UNIFY_REBUILD_DAYS`` is how many nights unification keeps a matching model
before a night rebuilds and estimates it again (docs/decisions/0023; 1: every night).
Object storage is reached with the standard AWS variables (``AWS_ENDPOINT_URL``,
``AWS_REGION``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``), never with YAML.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from catalog.errors import LakeError

if TYPE_CHECKING:
    from etl.zones import Lake

REPO_ROOT = Path(__file__).resolve().parent.parent
SOURCE_POOL = "source_connections"  # the Airflow pool for reads against department systems
# Two validations of 3 M and 2 M rows side by side (full scale's biggest pair) peak at 2.1-2.5
# GB of PSS with the process they fork from: within the night's 4 GiB beside the runner and
# the execution API. Two deliveries of 3 M rows or more are not validated at once.
DEFAULT_HEAVY_STEP_ROWS = 3_000_000
# a week: the nights in between update the unified persons incrementally with its weights
DEFAULT_UNIFY_REBUILD_DAYS = 7


@dataclass(frozen=True)
class LakeSettings:
    home: Path
    lake_root: str
    catalog_url: str
    departments_dir: Path
    ground_truth_dir: Path
    storage: dict[str, str] = field(default_factory=dict)  # object-store FileIO properties
    # deliveries at least this large are validated one at a time (etl/nightly.py): memory
    heavy_step_rows: int = DEFAULT_HEAVY_STEP_ROWS
    unify_rebuild_days: int = DEFAULT_UNIFY_REBUILD_DAYS

    def lake(self) -> Lake:
        """The lake these settings point at (its Iceberg catalog lives in the store's DB)."""
        from etl.zones import Lake

        return Lake(self.lake_root, self.catalog_url, storage=self.storage)

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
            storage=storage_from_env(os.environ),
            heavy_step_rows=_whole_number(
                os.environ, "YIMEN_HEAVY_STEP_ROWS", DEFAULT_HEAVY_STEP_ROWS
            ),
            unify_rebuild_days=_whole_number(
                os.environ, "YIMEN_UNIFY_REBUILD_DAYS", DEFAULT_UNIFY_REBUILD_DAYS, "nights"
            ),
        )


def _whole_number(env: Mapping[str, str], name: str, default: int, unit: str = "rows") -> int:
    """A positive whole number from the environment (``default`` when unset), or one line."""
    text = env.get(name, "").strip()
    if not text:
        return default
    if not text.isdigit() or int(text) < 1:
        raise LakeError(f"{name} must be a whole number of {unit} above 0, got {text!r}")
    return int(text)


_STORAGE_ENV = {
    "AWS_ENDPOINT_URL": "s3.endpoint",
    "AWS_REGION": "s3.region",
    "AWS_DEFAULT_REGION": "s3.region",
    "AWS_ACCESS_KEY_ID": "s3.access-key-id",
    "AWS_SECRET_ACCESS_KEY": "s3.secret-access-key",
    "AWS_SESSION_TOKEN": "s3.session-token",
}


def storage_from_env(env: dict[str, str]) -> dict[str, str]:
    """pyiceberg FileIO properties for object storage, from the standard AWS variables."""
    found: dict[str, str] = {}
    for name, prop in _STORAGE_ENV.items():
        if env.get(name):
            found.setdefault(prop, env[name])
    return found
