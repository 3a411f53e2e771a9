"""Moving opportunities in and out: CSV files and whole-repository JSON documents."""

from oppcore.io.csvfiles import (
    MAVEN_CRM,
    OPPCORE_CSV,
    SALESFORCE,
    CsvMapping,
    ImportResult,
    Rejected,
    load_mapping,
    read_csv,
    read_salesforce_history,
    write_csv,
)
from oppcore.io.documents import dump_json, load_json

__all__ = [
    "MAVEN_CRM",
    "OPPCORE_CSV",
    "SALESFORCE",
    "CsvMapping",
    "ImportResult",
    "Rejected",
    "dump_json",
    "load_json",
    "load_mapping",
    "read_csv",
    "read_salesforce_history",
    "write_csv",
]
