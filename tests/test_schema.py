"""The catalog store's schema is migrated by Alembic; an older store says so in one line."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, inspect

from catalog.errors import CatalogError
from catalog.schema import current_revision, head_revision, target_metadata, upgrade
from catalog.store import CatalogStore
from etl.cli import main


def test_a_new_store_is_created_at_the_newest_revision(tmp_path) -> None:
    store = CatalogStore(f"sqlite:///{tmp_path / 'c.db'}")
    assert current_revision(store.engine) == head_revision()
    assert set(target_metadata().tables) <= set(inspect(store.engine).get_table_names())


def test_an_older_store_is_refused_until_lake_db_upgrade(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    upgrade(engine, "0001")  # a store as the code before grants left it
    assert "grants" not in inspect(engine).get_table_names()
    with pytest.raises(CatalogError, match=r"revision 0001, this code needs .*lake db upgrade"):
        CatalogStore(url)
    result = CliRunner().invoke(main, ["db", "upgrade"], env={"YIMEN_CATALOG_URL": url})
    assert result.exit_code == 0, result.output
    assert f"at revision {head_revision()}" in result.output
    store = CatalogStore(url)  # opens now, grants table and all
    assert {"grants", "distributions", "audit_log"} <= set(inspect(store.engine).get_table_names())


def test_a_store_from_before_migrations_is_one_line_to_rebuild(tmp_path) -> None:
    from catalog.store import Base

    url = f"sqlite:///{tmp_path / 'legacy.db'}"
    Base.metadata.create_all(create_engine(url))  # the old create_all, no revision table
    with pytest.raises(CatalogError, match="created before schema migrations; rebuild") as err:
        CatalogStore(url)
    assert "\n" not in str(err.value)


def test_the_migrations_match_the_models(tmp_path) -> None:
    """Autogenerate finds nothing to do on a migrated store: no model change lacks a revision."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    store = CatalogStore(f"sqlite:///{tmp_path / 'c.db'}")
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection)
        diff = [
            d
            for d in compare_metadata(context, target_metadata())
            if not (d[0] == "remove_table" and d[1].name.startswith("iceberg_"))
        ]
    assert diff == []
