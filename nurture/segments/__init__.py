"""Segments: named rule trees over leads, compiled to one SQL query."""
