"""`export --hdl` and `verify`: the generated Verilog runs every method bit-exactly in Icarus Verilog, with
the cycle model's cycle count, and a corrupted file fails.

These tests run wherever `iverilog` is installed and always in CI (`.ci/run` installs Debian's
`iverilog`; with `CI` set a missing simulator is a failure, not a skip).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from importlib import resources

import numpy as np
import pytest

from tightcompress.api import pack
from tightcompress.cli.main import main
from tightcompress.export.hdl import MODULES, module_text
from tightcompress.export.rtl import export_rtl, load_rtl
from tightcompress.export.verify import verify_export
from tightcompress.hw.cycles import packed_cycles

IN_CI = bool(os.environ.get("CI"))
HAVE_IVERILOG = bool(shutil.which("iverilog") and shutil.which("vvp"))


@pytest.fixture
def iverilog():
    if not HAVE_IVERILOG:
        if IN_CI:
            pytest.fail("CI is set but iverilog is not on PATH: .ci/run should have installed it")
        pytest.skip("Icarus Verilog is not installed (CI installs it)")


def _conv_matrix(seed: int, sparsity: float) -> np.ndarray:
    """A conv layer's `K x N` matrix: weight (12, 3, 3, 3) -> K = 27 (not a multiple of 4), N = 12."""
    rng = np.random.default_rng(seed)
    weight = rng.standard_normal((12, 3, 3, 3)).astype(np.float32)
    w = weight.reshape(12, -1).T.copy()
    w[rng.random(w.shape) < sparsity] = 0.0
    return w


def _all_methods() -> dict:
    """Every method on the conv layer; on a 4 x 4 array every one has several tiles and row folds."""
    from tightcompress.subword_packer import pack_subwords

    w = _conv_matrix(3, 0.7)
    q = np.clip(np.rint(w / np.abs(w).max() * 119), -119, 119).astype(np.int8)
    layers = {
        "tight": pack(w, method="tight", group=4, tile=4, iterations=400, seed=1),
        "tight_capped": pack(w, method="tight", group=4, height=1, tile=4, iterations=400, seed=1),
        "tight_wide": pack(w, method="tight", group=8, tile=8, iterations=400, seed=1),  # tile > C
        "column_combining": pack(w, method="column-combining", alpha=4, tile=4),
        "nm": pack(w, method="nm", group=4, height=2, tile=4),
        "dense": pack(w, method="dense", tile=4),
        "subword": pack_subwords(q, group=4, height="auto", tile=4, iterations=400).packed,
    }
    for name, layer in layers.items():
        layer.info["name"] = name
    return layers


@pytest.mark.slow
def test_every_method_runs_bit_exact_with_the_model_cycles(tmp_path, iverilog):
    layers = _all_methods()
    assert layers["tight"].K % 4 and layers["tight"].K > 4 and layers["tight"].N > 4
    out = tmp_path / "rtl"
    manifest = export_rtl(layers, out, m=3, array=(4, 4), hdl=True)
    assert manifest["array"] == {"rows": 4, "cols": 4}
    verdicts = verify_export(out)
    assert [v.name for v in verdicts] == list(layers)
    parsed = load_rtl(out)
    for v in verdicts:
        cycles = packed_cycles(parsed[v.name].packed, (4, 4), 3)
        assert v.ok, v
        assert v.matched == v.vectors == 3
        assert v.cycles == v.model_cycles == cycles.cycles
        assert v.folds == cycles.folds and v.folds > v.passes >= 2, v  # several passes, row folds
    assert layers["tight_capped"].nnz < layers["tight"].nnz  # the cap dropped weights
    # Tiles narrower than the array share a pass when they read their inputs alike (dense, nm, CC).
    by_name = {v.name: v for v in verdicts}
    assert by_name["dense"].passes == 3  # N = 12 columns on 4 array columns


def _small_export(tmp_path, **options):
    w = _conv_matrix(5, 0.6)
    layers = {"conv": pack(w, method="tight", group=4, tile=4, iterations=200, seed=2)}
    out = tmp_path / "rtl"
    export_rtl(layers, out, m=2, array=(4, 4), hdl=True, **options)
    return out


def _flip_word(path, line: int) -> None:
    words = path.read_text().splitlines()
    words[line] = format(int(words[line], 16) ^ 1, f"0{len(words[line])}x")
    path.write_text("\n".join(words) + "\n")


def test_verify_cli_passes_and_corruptions_fail(tmp_path, iverilog, capsys):
    out = _small_export(tmp_path)
    assert main(["verify", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("conv: PASS  2/2 vectors  simulated ")
    model = packed_cycles(load_rtl(out)["conv"].packed, (4, 4), 2).cycles
    assert f"simulated {model} cycles  model {model} cycles" in lines[0]
    assert lines[-1] == "1 of 1 layer(s) verified in iverilog"

    bad_y = tmp_path / "bad_y"
    shutil.copytree(out, bad_y)
    _flip_word(bad_y / "conv" / "y.hex", 1)  # one bit of one expected output
    assert main(["verify", str(bad_y)]) == 3
    text = capsys.readouterr().out
    assert "conv: FAIL  1/2 vectors" in text and "FAILED: conv" in text

    bad_w = tmp_path / "bad_w"
    shutil.copytree(out, bad_w)
    weights = bad_w / "conv" / "tile000_weights.hex"
    words = weights.read_text().splitlines()
    row = next(i for i, w in enumerate(words) if int(w, 16))  # a row holding a nonzero weight
    column = next(c for c in range(4) if int(words[row], 16) >> (8 * c) & 0xFF)
    words[row] = format(int(words[row], 16) ^ (1 << (8 * column + 6)), f"0{len(words[row])}x")
    weights.write_text("\n".join(words) + "\n")
    assert main(["verify", str(bad_w)]) == 3
    assert "conv: FAIL" in capsys.readouterr().out


def test_verify_without_a_simulator_says_how_to_install_one(tmp_path, monkeypatch, capsys):
    out = _small_export(tmp_path)
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    assert main(["verify", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "apt-get install iverilog" in err[0]


def test_verify_refuses_a_damaged_hex_file_in_one_line(tmp_path, capsys):
    out = _small_export(tmp_path)
    (out / "conv" / "tile000_lanes.hex").write_text("zz\n")
    assert main(["verify", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "damaged" in err[0]


def test_verify_refuses_an_export_without_hdl(tmp_path, capsys):
    w = _conv_matrix(5, 0.6)
    export_rtl({"conv": pack(w, method="dense", tile=4)}, tmp_path / "plain", m=1)
    manifest = json.loads((tmp_path / "plain" / "manifest.json").read_text())
    assert manifest["array"] == {"rows": 32, "cols": 32} and "hdl" not in manifest
    assert main(["verify", str(tmp_path / "plain")]) == 2
    assert "export it with `--hdl`" in capsys.readouterr().err


def test_export_hdl_files_listed_and_replaced(tmp_path):
    out = _small_export(tmp_path)
    manifest = json.loads((out / "manifest.json").read_text())
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(
        resources.files("tightcompress.schemas").joinpath("rtl-manifest.schema.json").read_text()
    )
    jsonschema.Draft202012Validator(schema).validate(manifest)
    assert manifest["array"] == {"rows": 4, "cols": 4}
    assert manifest["hdl"]["modules"] == [f"hdl/{name}" for name in MODULES]
    assert "conv/tc_layer_tb.v" in manifest["files"] and "conv/groups.hex" in manifest["files"]
    for name in MODULES:
        text = (out / "hdl" / name).read_text()
        assert text == module_text(name) and text.startswith(f"// {name[:-2]}:")
        assert text.count("\nmodule ") + text.startswith("module ") == 1  # one module per file
    # Re-exporting without --hdl removes what --hdl wrote (and only that).
    (out / "notes.txt").write_text("mine")
    export_rtl({"conv": pack(_conv_matrix(5, 0.6), method="dense", tile=4)}, out, m=1)
    assert not (out / "hdl").exists() and not (out / "conv" / "tc_layer_tb.v").exists()
    assert (out / "notes.txt").read_text() == "mine"


_PE_TB = """
module pe_tb;
    reg clk = 0, rst = 1, load = 0;
    reg [7:0] w = 0;
    reg [1:0] lane = 0;
    reg [31:0] a = 0;
    reg signed [31:0] psum = 0;
    wire [7:0] w_out;
    wire [1:0] lane_out;
    wire [31:0] a_out;
    wire v_out;
    wire signed [31:0] p_out;
    tc_pe #(.LANES(4)) pe (.clk(clk), .rst(rst), .load(load), .w_in(w), .lane_in(lane), .w_out(w_out),
        .lane_out(lane_out), .a_in(a), .a_valid_in(1'b1), .a_out(a_out), .a_valid_out(v_out),
        .psum_in(psum), .psum_out(p_out));
    always #5 clk = ~clk;
    initial begin
        @(negedge clk) rst = 0; load = 1; w = -8'sd127; lane = 2;
        @(negedge clk) load = 0; a = {8'd0, -8'sd128, 8'd0, 8'd0};
        psum = -32'sd2147483648 + 100;           // lane 2 = -128; -128 * -127 = 16256
        @(negedge clk) $display("wrap-up %0d", p_out);
        psum = 32'sd2147483647 - 100;
        @(negedge clk) $display("wrap-down %0d", p_out);
        $finish;
    end
endmodule
"""


def test_pe_accumulator_wraps_like_int32(tmp_path, iverilog):
    """Overflow: the int32 partial sum wraps (two's complement), as the bit-exact Python model does."""
    (tmp_path / "pe_tb.v").write_text(_PE_TB)
    (tmp_path / "tc_pe.v").write_text(module_text("tc_pe.v"))
    subprocess.run(["iverilog", "-g2005", "-o", "pe", "tc_pe.v", "pe_tb.v"], cwd=tmp_path, check=True)
    out = subprocess.run(["vvp", "-n", "pe"], cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    up = np.array([-(2**31) + 100], dtype=np.int64) + 16256
    down = (np.array([2**31 - 1 - 100], dtype=np.int64) + 16256).astype(np.int32)  # wraps to negative
    assert f"wrap-up {int(up[0])}" in out
    assert f"wrap-down {int(down[0])}" in out and int(down[0]) < 0


@pytest.mark.slow
def test_cli_export_hdl_on_a_checkpoint_nobody_made(tmp_path, iverilog, capsys):
    """An odd conv shape, packed from a state dict, exported with --hdl via the CLI, verified."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(11)
    conv = torch.nn.Conv2d(5, 7, (3, 2))  # K = 30 (not a multiple of G = 4), N = 7
    ckpt = tmp_path / "odd.pt"
    torch.save({"odd.weight": conv.weight.detach()}, ckpt)
    packed = tmp_path / "p.safetensors"
    assert main(["pack", str(ckpt), "--method", "tight", "--group", "4", "--tile", "2", "--sparsity",
                 "0.75", "--iterations", "300", "--out", str(packed),
                 "--json", str(tmp_path / "p.json")]) == 0  # fmt: skip
    out = tmp_path / "rtl"
    assert main(["export", str(packed), "--out-dir", str(out), "--vectors", "2", "--array", "5x3",
                 "--hdl"]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["verify", str(out)]) == 0
    assert "PASS  2/2 vectors" in capsys.readouterr().out


@pytest.mark.parametrize("stream", ["M + ROWS + COLS - 3", "M + ROWS + COLS - 1"])
def test_the_cycle_count_is_the_arrays_latency(tmp_path, iverilog, stream):
    """The stream phase of M + R + C - 2 cycles is exactly the array's latency: one cycle shorter and the
    last outputs leave too late (timing check), one longer and a cycle is wasted (timing check too)."""
    out = _small_export(tmp_path)
    testbench = out / "conv" / "tc_layer_tb.v"
    text = testbench.read_text()
    assert text.count("s < M + ROWS + COLS - 2;") == 1
    testbench.write_text(text.replace("s < M + ROWS + COLS - 2;", f"s < {stream};"))
    (verdict,) = verify_export(out)
    assert not verdict.timing_ok and not verdict.ok
    assert verdict.cycles != verdict.model_cycles


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("verilator") is None, reason="Verilator is not installed (optional)")
def test_verilator_runs_the_same_testbenches(tmp_path):
    """Verilator 5 (`--binary --timing`) gives the same verdicts and cycles as Icarus Verilog."""
    layers = _all_methods()
    layers = {name: layers[name] for name in ("tight_wide", "subword")}
    out = tmp_path / "rtl"
    export_rtl(layers, out, m=2, array=(4, 4), hdl=True)
    verdicts = verify_export(out, simulator="verilator")
    assert all(v.ok for v in verdicts), verdicts
    if HAVE_IVERILOG:
        assert [v.cycles for v in verdicts] == [v.cycles for v in verify_export(out, simulator="iverilog")]
