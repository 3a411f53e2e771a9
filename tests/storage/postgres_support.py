"""A real PostgreSQL server for the tests: where it is, and a fresh, empty schema per test.

The server comes from ``OPPCORE_TEST_POSTGRES`` (a libpq URL such as
``postgresql://oppcore@127.0.0.1:54329/postgres``; ``.ci/run`` starts a throwaway cluster and
sets it).  Without a reachable server the PostgreSQL tests skip, saying why, unless ``CI``
is set: in CI a missing server is a failure.  ``OPPCORE_TEST_POSTGRES_CTL`` is the ``pg_ctl``
command line for that cluster (``pg_ctl -D DATADIR``, perhaps behind ``runuser``), for the
tests that restart the server.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

SERVER_VARIABLE = "OPPCORE_TEST_POSTGRES"
CTL_VARIABLE = "OPPCORE_TEST_POSTGRES_CTL"


def server() -> str:
    """The server's URL, or skip (fail in CI) with the reason it cannot be used."""
    url = os.environ.get(SERVER_VARIABLE, "")
    reason = None
    if not url:
        reason = f"no PostgreSQL server: set {SERVER_VARIABLE} (.ci/run starts one)"
    else:
        try:
            import psycopg

            with psycopg.connect(url, connect_timeout=5) as connection:
                connection.execute("SELECT 1")
        except ImportError:
            reason = "psycopg is not installed: pip install -e '.[postgres]'"
        except Exception as exc:
            reason = f"the PostgreSQL server {url!r} cannot be reached: {exc}"
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs a PostgreSQL server: {reason}")
        pytest.skip(reason)
    return url


@contextmanager
def fresh_schema(url: str) -> Iterator[str]:
    """A connection string whose tables live in a new, empty schema, dropped afterwards."""
    import psycopg
    from psycopg.conninfo import make_conninfo

    name = f"oppcore_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {name}")
    try:
        yield make_conninfo(url, options=f"-c search_path={name}")
    finally:
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


def as_url(conninfo: str) -> str:
    """The same connection as a ``postgresql://`` URL, for ``open_repository``."""
    from urllib.parse import quote

    from psycopg.conninfo import conninfo_to_dict

    parts = conninfo_to_dict(conninfo)
    user = parts.pop("user", "")
    password = parts.pop("password", "")
    host = parts.pop("host", "localhost")
    port = parts.pop("port", "5432")
    dbname = parts.pop("dbname", "postgres")
    auth = quote(str(user)) + (f":{quote(str(password))}" if password else "")
    query = "&".join(f"{key}={quote(str(value))}" for key, value in parts.items())
    return f"postgresql://{auth}@{host}:{port}/{dbname}" + (f"?{query}" if query else "")


def pg_ctl(*args: str) -> None:
    """Run the cluster's pg_ctl (``OPPCORE_TEST_POSTGRES_CTL``), or skip without it."""
    command = os.environ.get(CTL_VARIABLE)
    if not command:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs {CTL_VARIABLE} to restart the PostgreSQL server")
        pytest.skip(f"set {CTL_VARIABLE} to the cluster's pg_ctl command to restart the server")
    subprocess.run([*shlex.split(command), *args], check=True, capture_output=True, timeout=120)
