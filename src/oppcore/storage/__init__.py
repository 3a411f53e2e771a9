"""Storage: event records, the store protocol, the backends, and the repository.

Imports the domain; the domain never imports storage.
"""

from oppcore.storage.jsonl import JsonEventStore
from oppcore.storage.memory import MemoryEventStore
from oppcore.storage.postgres import PostgresEventStore
from oppcore.storage.records import BatchEventStore, EventRecord, EventStore
from oppcore.storage.repository import Repository, event_record, open_repository
from oppcore.storage.sqlite import SqliteEventStore

__all__ = [
    "BatchEventStore",
    "EventRecord",
    "EventStore",
    "JsonEventStore",
    "MemoryEventStore",
    "PostgresEventStore",
    "Repository",
    "SqliteEventStore",
    "event_record",
    "open_repository",
]
