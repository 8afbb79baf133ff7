"""``lake match``: deduplicate any list of people with the lake's matcher, optionally link it.

Reads Parquet, CSV (its encoding must be declared: department files are GBK as often as
UTF-8) or .xlsx; the caller maps column roles (``name=姓名,birth_date=出生日期,…``) onto
the list's headers. Every input row comes out with ``cluster_id`` and ``match_score``;
``--link`` adds the unified ``person_id`` (and its score) where the list row matches one.
Bad input is one line naming the file, never a traceback and never a cell value.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from catalog.errors import LakeError, one_line
from etl.matching import (
    DEFAULT_M,
    ROLES,
    best_links,
    candidate_pairs,
    dedup_list,
    match_model,
    person_match_keys,
    scored_pairs,
    u_probabilities,
    weight_to_score,
)

KINDS = ("person",)


class ListError(LakeError):
    """A list given to ``lake match`` cannot be read as asked."""


def parse_roles(spec: str, path: Path) -> dict[str, str]:
    """``name=姓名,phone=电话`` → {role: column}; unknown roles and a missing name are errors."""
    roles: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        role, sep, column = part.partition("=")
        role, column = role.strip(), column.strip()
        if not sep or not column:
            raise ListError(f"{path}: --columns wants role=column pairs, got a part without '='")
        if role not in ROLES:
            raise ListError(f"{path}: unknown column role {role!r} (roles: {', '.join(ROLES)})")
        roles[role] = column
    if "name" not in roles:
        raise ListError(f"{path}: --columns must map the name role (name=<column>)")
    return roles


def read_list(path: Path, encoding: str | None) -> pd.DataFrame:
    """The list as strings; the format comes from the file name."""
    if not path.is_file():
        raise ListError(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            frame = pd.read_parquet(path)
        elif suffix in (".csv", ".txt"):
            if not encoding:
                raise ListError(
                    f"{path}: declare the CSV's encoding with --encoding (utf-8, gbk …)"
                )
            frame = pd.read_csv(path, dtype=str, encoding=encoding, keep_default_na=False)
        elif suffix in (".xlsx", ".xls"):
            frame = pd.read_excel(path, dtype=str, engine="calamine").fillna("")
        else:
            raise ListError(f"{path}: unknown list format {suffix!r} (parquet, csv or xlsx)")
    except ListError:
        raise
    except UnicodeDecodeError as exc:
        raise ListError(f"{path}: not readable as {encoding}: {exc.reason}") from exc
    except LookupError as exc:
        raise ListError(f"{path}: unknown encoding {encoding!r}") from exc
    except pd.errors.EmptyDataError as exc:
        raise ListError(f"{path}: the file is empty") from exc
    except Exception as exc:  # a broken file: say so in one line, without its content
        raise ListError(f"{path}: cannot be read: {type(exc).__name__}") from exc
    if frame.empty:
        raise ListError(f"{path}: the list has no rows")
    return frame


def role_frame(frame: pd.DataFrame, roles: dict[str, str], path: Path) -> pd.DataFrame:
    missing = [f"{role}={col}" for role, col in roles.items() if col not in frame.columns]
    if missing:
        raise ListError(f"{path}: no column for {', '.join(missing)}")
    return pd.DataFrame({role: frame[col].astype("str") for role, col in roles.items()})


@dataclass(frozen=True)
class MatchedList:
    rows: pd.DataFrame  # the input rows + cluster_id, match_score (+ person_id, person_score)
    clusters: int
    linked: int | None


def match_list(
    frame: pd.DataFrame, roles: dict[str, str], path: Path, persons: pd.DataFrame | None = None
) -> MatchedList:
    """Cluster the list's rows; with ``persons`` (the unified table) link them too."""
    people = role_frame(frame, roles, path)
    result = dedup_list(people)
    out = frame.copy()
    out["cluster_id"] = result.cluster
    out["match_score"] = result.score
    linked = None
    if persons is not None:
        person_id, score = link_to_persons(people, persons)
        out["person_id"] = person_id
        out["person_score"] = score
        linked = int(pd.notna(person_id).sum())
    return MatchedList(out, int(len(np.unique(result.cluster))), linked)


def link_to_persons(people: pd.DataFrame, persons: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Each list row's best unified person above the threshold (else none)."""
    register = pd.DataFrame(
        {
            "name": persons["name"],
            "birth_date": persons["birth_date"].astype("str"),
            "phone": persons["phone"],
            "district": persons["district"],
            "sex": persons["sex"],
        }
    )
    both = pd.concat([people, register[[c for c in register if c in people]]], ignore_index=True)
    keys = person_match_keys(both)
    n = len(people)
    probe = np.zeros(len(both), dtype=bool)
    probe[:n] = True
    cands = candidate_pairs(keys, probe)
    across = cands.right >= n  # list row → register row only
    left, right = cands.left[across], cands.right[across]
    model = match_model(DEFAULT_M, u_probabilities(keys, np.random.default_rng(0)), len(persons))
    weights = scored_pairs(keys, left, right, model, keys["name_tf"].to_numpy()[right])
    links = best_links(left, right, weights, model.threshold)
    links = links[links["row"] < n]
    person_id = np.full(n, None, dtype=object)
    score = np.full(n, np.nan)
    rows = links["row"].to_numpy()
    person_id[rows] = persons["person_id"].to_numpy()[links["partner"].to_numpy() - n]
    score[rows] = weight_to_score(links["weight"].to_numpy(), model.threshold)
    return person_id, score


def write_matched(rows: pd.DataFrame, out: Path) -> None:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        rows.to_parquet(out, index=False)
    except OSError as exc:
        raise ListError(f"{out}: cannot be written: {one_line(exc)}") from exc
