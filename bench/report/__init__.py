"""Reports: read run records (never rerun anything) and write figures, tables and HTML."""
from .build import build_report

__all__ = ["build_report"]
