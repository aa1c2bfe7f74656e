"""Defaults that work together and comparisons that are fair by default (issue 25, the architect's hour):
lossless N:M for `--height auto`, defaults in `simulate --help`, one dense baseline whatever the method,
each method's dropped |w| beside its gains, `simulate --match dropped`, and the search that did not help."""

from __future__ import annotations

import json

import numpy as np
import pytest

import tightcompress as tc
from tightcompress.baselines.structured import lossless_nm_height
from tightcompress.cli.main import main
from tightcompress.readers.topology import write_topology, zoo_topology
from tightcompress.report import unimproved_search_note

FAST = ["--iterations", "2000", "--jobs", "1", "--quiet"]


def _run(argv, capsys) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _sparse(K: int, N: int, density: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((K, N)).astype(np.float32)
    W[rng.random(W.shape) >= density] = 0.0
    return W


@pytest.mark.parametrize("permute", [False, True])
def test_nm_auto_height_is_the_least_lossless_n(permute):
    W = _sparse(200, 24, 0.3, 0)
    packed = tc.pack(W, method="nm", group=8, height="auto", tile=8, permute=permute, iterations=3000)
    report = packed.report()
    assert report["dropped_nnz"] == 0
    np.testing.assert_array_equal(packed.to_dense(), W)
    natural = lossless_nm_height(W, 8)
    # the most nonzeros any 8 consecutive rows hold in one column, counted another way
    padded = np.vstack([W != 0, np.zeros((-200 % 8, 24), dtype=bool)])
    assert natural == max(padded[g : g + 8, c].sum() for g in range(0, len(padded), 8) for c in range(24))
    if permute:
        assert report["height"] <= natural  # the searched order never needs more than the natural one
    else:
        assert report["height"] == natural
        smaller = tc.pack(W, method="nm", group=8, height=natural - 1, tile=8).report()
        assert smaller["dropped_nnz"] > 0  # one less drops something: auto is the least


def test_simulate_topology_with_nm_runs_on_the_defaults_and_help_shows_them(tmp_path, capsys):
    topology = tmp_path / "net.csv"
    write_topology(topology, zoo_topology("demo"))
    out = tmp_path / "s.json"
    code, _, err = _run(
        ["simulate", topology, "--sparsity", "0.9", "--method", "nm", "--json", out, *FAST], capsys
    )
    assert code == 0, err
    report = json.loads(out.read_text())
    assert all(layer["dropped_nnz"] == 0 for layer in report["layers"])  # nm auto: lossless like tight
    with pytest.raises(SystemExit):
        main(["simulate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for shown in ("(default: tight)", "(default: 8)", "(default: auto)", "(default: 0.5)"):
        assert shown in text


def test_dense_baseline_does_not_change_with_the_method(tmp_path, capsys):
    np.save(tmp_path / "w.npy", _sparse(288, 48, 0.15, 1))
    dense = {}
    for method in ("tight", "nm", "column-combining"):
        out = tmp_path / f"{method}.json"
        argv = ["simulate", tmp_path / "w.npy", "--method", method, "--height", "1", "--vectors", "16"]
        code, _, err = _run([*argv, "--json", out, *FAST], capsys)
        assert code == 0, err
        total = json.loads(out.read_text())["total"]
        dense[method] = (total["dense_cycles"], total["dense_utilization_pe"], total["dense_useful_macs"])
    assert len(set(dense.values())) == 1, dense
    assert dense["tight"][2] == 16 * np.count_nonzero(np.load(tmp_path / "w.npy"))


def test_every_row_shows_the_dropped_weight_beside_the_gains(tmp_path, capsys):
    np.save(tmp_path / "w.npy", _sparse(288, 48, 0.15, 2))
    out = tmp_path / "s.json"
    argv = ["simulate", tmp_path / "w.npy", "--method", "nm", "--height", "1", "--json", out, *FAST]
    code, stdout, err = _run(argv, capsys)
    assert code == 0, err
    report = json.loads(out.read_text())
    head = stdout.splitlines()[0].split()
    assert head[:7] == ["layer", "M", "cycles", "vs", "dense", "dropped", "vs"] and "CC" in head
    total = report["total"]
    assert f"dropped |w| {total['dropped_magnitude_fraction']:.1%}" in stdout
    assert f"column combining's {total['cc_dropped_magnitude_fraction']:.1%}" in stdout
    assert 0 < total["dropped_magnitude_fraction"] and 0 < total["cc_dropped_magnitude_fraction"] < 1


def test_match_dropped_gives_each_layer_the_least_height_within_column_combinings_loss(tmp_path, capsys):
    W = _sparse(512, 64, 0.2, 3)
    np.save(tmp_path / "w.npy", W)
    out = tmp_path / "s.json"
    argv = ["simulate", tmp_path / "w.npy", "--method", "tight", "--match", "dropped", "--json", out, *FAST]
    code, stdout, err = _run(argv, capsys)
    assert code == 0, err
    layer = json.loads(out.read_text())["layers"][0]
    assert layer["dropped_magnitude_fraction"] <= layer["cc_dropped_magnitude_fraction"]
    assert isinstance(layer["height"], int)
    if layer["height"] > 1:  # one lower drops more than column combining: the height is the least
        lower = tc.pack(W, method="tight", group=8, height=layer["height"] - 1, tile=32, iterations=2000)
        assert lower.report()["dropped_magnitude_fraction"] > layer["cc_dropped_magnitude_fraction"]
    assert "--match dropped" in stdout


@pytest.mark.parametrize("extra", [["--no-vs-cc"], ["--method", "dense"]])
def test_match_dropped_refuses_what_it_cannot_match(tmp_path, capsys, extra):
    np.save(tmp_path / "w.npy", _sparse(64, 16, 0.3, 4))
    code, _, err = _run(["simulate", tmp_path / "w.npy", "--match", "dropped", *extra, *FAST], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "--match dropped" in err


def test_a_search_that_did_not_improve_its_start_is_named():
    layers = [
        {"name": "a", "search_iterations": 5000, "search_improved": False},
        {"name": "b", "search_iterations": 5000, "search_improved": True},
        {"name": "c", "search_iterations": 0, "search_improved": False},  # at its floor: never ran
    ]
    note = unimproved_search_note(layers)
    assert note is not None and "1 layer(s): a " in note
    assert unimproved_search_note(layers[1:]) is None
    W = _sparse(128, 32, 0.3, 5)
    for iterations in (0, 1, 3000):
        report = tc.pack(W, method="tight", group=8, height=2, tile=32, iterations=iterations).report()
        assert report["search_improved"] == (report["search_final_cost"] < report["search_initial_cost"])
