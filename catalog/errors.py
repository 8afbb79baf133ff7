"""One error family for the lake, and the helpers that keep error lines short and impersonal.

It sits in ``catalog/``, the lowest layer, so every layer above (masking, etl, dags, CLI)
raises and formats errors the same way. Error lines are shown to people and kept in the
catalog store: they must never carry a value from a delivery.
"""

from __future__ import annotations

import re


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


def one_line(exc: BaseException) -> str:
    """``Type: first line`` of an unexpected error, with quoted values masked.

    Library errors quote the offending value (``Failed to parse string: '4407…'``): that
    may be personal data, and run errors are shown to people and kept in the store.
    """
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {without_quoted_values(first)}"


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
    """The driver's own first line of a database error (SQLAlchemy wraps it in ``orig``)."""
    return (str(getattr(exc, "orig", exc)).strip().splitlines() or [type(exc).__name__])[0]


def shown_url(url: object) -> str:
    """A SQLAlchemy URL as people may see it: the password hidden."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


class PublicationBlocked(LakeError):
    """A publication gate failed (k-anonymity past the suppression limit): nothing is
    published for that dataset and the previous publication stays in place."""


class MaskingKeyError(LakeError):
    """The masking master key is missing or malformed. Messages never carry key material."""
