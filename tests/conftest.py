"""Suite-wide hooks: Ctrl-C reaches the tests that send it, and the closing summary names the outcome of the
headless-browser test, so a CI log shows it passed (and was not skipped) without a second pytest run."""

from __future__ import annotations

import signal

import numpy as np
import pytest

BROWSER_TEST = "tests/test_report_html.py::test_renders_in_headless_chromium"
_outcomes: dict[str, str] = {}


def pytest_configure(config: pytest.Config) -> None:
    """Let SIGINT interrupt, also when pytest was started with it ignored (a shell's `&` or `nohup` job).

    The interrupt tests send SIGINT to the tool, in this process or in a child; a child inherits an ignored
    SIGINT, and Python then never raises KeyboardInterrupt, so they would fail for the runner's sake.
    A Python handler here is reset to the default in every child at exec.
    """
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.nodeid == BROWSER_TEST and (report.when == "call" or report.outcome != "passed"):
        _outcomes[report.nodeid] = report.outcome


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if BROWSER_TEST in _outcomes:
        terminalreporter.write_line(f"headless Chromium report test: {_outcomes[BROWSER_TEST].upper()}")


@pytest.fixture
def work(tmp_path, monkeypatch):
    """A folder with a matrix, a packed file of it and a pack report; the cwd for relative paths."""
    import tightcompress as tc
    from cli_cases import sparse_matrix
    from tightcompress.cli.main import main
    from tightcompress.format.io import save_packed

    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "m.npy", sparse_matrix())
    packed = tc.pack(sparse_matrix(), method="tight", group=8, tile=16, iterations=3000, name="m")
    save_packed(tmp_path / "p.safetensors", {"m": packed})
    assert main(["pack", "m.npy", "--iterations", "2000", "--json", "r.json", "--quiet"]) == 0
    return tmp_path
