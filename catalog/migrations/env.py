"""Alembic environment of the catalog store: the models in ``catalog/`` are the target.

Run through :mod:`catalog.schema` (``lake db upgrade``, or automatically on an empty
database), which hands in a connection; Iceberg's own ``iceberg_*`` tables in the same
database are pyiceberg's and are left alone.
"""

from __future__ import annotations

from alembic import context

from catalog.schema import target_metadata

config = context.config


def _ours(obj, name, type_, reflected, compare_to) -> bool:  # noqa: ANN001 - alembic hook
    return not (type_ == "table" and name.startswith("iceberg_"))


def run_migrations() -> None:
    connection = config.attributes["connection"]
    context.configure(
        connection=connection,
        target_metadata=target_metadata(),
        include_object=_ours,
        render_as_batch=True,  # SQLite alters tables by copying them
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
