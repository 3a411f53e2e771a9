"""The PostgreSQL store against a real server: the contract, the model, and open_repository."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis.stateful import run_state_machine_as_test

from oppcore import Repository, open_repository
from oppcore.storage import BatchEventStore, EventStore, PostgresEventStore

pytest.register_assert_rewrite("tests.storage.contract")

from tests.storage import postgres_support  # noqa: E402
from tests.storage.contract import EventStoreContract, record  # noqa: E402
from tests.storage.test_stateful import RUN, StoreMachine  # noqa: E402


@pytest.fixture(scope="module")
def server() -> str:
    return postgres_support.server()


@pytest.fixture
def conninfo(server: str) -> Iterator[str]:
    with postgres_support.fresh_schema(server) as info:
        yield info


class TestPostgresEventStore(EventStoreContract):
    """The contract for the PostgreSQL store, each test in a new, empty schema."""

    @pytest.fixture(autouse=True)
    def _schema(self, conninfo: str) -> None:
        self.conninfo = conninfo

    def make_store(self, tmp_path: Path) -> PostgresEventStore:
        return PostgresEventStore(self.conninfo)

    def reopen(self, store: EventStore, tmp_path: Path) -> PostgresEventStore:
        assert isinstance(store, PostgresEventStore)
        store.close()
        return PostgresEventStore(self.conninfo)


class PostgresMachine(StoreMachine):
    """The model test's machine on a PostgreSQL schema of its own, reopened at random."""

    url = ""

    def __init__(self) -> None:
        self._schema = postgres_support.fresh_schema(self.url)
        self.conninfo = self._schema.__enter__()
        super().__init__()

    def open_store(self) -> BatchEventStore:
        return PostgresEventStore(self.conninfo)

    def teardown(self) -> None:
        try:
            super().teardown()
        finally:
            self._schema.__exit__(None, None, None)


def test_the_postgres_store_agrees_with_the_model(server: str) -> None:
    """Random appends, batches and reads on PostgresEventStore match a dict of lists."""
    PostgresMachine.url = server
    run_state_machine_as_test(PostgresMachine, settings=RUN)


def test_open_repository_opens_a_postgres_url(conninfo: str) -> None:
    """``open_repository("postgresql://...")`` is a repository on a PostgresEventStore."""
    url = postgres_support.as_url(conninfo)
    with open_repository(url) as repo:
        assert isinstance(repo, Repository)
        assert isinstance(repo.store, PostgresEventStore)
        repo.store.append("a", [record("a", 1)], expected_version=0)
    with open_repository(url) as again:
        assert [item.stream_id for item in again.store.read_all()] == ["a"]


def test_create_schema_is_idempotent_and_records_the_version(conninfo: str) -> None:
    """The schema is made on first use; making it again changes nothing."""
    import psycopg

    with PostgresEventStore(conninfo) as store:
        store.append("a", [record("a", 1)], expected_version=0)
        store.create_schema()
        store.create_schema()
        assert [item.stream_id for item in store.read_all()] == ["a"]
    with psycopg.connect(conninfo) as connection:
        row = connection.execute(
            "SELECT value FROM oppcore_meta WHERE key = 'schema_version'"
        ).fetchone()
    assert row == ("2",)
