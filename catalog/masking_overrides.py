"""Per-field masking overrides in the catalog YAML, checked when the catalog loads.

A field may replace the default rules of DESIGN §6 for the shared rule (conditional fields,
consumers without a grant) or the public rule (shared and conditional fields)::

    masking: {shared: {op: mask, keep_first: 2}, public: {op: generalise, to: year}}

The operators themselves live in ``masking/``, a layer above the catalog, so the catalog
cannot import them. It keeps its own registry of operator names and the field types each
can apply to; ``tests/test_masking_policy.py`` ties the registry to ``masking/operators.py``
(both sets must be equal), as the rule names are tied to the validation functions.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

_ALL_TYPES = frozenset({"string", "date", "datetime", "integer", "decimal"})
_DATES = frozenset({"date", "datetime"})
_AMOUNTS = frozenset({"integer", "decimal"})

# operator variant -> field types it can apply to (variant = op, or op.kind / op.to)
OPERATOR_FIELD_TYPES: dict[str, frozenset[str]] = {
    "keep": _ALL_TYPES,
    "drop": _ALL_TYPES,
    "mask": frozenset({"string"}),
    "token": frozenset({"string", "integer"}),
    "generalise.year_month": _DATES,
    "generalise.year": _DATES,
    "generalise.age_band": _DATES,
    "generalise.district": frozenset({"string"}),
    "generalise.district_code": frozenset({"string"}),
    "generalise.prefix": frozenset({"string"}),
    "band": _AMOUNTS,
    "round": _AMOUNTS,
    "fake.id_no": frozenset({"string"}),
    "fake.name": frozenset({"string"}),
    "fake.phone": frozenset({"string"}),
}

# which operators an override may name, per rule (DESIGN §6: the shared rule masks,
# tokenises or generalises; the public zone never carries tokens; fakes are for test copies)
_SHARED_OPS = {"drop", "mask", "token", "generalise", "band", "round"}
_PUBLIC_OPS = {"drop", "mask", "generalise", "band", "round"}  # + keep for level shared


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @property
    def variant(self) -> str:
        return self.op  # type: ignore[attr-defined,no-any-return]


class KeepSpec(_Spec):
    op: Literal["keep"]


class DropSpec(_Spec):
    op: Literal["drop"]


class MaskSpec(_Spec):
    op: Literal["mask"]
    keep_first: int = Field(default=0, ge=0)
    keep_last: int = Field(default=0, ge=0)
    char: str = Field(default="*", min_length=1, max_length=1)


class TokenSpec(_Spec):
    op: Literal["token"]


class GeneraliseSpec(_Spec):
    op: Literal["generalise"]
    to: Literal["year_month", "year", "age_band", "district", "district_code", "prefix"]
    width: int = Field(default=5, gt=0)  # age band width in years
    length: int = Field(default=4, gt=0)  # prefix length in characters

    @property
    def variant(self) -> str:
        return f"generalise.{self.to}"


class BandSpec(_Spec):
    op: Literal["band"]
    width: float = Field(gt=0)


class RoundSpec(_Spec):
    op: Literal["round"]
    to: float = Field(gt=0)


class FakeSpec(_Spec):
    op: Literal["fake"]
    kind: Literal["id_no", "name", "phone"]

    @property
    def variant(self) -> str:
        return f"fake.{self.kind}"


OperatorSpec = Annotated[
    KeepSpec | DropSpec | MaskSpec | TokenSpec | GeneraliseSpec | BandSpec | RoundSpec | FakeSpec,
    Field(discriminator="op"),
]


class MaskingOverride(_Spec):
    """A field's own shared and/or public rule, replacing the PII-kind default."""

    shared: OperatorSpec | None = None
    public: OperatorSpec | None = None

    def problems(self, level: str, field_type: str) -> list[str]:
        """Why this override cannot stand for a field of ``level`` and ``field_type``."""
        found = []
        for rule, spec in (("shared", self.shared), ("public", self.public)):
            if spec is None:
                continue
            where = f"masking.{rule}"
            if level in ("open", "restricted"):
                found.append(f"{where}: {level} fields take no override (DESIGN §6 fixes them)")
                continue
            if rule == "shared" and level != "conditional":
                found.append(f"{where}: the shared rule applies to conditional fields only")
                continue
            allowed = (
                _SHARED_OPS
                if rule == "shared"
                else _PUBLIC_OPS | ({"keep"} if level == "shared" else set())
            )
            if spec.op not in allowed:
                found.append(
                    f"{where}: '{spec.op}' is not allowed here (use one of "
                    f"{', '.join(sorted(allowed))})"
                )
                continue
            types = OPERATOR_FIELD_TYPES[spec.variant]
            if field_type not in types:
                found.append(
                    f"{where}: '{spec.variant}' cannot apply to a {field_type} field "
                    f"(applies to {', '.join(sorted(types))})"
                )
        return found
