"""Former home of the report; it lives in :mod:`drdfl.report` now.

These names stay importable for callers not yet moved to :mod:`drdfl.report`.
"""

from drdfl.report import load_run as load_outputs
from drdfl.report import summary_text as print_summary
from drdfl.report import write_report as build_report

__all__ = ["build_report", "load_outputs", "print_summary"]
