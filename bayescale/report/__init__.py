"""The self-contained HTML posterior report.

>>> from bayescale.report import write_report
>>> write_report(fit, "report.html")  # doctest: +SKIP
"""

from .html import SECTIONS, default_targets, render_report, write_report

__all__ = ["SECTIONS", "default_targets", "render_report", "write_report"]
