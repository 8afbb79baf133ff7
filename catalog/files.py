"""Owner-only files: what a run writes outside the lake is for the platform account alone.

Logs, the catalog database, the quality page, the GX Data Docs and spill files can carry
figures about people or (spill files) their rows. Processes run with a restrictive umask
(:data:`OWNER_ONLY_UMASK`, set at the CLI and DAG edge) and these helpers also set the
modes explicitly, so a caller with a looser umask (a test runner, a cron shell) still gets
0600 files in 0700 folders. The raw zone opens to the group on purpose (``etl/zones.py``).
"""

from __future__ import annotations

import hashlib
import importlib
import os
from functools import cache
from pathlib import Path

OWNER_ONLY_UMASK = 0o077
OWNER_FILE_MODE, OWNER_DIR_MODE = 0o600, 0o700


def owner_only_dir(path: Path) -> Path:
    """Create ``path`` (and parents) if needed; the folder itself becomes 0700."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, OWNER_DIR_MODE)
    return path


def new_owner_file(path: Path) -> Path:
    """Create (or truncate) an empty 0600 file, so a writer opening it later keeps the mode."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, OWNER_FILE_MODE)
    os.close(fd)
    os.chmod(path, OWNER_FILE_MODE)  # an existing file keeps its mode through O_CREAT
    return path


def owner_only_tree(root: Path) -> None:
    """Every folder under ``root`` (itself included) 0700, every file 0600."""
    if not root.exists():
        return
    os.chmod(root, OWNER_DIR_MODE)
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            os.chmod(os.path.join(folder, name), OWNER_DIR_MODE)
        for name in files:
            os.chmod(os.path.join(folder, name), OWNER_FILE_MODE)


@cache
def code_digest(*modules: str) -> str:
    """SHA-256 of the named modules' source files: what a kept result (carried rows, cached
    mentions, a kept publication) was computed by, so a change to that code redoes it."""
    digest = hashlib.sha256()
    for name in modules:
        digest.update(Path(importlib.import_module(name).__file__).read_bytes())
    return digest.hexdigest()
