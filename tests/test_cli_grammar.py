"""One command-line grammar: shared names, defaults in every --help, stdout for results, documented exits."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from tightcompress.cli import main as cli_main
from tightcompress.cli.common import EXIT_CODES
from tightcompress.cli.main import build_parser, main


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_help_shows_every_default_and_the_exit_codes():
    for name, parser in _subparsers().items():
        text = parser.format_help()
        assert "exit status:" in text and "130" in text, name
        formatter = parser.formatter_class(prog=name)
        for action in parser._actions:
            hidden = action.help == argparse.SUPPRESS
            if not action.option_strings or hidden or action.default in (None, False, argparse.SUPPRESS):
                continue
            assert "default" in formatter._get_help_string(action).lower(), (name, action.option_strings)
    assert "exit status:" in build_parser().format_help()


def test_methods_take_spaces_or_commas_everywhere():
    for command, extra in [("sweep", ["x.npy", "--csv", "o.csv"]), ("demo", [])]:
        parser = build_parser()
        for spelling in (["tight,nm"], ["tight", "nm"], ["tight,", "nm"]):
            args = parser.parse_args([command, *extra, "--methods", *spelling])
            assert args.methods == ["tight", "nm"], (command, spelling)


def test_unknown_method_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["demo", "--methods", "tight,magic"])
    assert exit_info.value.code == 2 and "invalid choice 'magic'" in capsys.readouterr().err


def test_old_spellings_still_work_with_one_deprecation_line(tmp_path, capsys):
    np.save(tmp_path / "w.npy", np.random.default_rng(0).standard_normal((24, 16)).astype(np.float32))
    argv = ["simulate", str(tmp_path / "w.npy"), "--sparsity", "0.7", "--no-vs-cc", "--iterations", "500"]
    assert main([*argv, "--batch", "3", "--json", str(tmp_path / "old.json")]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("deprecated") == 1 and "use --vectors" in captured.err
    assert main([*argv, "--vectors", "3", "--json", str(tmp_path / "new.json"), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""  # --quiet: nothing on stderr
    assert "M from --vectors 3" in captured.out and "-> " in captured.out
    old, new = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("old", "new"))
    assert old["layers"][0]["m"] == new["layers"][0]["m"] == 3
    parser = build_parser()
    assert parser.parse_args(["export", "p.safetensors", "--rtl", "d"]).out_dir == "d"
    assert parser.parse_args(["compress", "--out", "d"]).out_dir == "d"
    assert parser.parse_args(["demo", "--out", "d"]).out_dir == "d"
    assert "--rtl" not in _subparsers()["export"].format_help()  # aliases are hidden from --help


def test_summary_lines_go_to_stdout(tmp_path, capsys):
    np.save(tmp_path / "w.npy", np.random.default_rng(0).standard_normal((24, 16)).astype(np.float32))
    common = ["--sparsity", "0.7", "--iterations", "500", "--quiet"]
    assert main(["pack", str(tmp_path / "w.npy"), *common, "--json", str(tmp_path / "p.json"),
                 "--out", str(tmp_path / "p.safetensors")]) == 0  # fmt: skip
    assert (
        main(["export", str(tmp_path / "p.safetensors"), "--out-dir", str(tmp_path / "rtl"), "--quiet"]) == 0
    )
    assert main(["report", str(tmp_path / "p.json"), "--html", str(tmp_path / "r.html"), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    lines = captured.out.strip().splitlines()
    assert len(lines) == 3 and "rate" in lines[0] and "manifest.json" in lines[1] and "r.html" in lines[2]


def test_internal_errors_are_one_line_and_exit_1(monkeypatch, capsys):
    def broken(_args):
        raise ValueError("something impossible\nsecond line")

    parser = build_parser()
    monkeypatch.setattr(cli_main, "build_parser", lambda modules=(): parser)
    parser.set_defaults(func=broken)
    for sub in _subparsers_of(parser).values():
        sub.set_defaults(func=broken)
    monkeypatch.delenv("TIGHTCOMPRESS_DEBUG", raising=False)
    assert main(["report", "x.json", "--html", "y.html"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "internal error: ValueError: something impossible" in err[0]


def _subparsers_of(parser):
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def test_exit_codes_are_documented():
    for code in ("0", "1", "2", "130"):
        assert f"\n  {code} " in EXIT_CODES


def test_sigint_that_a_library_turns_into_another_error_is_still_interrupted(monkeypatch, capsys):
    """numpy turns a Ctrl-C during its C-extension import into an ImportError: still `interrupted`, 130."""
    import os
    import signal

    def import_hit_by_ctrl_c(_args):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            signal.sigtimedwait([], 0.1)  # let the handler run
        except KeyboardInterrupt:
            raise ImportError("IMPORTANT: PLEASE READ THIS FOR ADVICE ON HOW TO SOLVE THIS ISSUE!") from None

    parser = build_parser()
    monkeypatch.setattr(cli_main, "build_parser", lambda modules=(): parser)
    for sub in _subparsers_of(parser).values():
        sub.set_defaults(func=import_hit_by_ctrl_c)
    previous = signal.getsignal(signal.SIGINT)
    try:
        assert main(["report", "x.json", "--html", "y.html"]) == 130
    finally:
        signal.signal(signal.SIGINT, previous)
    assert capsys.readouterr().err.strip() == "tightcompress report: interrupted"
