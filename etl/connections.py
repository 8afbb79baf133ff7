"""Connection details of department systems, decoupled from Airflow's Connection class.

Sources are reached through Airflow connection ids (docs/architecture.md §8). The DAG looks
the id up through the Task SDK and hands a :class:`SourceConnection` to the extractors, so the
extractors stay plain functions that tests can call with a SQLite file or a folder.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy.engine import URL

from catalog.errors import ConnectionNotFound, SourceError

DEFAULT_CONNECT_TIMEOUT = 30  # seconds to connect (SQLite: to wait for a lock)
DEFAULT_STATEMENT_TIMEOUT = 1800  # seconds one statement (one fetch of a stream) may run
_SQLALCHEMY_DRIVERS = {
    "sqlite": "sqlite",
    "postgres": "postgresql+psycopg",
    "postgresql": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
}

_ADBC_DRIVERS = {"sqlite": "sqlite", "postgres": "postgresql", "postgresql": "postgresql"}


@dataclass(frozen=True)
class SourceConnection:
    conn_id: str
    conn_type: str
    host: str | None = None
    port: int | None = None
    login: str | None = None
    password: str | None = field(default=None, repr=False)
    schema: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def sqlalchemy_url(self) -> URL:
        """SQLAlchemy URL for a database connection (SQLite: ``host`` is the file path)."""
        driver = _SQLALCHEMY_DRIVERS.get(self.conn_type)
        if driver is None:
            raise SourceError(
                f"connection '{self.conn_id}' has type '{self.conn_type}', not a SQL database "
                f"(supported: {', '.join(sorted(_SQLALCHEMY_DRIVERS))})"
            )
        if driver == "sqlite":
            return URL.create("sqlite", database=self.host or self.schema)
        return URL.create(
            driver,
            username=self.login,
            password=self.password,
            host=self.host,
            port=self.port,
            database=self.schema,
        )

    def connect_args(self) -> dict[str, Any]:
        """Driver arguments that bound how long connecting and one statement may take.

        A department database that hangs must not hold a pool slot all night. Seconds from
        the connection's extra (``connect_timeout``, ``statement_timeout``), else defaults.
        """
        connect = int(self.extra.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT))
        statement = int(self.extra.get("statement_timeout", DEFAULT_STATEMENT_TIMEOUT))
        driver = _SQLALCHEMY_DRIVERS.get(self.conn_type)
        if driver == "sqlite":  # how long to wait for a lock the department's system holds
            return {"timeout": connect}
        if driver == "postgresql+psycopg":
            return {
                "connect_timeout": connect,
                "options": f"-c statement_timeout={statement * 1000}",  # milliseconds
            }
        if driver == "mysql+pymysql":
            return {"connect_timeout": connect, "read_timeout": statement}
        return {}

    def arrow_driver(self) -> str | None:
        """The ADBC driver that reads this database straight into Arrow, if there is one.

        ``None`` means the generic SQLAlchemy/DB-API reader: another database type, the
        driver package missing, or the connection's extra says ``{"reader": "dbapi"}`` (the
        way back for one source should a driver misread it).
        """
        driver = _ADBC_DRIVERS.get(self.conn_type)
        if driver is None or self.extra.get("reader") == "dbapi":
            return None
        if importlib.util.find_spec(f"adbc_driver_{driver}") is None:
            return None
        return driver

    def adbc_connect(self) -> Any:
        """An ADBC DB-API connection (autocommit: one statement, one consistent read) with
        the same connect and statement bounds as :meth:`connect_args`."""
        connect = int(self.extra.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT))
        statement = int(self.extra.get("statement_timeout", DEFAULT_STATEMENT_TIMEOUT))
        driver = self.arrow_driver()
        if driver == "sqlite":
            import adbc_driver_sqlite.dbapi

            path = Path(self.host or self.schema or "")
            if not path.is_file():  # SQLite would otherwise create an empty database here
                raise SourceError(f"connection '{self.conn_id}': no SQLite database at {path}")
            uri = f"file:{quote(str(path))}?mode=ro"
            conn = adbc_driver_sqlite.dbapi.connect(uri, autocommit=True)
            with conn.cursor() as cursor:  # wait this long for a lock the system holds
                cursor.execute(f"PRAGMA busy_timeout = {connect * 1000}")
                cursor.fetchall()
            return conn
        if driver == "postgresql":
            import adbc_driver_postgresql.dbapi

            # libpq's URI: percent-encoded (libpq reads no "+" as a space, as SQLAlchemy writes)
            user = quote(self.login or "", safe="")
            secret = f":{quote(self.password, safe='')}" if self.password else ""
            auth = f"{user}{secret}@" if user else ""
            where = f"{auth}{self.host or ''}" + (f":{self.port}" if self.port else "")
            options = quote(f"-c statement_timeout={statement * 1000}", safe="")
            uri = (
                f"postgresql://{where}/{quote(self.schema or '', safe='')}"
                f"?connect_timeout={connect}&options={options}"
            )
            return adbc_driver_postgresql.dbapi.connect(uri, autocommit=True)
        raise SourceError(f"connection '{self.conn_id}' has no Arrow (ADBC) driver")

    def folder(self) -> Path:
        """The drop folder of a file-drop (``fs``) connection."""
        path = self.extra.get("path") or self.host
        if self.conn_type != "fs" or not path:
            raise SourceError(
                f"connection '{self.conn_id}' is not a file-drop folder "
                "(expected conn_type 'fs' with extra {\"path\": ...})"
            )
        return Path(path)


def lookup_airflow_connection(conn_id: str) -> SourceConnection:
    """Resolve a connection id through Airflow (env vars, secrets backend, metadata DB)."""
    from airflow.exceptions import AirflowNotFoundException
    from airflow.sdk import BaseHook

    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException as exc:
        raise ConnectionNotFound(
            f"connection '{conn_id}' is not defined. Hint: set AIRFLOW_CONN_{conn_id.upper()} "
            "or run `lake simulate`, which writes var/departments/connections.json"
        ) from exc
    return SourceConnection(
        conn_id=conn_id,
        conn_type=conn.conn_type or "",
        host=conn.host,
        port=conn.port,
        login=conn.login,
        password=conn.password,
        schema=conn.schema,
        extra=conn.extra_dejson,
    )
