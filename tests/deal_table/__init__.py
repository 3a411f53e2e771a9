"""The deal table (issue 12): projector, stores, queries, frames."""
