"""The service centre's item list (事项清单): statutory and promised time limits per item.

Reference data for the overdue statistics, kept in ``catalog/service_items.yaml`` beside
the dataset definitions and checked at load like them (one line per problem).
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from catalog.errors import CatalogError

SERVICE_ITEMS_FILE = Path(__file__).parent / "service_items.yaml"


class ServiceItem(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    department: str
    item: str
    statutory_days: int = Field(gt=0)  # 法定办结时限
    promised_days: int = Field(gt=0)  # 承诺办结时限

    @model_validator(mode="after")
    def _promise_within_law(self) -> ServiceItem:
        if self.promised_days > self.statutory_days:
            raise ValueError("promised_days must not exceed statutory_days")
        return self


class _ItemFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    items: list[ServiceItem]


def load_service_items(path: Path = SERVICE_ITEMS_FILE) -> list[ServiceItem]:
    """Every item with its limits; a bad file raises one CatalogError naming file and item."""
    try:
        return _ItemFile.model_validate(yaml.safe_load(path.read_text(encoding="utf-8"))).items
    except (OSError, yaml.YAMLError) as exc:
        raise CatalogError(f"{path.name}: cannot be read ({type(exc).__name__})") from exc
    except ValidationError as exc:
        problems = [
            f"{path.name}: {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        ]
        raise CatalogError("; ".join(problems)) from exc
