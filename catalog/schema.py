"""The catalog store's schema, under Alembic migrations (``catalog/migrations/``).

An empty database is brought to the newest revision when the store is first opened. A
database at an older revision is never changed behind the user's back: opening it is a
one-line error saying to run ``lake db upgrade``, which applies the missing migrations.
A store created before migrations existed cannot be told apart revision by revision and
is rebuilt instead (``lake demo``, or ``lake simulate`` + ``lake run``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import MetaData, inspect
from sqlalchemy.engine import Engine

from catalog.errors import CatalogError, shown_url

MIGRATIONS = Path(__file__).parent / "migrations"
# every store opening asks for the revision; Alembic's "Context impl …" lines are noise
logging.getLogger("alembic").setLevel(logging.WARNING)


def target_metadata() -> MetaData:
    """Every table the catalog's models declare (imported here so none is missed)."""
    import catalog.grants  # noqa: F401 - registers its tables on Base.metadata
    from catalog.store import Base

    return Base.metadata


def _config(connection=None):  # noqa: ANN001, ANN202 - alembic objects
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply the migrations up to ``revision`` (``lake db upgrade``)."""
    from alembic import command

    with engine.begin() as connection:
        command.upgrade(_config(connection), revision)


def ensure_current(engine: Engine) -> None:
    """Open a store: create an empty one at the newest revision; refuse an older one."""
    current, head = current_revision(engine), head_revision()
    if current == head:
        return
    ours = set(inspect(engine).get_table_names()) & set(target_metadata().tables)
    if current is None and not ours:
        upgrade(engine)
        return
    shown = shown_url(engine.url)
    if current is None:
        raise CatalogError(
            f"catalog store {shown} was created before schema migrations; rebuild it "
            "(`lake demo`, or a fresh YIMEN_CATALOG_URL then `lake simulate` + `lake run`)"
        )
    raise CatalogError(
        f"catalog store {shown} is at schema revision {current}, this code needs {head}: "
        "run `lake db upgrade`"
    )
