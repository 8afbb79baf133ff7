"""One error family for the lake, so the CLI can print one clear line for any of them."""

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


class QualityGateFailed(LakeError):
    """Too much of a delivery was quarantined: nothing downstream publishes for that night."""


def without_quoted_values(text: str) -> str:
    """Mask what a library error quotes (``could not convert '陈大文…'``): it may be personal
    data, and error lines are shown to people and kept in the catalog store."""
    return re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", text)
