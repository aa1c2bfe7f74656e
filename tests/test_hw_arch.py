"""Architecture file (`simulate --arch`): defaults equal the built-in model, validation at the door, DRAM
traffic for buffers too small, stalls for buffers too slow."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from tightcompress.api import pack
from tightcompress.cli.main import main
from tightcompress.errors import TightCompressError
from tightcompress.hw.arch import DEFAULT_ARCH, Architecture, Buffer, load_architecture
from tightcompress.hw.cycles import array_passes, bandwidth_stalls, packed_cycles
from tightcompress.hw.energy import DEFAULT_ENERGY
from tightcompress.hw.simulate import simulate_packed

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "arch.toml"
FAST = ["--iterations", "3000", "--jobs", "1", "--quiet"]


def sparse_matrix(k: int, n: int, density: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(k, n)) * (rng.random((k, n)) < density)
    w[0, 0] = 1.0
    return w.astype(np.float32)


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def drop_timings(report: dict) -> dict:
    """The report without wall-clock fields (`seconds`, `search_seconds`), which differ run to run."""
    if isinstance(report, dict):
        return {k: drop_timings(v) for k, v in report.items() if not k.endswith("seconds")}
    if isinstance(report, list):
        return [drop_timings(v) for v in report]
    return report


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("arch") / "w.npy"
    np.save(path, sparse_matrix(96, 64, 0.15, 0))
    return path


def test_example_file_is_the_built_in_architecture() -> None:
    arch = load_architecture(EXAMPLE)
    assert arch.to_dict() == DEFAULT_ARCH.to_dict()
    assert arch.energy == DEFAULT_ENERGY  # same numbers and the same source: nothing was overridden
    assert arch.cells == {}


def test_simulate_with_the_default_file_gives_the_same_json(weights, tmp_path, capsys) -> None:
    plain, with_file = tmp_path / "plain.json", tmp_path / "file.json"
    base = ["simulate", weights, "--method", "tight", "--group", "8", "--vectors", "50", *FAST]
    assert run([*base, "--json", plain], capsys)[0] == 0
    assert run([*base, "--arch", EXAMPLE, "--json", with_file], capsys)[0] == 0
    a, b = json.loads(plain.read_text()), json.loads(with_file.read_text())
    assert b["config"].pop("arch") == str(EXAMPLE)  # the one field that names the file
    assert drop_timings(a) == drop_timings(b)
    assert a["architecture"]["buffers"]["activations"] == {"size_kb": None, "bandwidth_bits_per_cycle": None}
    assert a["total"]["accesses"]["dram_activation_reads"] == 0 and a["total"]["stall_cycles"] == 0


def test_small_activation_buffer_counts_dram_traffic_the_default_does_not(weights, tmp_path, capsys) -> None:
    arch = tmp_path / "small.toml"
    arch.write_text("[buffers.activations]\nsize_kb = 1\n")  # 96 x 50 int8 inputs = 4.7 KiB: no fit
    out, default = tmp_path / "s.json", tmp_path / "d.json"
    base = ["simulate", weights, "--method", "tight", "--group", "8", "--vectors", "50", "--no-vs-cc", *FAST]
    assert run([*base, "--arch", arch, "--json", out], capsys)[0] == 0
    assert run([*base, "--json", default], capsys)[0] == 0
    small, plain = json.loads(out.read_text())["total"], json.loads(default.read_text())["total"]
    assert plain["accesses"]["dram_activation_reads"] == 0
    reads = small["accesses"]["dram_activation_reads"]
    assert reads == small["accesses"]["sram_activation_reads"] > 0  # every pass's activations from DRAM
    extra = small["energy_breakdown_pj"]["dram_activations"]
    assert extra == pytest.approx(reads * 8 * DEFAULT_ENERGY.dram_pj_per_bit)
    assert small["energy_pj"] == pytest.approx(plain["energy_pj"] + extra)
    assert small["cycles"] == plain["cycles"]  # size alone does not stall


def test_output_spills_partial_sums_and_outputs() -> None:
    packed = pack(np.ones((24, 8)), method="dense", tile=8)  # 3 row folds on 8 x 8
    arch = Architecture(rows=8, cols=8, outputs=Buffer(size_kb=0.01))  # 81.92 bits: nothing fits
    hw = simulate_packed(packed, array=(8, 8), m=4, arch=arch)
    acc = hw["accesses"]
    assert acc["dram_partial_sum_writes"] == acc["dram_partial_sum_reads"] == 2 * 8 * 4
    assert acc["dram_output_writes"] == 8 * 4
    assert hw["energy_breakdown_pj"]["dram_outputs"] == pytest.approx(
        ((2 * 2 * 8 * 4) * 32 + 8 * 4 * 8) * DEFAULT_ENERGY.dram_pj_per_bit
    )


def test_feeder_bandwidth_stalls_the_lanes_of_each_group() -> None:
    w = sparse_matrix(128, 32, 0.05, 3)
    packed = pack(w, method="tight", group=16, tile=32)
    m = 40
    plan = array_passes(packed, (32, 32))
    assert sum(sum(p.fold_inputs) for p in plan) >= sum(p.inputs for p in plan)
    unlimited = simulate_packed(packed, array=(32, 32), m=m, arch=DEFAULT_ARCH)
    assert unlimited["stall_cycles"] == 0 and unlimited["cycles"] == packed_cycles(packed, (32, 32), m).cycles
    # 32 activations of 8 bits per cycle: enough for a dense fold (R = 32 lanes), not for G-lane groups
    arch = Architecture(activations=Buffer(bandwidth_bits_per_cycle=256))
    hw = simulate_packed(packed, array=(32, 32), m=m, arch=arch)
    expected = sum(max(0, math.ceil(m * lanes * 8 / 256) - m) for p in plan for lanes in p.fold_inputs)
    assert hw["stall_cycles"] == expected > 0
    assert hw["cycles"] == unlimited["cycles"] + expected
    assert hw["dense_stall_cycles"] == 0  # dense folds need exactly R = 32 activations per cycle
    stalls = bandwidth_stalls(
        packed,
        (32, 32),
        m,
        act_bits=8,
        slot_bits=12,
        acc_bits=32,
        act_bandwidth=256,
        weight_bandwidth=math.inf,
        out_bandwidth=math.inf,
    )
    assert stalls["activations"] == stalls["total"] == expected


def test_weight_and_output_bandwidth_stall() -> None:
    packed = pack(np.ones((16, 8)), method="dense", tile=8)  # 2 row folds of 8 x 8
    slow_weights = Architecture(rows=8, cols=8, weights=Buffer(bandwidth_bits_per_cycle=32))
    hw = simulate_packed(packed, array=(8, 8), m=5, arch=slow_weights)
    assert hw["stall_cycles"] == 2 * (8 * 8 * 8 // 32 - 8)  # 16 load cycles where the model has 8
    slow_out = Architecture(rows=8, cols=8, outputs=Buffer(bandwidth_bits_per_cycle=128))
    hw = simulate_packed(packed, array=(8, 8), m=5, arch=slow_out)
    # fold 1 writes 8 x 32 bits a vector (2 cycles each), fold 2 also reads them back (4 cycles each)
    assert hw["stall_cycles"] == (10 - 5) + (20 - 5)


BAD = [
    ("[array]\nrowz = 4\n", "unknown key array.rowz"),
    ("[arrays]\nrows = 4\n", "unknown key arrays"),
    ("[array]\nrows = 0\n", "array.rows must be an integer"),
    ("[array]\nrows = 4.5\n", "array.rows must be an integer"),
    ("[array]\nclock_mhz = inf\n", "array.clock_mhz must be a number > 0"),
    ("[bits]\nactivation = true\n", "bits.activation must be an integer"),
    ("[bits]\naccumulator = 12\n", "bits.accumulator (12) must hold"),
    ("[buffers.activations]\nsize_kb = -1\n", "buffers.activations.size_kb must be a number > 0 or inf"),
    ("[buffers.activations]\nsize_kb = nan\n", "buffers.activations.size_kb must be a number"),
    ("[buffers.activation]\nsize_kb = 1\n", "unknown key buffers.activation"),
    ("[buffers.outputs]\nbandwidth = 8\n", "unknown key buffers.outputs.bandwidth"),
    ("[energy]\nmult8 = 0.2\n", "unknown key energy.mult8"),
    ("[energy]\nmult8_pj = 'x'\n", "energy.mult8_pj must be a number >= 0"),
    ("[cells.MUX]\narea = 2\n", "unknown key cells.MUX.area"),
    ("[cells.FOO]\narea_um2 = 2\n", "unknown key cells.FOO"),
    ("array = 3\n", "array must be a table"),
    ("[array\nrows = 3\n", "not a readable TOML"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_bad_architecture_is_one_error_naming_the_key(tmp_path, text, message) -> None:
    path = tmp_path / "a.toml"
    path.write_text(text)
    with pytest.raises(TightCompressError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_architecture(path)


def test_bad_architecture_on_the_command_line(weights, tmp_path, capsys) -> None:
    path = tmp_path / "a.toml"
    path.write_text("[buffers.activations]\nsize_kb = 'big'\n")
    out = tmp_path / "s.json"
    code, _, err = run(["simulate", weights, "--arch", path, "--json", out, *FAST], capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "buffers.activations.size_kb" in lines[0], err
    assert not out.exists()
    code, _, err = run(["simulate", weights, "--arch", tmp_path / "missing.toml", *FAST], capsys)
    assert code == 2 and "missing.toml" in err


def test_array_from_the_file_and_overridden_by_the_option(weights, tmp_path, capsys) -> None:
    path = tmp_path / "a.toml"
    path.write_text("[array]\nrows = 16\ncols = 16\n")
    out = tmp_path / "s.json"
    base = ["simulate", weights, "--method", "dense", "--no-vs-cc", "--arch", path, *FAST]
    assert run([*base, "--json", out], capsys)[0] == 0
    report = json.loads(out.read_text())
    assert report["config"]["array"] == "16x16" and report["layers"][0]["array"] == "16x16"
    assert run([*base, "--array", "8x8", "--json", out], capsys)[0] == 0
    report = json.loads(out.read_text())
    assert report["config"]["array"] == "8x8" and report["architecture"]["array"]["rows"] == 8


def test_the_schema_describes_the_file_and_the_report(weights, tmp_path, capsys) -> None:
    import tomllib
    from dataclasses import fields

    import jsonschema

    from tightcompress.hw.energy import EnergyTable
    from tightcompress.schemas import load_schema

    schema = load_schema("arch")
    jsonschema.Draft202012Validator(schema).validate(tomllib.loads(EXAMPLE.read_text()))
    assert set(schema["properties"]["energy"]["properties"]) == {f.name for f in fields(EnergyTable)}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate({"buffers": {"activations": {"size": 1}}})
    path = tmp_path / "a.toml"
    path.write_text("[buffers.activations]\nsize_kb = 2\nbandwidth_bits_per_cycle = 128\n")
    out = tmp_path / "s.json"
    argv = ["simulate", weights, "--method", "tight", "--vectors", "20", "--arch", path, "--json", out]
    assert run([*argv, *FAST], capsys)[0] == 0
    report = json.loads(out.read_text())
    jsonschema.Draft202012Validator(load_schema("simulate")).validate(report)
    assert report["architecture"]["buffers"]["activations"] == {
        "size_kb": 2.0,
        "bandwidth_bits_per_cycle": 128.0,
    }
    assert report["total"]["stall_cycles"] > 0 and report["total"]["cc_stall_cycles"] >= 0
