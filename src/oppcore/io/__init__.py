"""Moving opportunities in and out: CSV files and whole-repository JSON documents."""

from oppcore.io.documents import dump_json, load_json

__all__ = ["dump_json", "load_json"]
