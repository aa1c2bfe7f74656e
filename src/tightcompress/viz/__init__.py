"""Pictures: the static HTML report with embedded plots."""

from tightcompress.viz.report_html import build_html, load_report_json, write_html

__all__ = ["build_html", "load_report_json", "write_html"]
