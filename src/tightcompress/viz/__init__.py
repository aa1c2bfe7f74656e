"""Pictures: the static HTML report that compares runs, with embedded plots."""

from tightcompress.viz.report_html import build_html, write_html
from tightcompress.viz.runs import Run, json_kind, layer_name, load_report_json, runs_from_files

__all__ = [
    "Run",
    "build_html",
    "json_kind",
    "layer_name",
    "load_report_json",
    "runs_from_files",
    "write_html",
]
