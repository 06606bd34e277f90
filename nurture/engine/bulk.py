"""Bulk writes of a batch's rows live in ``nurture.delivery.bulk`` (the dispatcher records its results with them
too); the engine's modules import them from here as well."""

from nurture.delivery.bulk import insert_rows, prefer_lz4, update_rows

__all__ = ["insert_rows", "prefer_lz4", "update_rows"]
