"""Leak scan: what must never leave the raw zone, looked for in an outgoing table.

It runs over every shared and public table before it is published (the last gate of the
shared and public steps). A finding names the column, the kind of leak, how many rows and
the first row number — never the value, because the report itself is read by people who
may not see it.

Looked for, vectorised over whole columns (RE2 via pyarrow; Python's ``re`` runs only on
the few rows RE2 already flagged, to apply the check character):
- valid 18-character resident IDs (right check character) anywhere inside a text value,
  and 15-digit old IDs (division prefix + a real date);
- mainland mobile numbers, also written with spaces, dashes or a +86 prefix;
- columns that the consumer was not granted (the caller passes what it expects);
- tokens that belong to another consumer (the caller passes those tokens).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from catalog.identifiers import resident_id_check_chars

_DATE = r"(?:18|19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])"
_DATE15 = r"[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])"
# RE2 has no look-around: a digit run is bounded by a non-digit or the ends of the value
_ID18_RE2 = rf"(?:^|[^0-9])[1-9][0-9]{{5}}{_DATE}[0-9]{{3}}[0-9Xx](?:[^0-9Xx]|$)"
_ID15_RE2 = rf"(?:^|[^0-9])[1-9][0-9]{{5}}{_DATE15}[0-9]{{3}}(?:[^0-9]|$)"
_ID18 = re.compile(rf"(?<![0-9])([1-9][0-9]{{5}}{_DATE}[0-9]{{3}}[0-9Xx])(?![0-9Xx])")
_MOBILE_RE2 = r"(?:^|[^0-9])(?:\+?86)?1[3-9][0-9]{9}(?:[^0-9]|$)"
# RE2's \s is [\t\n\f\r ]: the separators of a written-out mobile are those, dashes and
# brackets; _BLANKS are those that break no line
_BLANKS = r"\t\f \-()（）"
_SEPARATORS = rf"[{_BLANKS}\r\n]"
TOKEN_PATTERN = r"^[0-9a-f]{16,64}$"  # masking.operators.Token: lowercase hex
# What every value the ID and mobile patterns can flag holds: eleven digits with nothing
# but separators between them (a mobile once its separators are gone; an ID's 15 or 18
# digits in a row). One pass of this simple pattern finds the few candidates of a column,
# and only they go through the three patterns and the separators' removal: most public
# text (names, addresses, case numbers, timestamps) holds no such run
CANDIDATE_RE2 = rf"[0-9](?:{_SEPARATORS}*[0-9]){{10}}"
# The same run within one line (for text whose line breaks all end records: a CSV file
# without quotes)
CANDIDATE_IN_LINE_RE2 = rf"[0-9](?:[{_BLANKS}]*[0-9]){{10}}"


@dataclass(frozen=True)
class LeakFinding:
    """One kind of leak in one column: where, how many rows, never what."""

    column: str
    kind: str  # resident_id(15) | mobile | ungranted_column | not_a_token | foreign_token
    rows: int
    first_row: int | None  # 0-based row number in the scanned table

    def describe(self, where: str) -> str:
        at = f", first at row {self.first_row}" if self.first_row is not None else ""
        return f"{where}: column '{self.column}' holds {self.kind} ({self.rows:,} rows{at})"


def scan_table(
    table: pa.Table,
    *,
    expected_columns: Iterable[str] | None = None,
    exempt_columns: Iterable[str] = (),
    token_columns: Iterable[str] = (),
    foreign_tokens: dict[str, pa.Array] | None = None,
) -> list[LeakFinding]:
    """Every leak found in ``table`` (an empty list means it may be published).

    ``expected_columns``: what the consumer may receive; any other column is a finding.
    ``exempt_columns``: text columns whose digits legitimately look like a 15-digit ID
    (e.g. a public business registration number); 18-character IDs are never exempt.
    ``token_columns``: columns that must hold tokens only (``TOKEN_PATTERN``): a value of any
    other shape there is a finding; their random hex is not scanned for IDs or mobiles.
    ``foreign_tokens``: per token column, tokens another consumer holds for the same values.
    """
    findings: list[LeakFinding] = []
    if expected_columns is not None:
        allowed = set(expected_columns)
        findings += [
            LeakFinding(name, "ungranted_column", table.num_rows, None)
            for name in table.column_names
            if name not in allowed
        ]
    exempt, tokens = set(exempt_columns), set(token_columns)
    for name in tokens & set(table.column_names):
        shaped = pc.match_substring_regex(table.column(name), TOKEN_PATTERN)
        findings += _finding(name, "not_a_token", ~_mask(pc.or_kleene(shaped, _empty(table, name))))
    for name in table.column_names:
        if name in tokens:
            continue
        column = table.column(name)
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            if pa.types.is_integer(column.type):  # an ID stored as a number is still an ID
                column = column.cast(pa.string())
            else:
                continue
        values = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        findings += _text_findings(name, values, exempt=name in exempt)
    for name, theirs in (foreign_tokens or {}).items():
        theirs = pc.filter(theirs, pc.not_equal(theirs, ""))  # nulls drop out too
        if name in table.column_names and len(theirs):
            hit = _mask(pc.is_in(table.column(name), value_set=theirs, skip_nulls=True))
            findings += _finding(name, "foreign_token", hit)
    return findings


def _text_findings(name: str, values: pa.Array, *, exempt: bool) -> list[LeakFinding]:
    """The ID and mobile findings of one text column, looked for in its candidates only."""
    candidates = np.flatnonzero(_mask(pc.match_substring_regex(values, CANDIDATE_RE2)))
    if len(candidates) == 0:
        return []
    some = values.take(pa.array(candidates)) if len(candidates) < len(values) else values

    def per_row(hit: np.ndarray) -> np.ndarray:  # a finding's rows in the whole column
        whole = np.zeros(len(values), dtype=bool)
        whole[candidates] = hit
        return whole

    flagged = _mask(pc.match_substring_regex(some, _ID18_RE2))
    found = _finding(name, "resident_id", per_row(_with_check_char(some, flagged)))
    if not exempt:
        id15 = _mask(pc.match_substring_regex(some, _ID15_RE2))
        found += _finding(name, "resident_id15", per_row(id15))
    compact = pc.replace_substring_regex(some, _SEPARATORS, "")
    mobile = _mask(pc.match_substring_regex(compact, _MOBILE_RE2))
    return found + _finding(name, "mobile", per_row(mobile))


def _with_check_char(values: pa.Array, flagged: np.ndarray) -> np.ndarray:
    """Of the rows RE2 flagged, those holding an ID whose check character is right."""
    rows = np.flatnonzero(flagged)
    if len(rows) == 0:
        return flagged
    texts = values.take(pa.array(rows)).to_pylist()
    candidates = [
        (i, m.upper()) for i, t in zip(rows, texts, strict=True) for m in _ID18.findall(t)
    ]
    leaked = np.zeros(len(values), dtype=bool)
    if candidates:
        where, ids = zip(*candidates, strict=True)
        body = np.array([i[:17] for i in ids])
        good = resident_id_check_chars(body) == np.array([i[17] for i in ids])
        leaked[np.array(where)[good]] = True
    return leaked


def _empty(table: pa.Table, name: str) -> pa.ChunkedArray:
    """NULL or empty: a missing ID has no token, which is not a leak."""
    column = table.column(name)
    return pc.or_kleene(pc.is_null(column), pc.equal(column, ""))


def _mask(result: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return pc.fill_null(result, False).to_numpy(zero_copy_only=False).astype(bool)


def _finding(name: str, kind: str, hit: np.ndarray) -> list[LeakFinding]:
    rows = int(hit.sum())
    return [LeakFinding(name, kind, rows, int(np.argmax(hit)))] if rows else []
