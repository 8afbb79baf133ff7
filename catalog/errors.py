"""One error family for the lake, and the helpers that keep error lines short and impersonal.

It sits in ``catalog/``, the lowest layer, so every layer above (masking, etl, dags, CLI)
raises and formats errors the same way. Error lines are shown to people and kept in the
catalog store: they must never carry a value from a delivery.
"""

from __future__ import annotations

import re
from collections.abc import Collection


class LakeError(Exception):
    """Base class: the message is meant for people and names the file/dataset/field."""


class CatalogError(LakeError):
    """A catalog definition is missing or malformed, or a dataset/department is unknown."""


class SourceError(LakeError):
    """A department system cannot be read: missing file, unreachable database, bad encoding."""


class ConnectionNotFound(SourceError):
    """A catalog connection id has no Airflow connection behind it."""


class PartitionError(LakeError):
    """A zone partition could not be written or is incomplete."""


class BreakerTripped(LakeError):
    """The circuit breaker: too much of one delivery was quarantined (a dataset-level stop).

    Not the quality gate, which is the night-level check that every dataset was validated
    with its rows conserved; a tripped breaker makes that gate fail too.
    """


def without_quoted_values(text: str) -> str:
    """Mask what a library error quotes (``could not convert '陈大文…'``): it may be personal
    data, and error lines are shown to people and kept in the catalog store."""
    return re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", text)


_NOT_ALNUM_BEFORE, _NOT_ALNUM_AFTER = r"(?<![0-9A-Za-z])", r"(?![0-9A-Za-z])"
_LOOKS_PERSONAL = re.compile(
    _NOT_ALNUM_BEFORE
    + "(?:"
    + "|".join(
        [
            r"[0-9]{17}[0-9Xx]|[0-9]{15}",  # resident ID, 18 or (old) 15 digits
            r"[0-9A-HJ-NPQRTUWXY]{2}[0-9]{6}[0-9A-HJ-NPQRTUWXY]{10}",  # USCC
            r"(?:\+?86[ -]?)?1[3-9][0-9](?:[ -]?[0-9]{4}){2}",  # mobile, +86 138-1234-5678
            r"0[1-9][0-9]{1,2}[ -]?[0-9]{7,8}",  # landline with area code
            r"[0-9]{9,}",  # any other long number: accounts, insured numbers, tax numbers
        ]
    )
    + ")"
    + _NOT_ALNUM_AFTER
)
# Chinese text (names, addresses, notes): the lake's own messages are English, so any CJK
# in a message came from a delivery.
_CJK_TEXT = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]+")


def impersonal(text: str, *, quoted: bool = True) -> str:
    """The one masking function for any text that leaves the raw zone.

    Header names, exception texts, sheet notes and reasons pass through here before any
    log line, store row, manifest, Parquet metadata or HTML. Masks quoted values, anything
    that looks like an ID number, a USCC, a phone number or another long number, and
    Chinese text (a name, an address, a notes cell); control characters become spaces so
    the text stays one line. What is left says what went wrong, not about whom.
    ``quoted=False`` keeps quoted words: the lake's own messages quote names it knows
    (``unknown dataset 'nope'``, ``connection 'gongan_db'``) and mask values themselves.
    """
    text = re.sub(r"[\x00-\x1f\x7f]+", " ", text)
    if quoted:
        text = without_quoted_values(text)
    text = _LOOKS_PERSONAL.sub("…", text)
    return _CJK_TEXT.sub("…", text)


def shown_column(name: str, position: int, catalog_names: Collection[str]) -> str:
    """A delivered header cell as people may see it: a catalog field name, or its position.

    A header cell that is not a catalog field may be a data row (a headerless file) or a
    notes cell (``导出人: 陈大文 13812345678``): it is never printed outside the raw zone.
    """
    return name if name in catalog_names else f"column {position} (not in the catalog)"


def one_line(exc: BaseException) -> str:
    """``Type: first line`` of an unexpected error, masked by :func:`impersonal`.

    Library errors quote the offending value (``Failed to parse string: '4407…'``): that
    may be personal data, and run errors are shown to people and kept in the store.
    """
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {impersonal(first)}"


def shown_error(exc: BaseException) -> str:
    """What people see of any error, in one masked line: a lake error's own message (it
    names the dataset and file), anything else as ``Type: first line``."""
    if isinstance(exc, LakeError):
        return impersonal(" ".join(str(exc).split()), quoted=False)
    return one_line(exc)


def without_row_content(exc: Exception) -> str:
    """A parser's message in one line, without the row text it quotes (personal data)."""
    import pyarrow as pa

    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    match = re.search(r"(Row #\d+: )?Expected \d+ columns, got \d+", text)
    if match:
        return f"CSV parse error: {match.group(0)} (truncated or malformed row)"
    if isinstance(exc, (pa.ArrowException, TypeError)):  # these quote the offending value
        return without_quoted_values(re.sub(r"couldn't parse:.*$", "couldn't parse: …", text))
    return text


def database_reason(exc: BaseException) -> str:
    """The driver's own first line of a database error (SQLAlchemy wraps it in ``orig``),
    with what it quotes masked (``invalid input syntax for type date: "…"``)."""
    first = (str(getattr(exc, "orig", exc)).strip().splitlines() or [type(exc).__name__])[0]
    return without_quoted_values(first)


def shown_url(url: object) -> str:
    """A SQLAlchemy URL as people may see it: the password hidden."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


class PublicationBlocked(LakeError):
    """A publication gate failed (k-anonymity past the suppression limit): nothing is
    published for that dataset and the previous publication stays in place."""


class MaskingKeyError(LakeError):
    """The masking master key is missing or malformed. Messages never carry key material."""
