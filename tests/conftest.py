"""Suite-wide hooks: the closing summary names the outcome of the headless-browser test, so a CI log shows
it passed (and was not skipped) without a second pytest run."""

from __future__ import annotations

import pytest

BROWSER_TEST = "tests/test_report_html.py::test_renders_in_headless_chromium"
_outcomes: dict[str, str] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.nodeid == BROWSER_TEST and (report.when == "call" or report.outcome != "passed"):
        _outcomes[report.nodeid] = report.outcome


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if BROWSER_TEST in _outcomes:
        terminalreporter.write_line(f"headless Chromium report test: {_outcomes[BROWSER_TEST].upper()}")
