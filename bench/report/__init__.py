"""Reports: read run records (never rerun anything) and write figures, tables and HTML.

Imports :mod:`bench.score` and :mod:`bench.run` (record formats), never a later room.
"""
from .build import build_report

__all__ = ["build_report"]
