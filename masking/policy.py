"""What a consumer receives for a field: DESIGN §6 as one function per zone.

:func:`field_treatment` answers for the shared zone, :func:`public_treatment` for the public
zone; every other part of the lake (shared extracts, data dictionaries, the leak scan,
``lake catalog show --as``) asks them instead of reading levels itself.

| level       | shared, granted          | shared, other consumers   | public           |
|-------------|--------------------------|---------------------------|------------------|
| open        | clear                    | clear                     | clear            |
| shared      | clear                    | clear                     | public rule      |
| conditional | clear                    | shared rule               | public rule      |
| restricted  | token if join key, else drop                         | drop             |

The shared and public rules come from the field's PII kind (``DEFAULT_RULES``) unless the
catalog overrides them per field. Fields without a PII kind: the shared rule tokenises a
join key and drops anything else; the public rule keeps a shared-level categorical field
(``allowed:``) or quasi-identifier (the k-anonymity gate generalises or suppresses it) and
drops everything else. The public zone never carries a token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import pyarrow as pa

from catalog.definitions import DatasetDef, FieldDef
from catalog.errors import CatalogError
from catalog.masking_overrides import (
    BandSpec,
    DropSpec,
    FakeSpec,
    GeneraliseSpec,
    KeepSpec,
    MaskSpec,
    RoundSpec,
    TokenSpec,
)
from masking.operators import (
    NO_CONTEXT,
    Band,
    Context,
    Drop,
    Fake,
    Generalise,
    Keep,
    Mask,
    Operator,
    Round,
    Token,
    Values,
)

Zone = Literal["shared", "public"]


@dataclass(frozen=True)
class Output:
    """One delivered column: its name and the operator that makes it from the field."""

    column: str
    operator: Operator


@dataclass(frozen=True)
class Treatment:
    """What one field becomes in one zone for one consumer: zero, one or two columns."""

    field: str
    zone: Zone
    consumer: str | None
    outputs: tuple[Output, ...]
    rule: str  # which cell of DESIGN §6 decided, for people

    @property
    def dropped(self) -> bool:
        return not self.outputs

    @property
    def clear(self) -> bool:
        """True when the field is delivered unchanged (under its own name)."""
        return any(o.column == self.field and isinstance(o.operator, Keep) for o in self.outputs)

    @property
    def tokenised(self) -> bool:
        return any(isinstance(o.operator, Token) for o in self.outputs)

    def describe(self, example: Any = None) -> str:
        """``name: mask(keep_first=1) → 张** (conditional, not granted: shared rule for name)``."""
        if self.dropped:
            return f"{self.field}: dropped ({self.rule})"
        parts = [
            (o.column if o.column != self.field else "")
            + ("" if o.column == self.field else " = ")
            + o.operator.describe(example if o.column == self.field else None)
            for o in self.outputs
        ]
        return f"{self.field}: {'; '.join(parts)} ({self.rule})"


# the PII-kind defaults of DESIGN §6: (shared rule, public rule)
DEFAULT_RULES: dict[str, tuple[Operator, Operator]] = {
    "id_no": (Mask(keep_first=1, keep_last=1), Drop()),  # + person token (shared)
    "name": (Mask(keep_first=1), Drop()),
    "phone": (Mask(keep_first=3, keep_last=4), Drop()),
    "address": (Generalise("district"), Generalise("district_code")),
    "birth_date": (Generalise("year_month"), Generalise("year")),
    "amount": (Round(to=100), Band(width=1000)),
    "health": (Drop(), Drop()),
    "free_text": (Drop(), Drop()),
}

# an example value per PII kind, for describe() (made up: not a real person)
EXAMPLES: dict[str, Any] = {
    "id_no": "440703199001011235",
    "name": "张小明",
    "phone": "13812345678",
    "address": "江门市蓬江区建设路1号",
    "amount": 5678,
}


def token_column(field: FieldDef) -> str:
    """The token column of a field: ``id_no`` → ``person_token``, ``tax_no`` → ``tax_no_token``.

    Every ID number's token is named a person token, so one consumer's datasets join on it.
    """
    if field.pii == "id_no":
        return field.name.replace("id_no", "person_token")
    return f"{field.name}_token"


def field_treatment(
    dataset: DatasetDef, field: FieldDef | str, consumer: str, granted: bool
) -> Treatment:
    """What ``consumer`` receives in the shared zone for ``field`` of ``dataset``.

    ``granted``: the consumer holds an active grant naming this field.
    """
    f = _field(dataset, field)

    def treat(rule: str, *outputs: Output) -> Treatment:
        return Treatment(f.name, "shared", consumer, outputs, rule)

    who = "granted" if granted else "not granted"
    if f.level == "open":
        return treat("open: clear for everyone", Output(f.name, Keep()))
    if f.level == "restricted":
        if f.join_key:
            return treat("restricted join key: token only", Output(token_column(f), Token()))
        return treat("restricted: not shared")
    if f.level == "shared" or granted:
        return treat(f"{f.level}, {who}: clear", Output(f.name, Keep()))
    return treat(f"conditional, {who}: {_source(f, 'shared')}", *_shared_rule(f))


def public_treatment(field: FieldDef, dataset: DatasetDef | None = None) -> Treatment:
    """What the public zone carries for ``field``: never a token, never a restricted value."""
    if dataset is not None:
        field = _field(dataset, field)

    def treat(rule: str, *outputs: Output) -> Treatment:
        return Treatment(field.name, "public", None, outputs, rule)

    if field.level == "open":
        return treat("open: clear for everyone", Output(field.name, Keep()))
    if field.level == "restricted":
        return treat("restricted: never public")
    operator = _public_rule(field)
    rule = f"{field.level}: {_source(field, 'public')}"
    return treat(rule) if isinstance(operator, Drop) else treat(rule, Output(field.name, operator))


def _shared_rule(f: FieldDef) -> tuple[Output, ...]:
    if f.masking and f.masking.shared:
        operator = operator_from_spec(f.masking.shared)
        name = token_column(f) if isinstance(operator, Token) else f.name
    elif f.pii:
        operator, name = DEFAULT_RULES[f.pii][0], f.name
    elif f.join_key:
        operator, name = Token(), token_column(f)
    else:
        operator, name = Drop(), f.name
    outputs = () if isinstance(operator, Drop) else (Output(name, operator),)
    if f.pii == "id_no" and not any(isinstance(o.operator, Token) for o in outputs):
        outputs += (Output(token_column(f), Token()),)  # 6+4 leaks county and sex: join on this
    return outputs


def _public_rule(f: FieldDef) -> Operator:
    if f.masking and f.masking.public:
        return operator_from_spec(f.masking.public)
    if f.pii:
        return DEFAULT_RULES[f.pii][1]
    if f.level == "shared" and (f.allowed or f.quasi_identifier):
        return Keep()  # categorical, or left to the k-anonymity gate
    return Drop()


def _source(f: FieldDef, rule: Zone) -> str:
    override = f.masking and getattr(f.masking, rule)
    if override:
        return f"catalog override ({rule} rule)"
    if f.pii:
        return f"{rule} rule for {f.pii}"
    if rule == "shared":
        return "join key tokenised" if f.join_key else "no PII kind: dropped"
    if f.level == "shared" and (f.allowed or f.quasi_identifier):
        return "categorical or quasi-identifier: kept, k-anonymity gate applies"
    return "no PII kind: dropped"


def _field(dataset: DatasetDef, field: FieldDef | str) -> FieldDef:
    name = field if isinstance(field, str) else field.name
    found = next((f for f in dataset.fields if f.name == name), None)
    if found is None:
        raise CatalogError(f"dataset '{dataset.id}' has no field '{name}'")
    if not isinstance(field, str) and found != field:
        raise CatalogError(f"field '{name}' given is not the one of dataset '{dataset.id}'")
    return found


def operator_from_spec(spec: Any) -> Operator:
    """The operator a catalog override names."""
    if isinstance(spec, KeepSpec):
        return Keep()
    if isinstance(spec, DropSpec):
        return Drop()
    if isinstance(spec, MaskSpec):
        return Mask(keep_first=spec.keep_first, keep_last=spec.keep_last, char=spec.char)
    if isinstance(spec, TokenSpec):
        return Token()
    if isinstance(spec, GeneraliseSpec):
        return Generalise(spec.to, width=spec.width, length=spec.length)
    if isinstance(spec, BandSpec):
        return Band(width=spec.width)
    if isinstance(spec, RoundSpec):
        return Round(to=spec.to)
    if isinstance(spec, FakeSpec):
        return Fake(spec.kind)
    raise TypeError(f"not a masking override: {spec!r}")


def treated_columns(
    treatment: Treatment, values: Values, context: Context = NO_CONTEXT
) -> dict[str, pa.Array]:
    """The delivered columns of one field (none when dropped), in output order."""
    return {o.column: o.operator.apply(values, context) for o in treatment.outputs}


def output_metadata(field: FieldDef, output: Output, key_id: str | None = None) -> dict[str, str]:
    """Parquet field metadata for a delivered column (DESIGN §5): never key material."""
    import json

    meta = {
        "level": field.level,
        "pii": field.pii or "",
        "source_field": field.name,
        "operator": json.dumps(output.operator.spec(), ensure_ascii=False),
    }
    if isinstance(output.operator, Token | Fake):
        if key_id is None:
            raise ValueError(f"column '{output.column}' is keyed: record its key id")
        meta["key_id"] = key_id
    return meta
