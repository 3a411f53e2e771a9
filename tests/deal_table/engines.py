"""The dataframe engines the deal-table tests hold equal to the object analytics."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

pytest.importorskip("polars")
pytest.importorskip("pyarrow")
duckdb = pytest.importorskip("duckdb")

#: Each engine's frame made from a polars deal frame.
ENGINES: dict[str, Callable[[Any], Any]] = {
    "polars": lambda frame: frame,
    "polars-lazy": lambda frame: frame.lazy(),
    "pyarrow": lambda frame: frame.to_arrow(),
    "pandas": lambda frame: frame.to_pandas(use_pyarrow_extension_array=True),
    "duckdb": lambda frame: duckdb.connect().from_arrow(frame.to_arrow()),
}
#: The four engines the Hypothesis properties run on (lazy polars is polars' own plan).
EAGER_AND_DUCKDB = {name: make for name, make in ENGINES.items() if name != "polars-lazy"}


def as_arrow(frame: Any) -> Any:
    """Any engine's frame (collected when lazy) as a pyarrow table."""
    import narwhals as nw

    wrapped = nw.from_native(frame)
    if isinstance(wrapped, nw.LazyFrame):
        wrapped = wrapped.collect()
    return wrapped.to_arrow()
