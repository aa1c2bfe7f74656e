"""Run the testbenches of an `export --hdl` folder in a Verilog simulator and compare with the cycle model.

For each layer of `DIR/manifest.json` the layer's testbench (`LAYER/tc_layer_tb.v`) is compiled with the
shared modules (`DIR/hdl/*.v`) and run in the layer's folder, where it reads the hex files. Its one
`TB ...` line gives the vectors matched and the simulated cycles; the cycle model
(`tightcompress.hw.cycles.packed_cycles` of the layer parsed back from the same files, on the manifest's
array, with the manifest's M) gives the model's cycles. A layer passes when every vector matches, the
testbench's timing check holds, and the two cycle counts are equal.

Simulators: Icarus Verilog (`iverilog` + `vvp`), else Verilator 5 (`verilator --binary --timing`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tightcompress.errors import TightCompressError
from tightcompress.export.hdl import MODULES, TB_PREFIX

INSTALL_HINT = (
    "no Verilog simulator found: install Icarus Verilog (Debian/Ubuntu: `sudo apt-get install iverilog`; "
    "macOS: `brew install icarus-verilog`) or Verilator 5"
)
TIMEOUT_S = 3600  # one layer's simulation; a hung simulator must not hang `verify`
_TB_LINE = re.compile(
    r"^TB layer=(?P<layer>\S+) result=(?P<result>PASS|FAIL) matched=(?P<matched>\d+) "
    r"vectors=(?P<vectors>\d+) cycles=(?P<cycles>\d+) passes=(?P<passes>\d+) folds=(?P<folds>\d+) "
    r"timing=(?P<timing>ok|bad)$"
)


@dataclass(frozen=True)
class LayerVerdict:
    """One layer's outcome: the testbench's figures and the cycle model's."""

    name: str
    matched: int
    vectors: int
    cycles: int
    model_cycles: int
    passes: int
    folds: int
    timing_ok: bool
    detail: str  # mismatch lines the testbench printed, or the simulator's error

    @property
    def ok(self) -> bool:
        return (
            self.matched == self.vectors
            and self.timing_ok
            and self.cycles == self.model_cycles
            and not self.detail.startswith("simulator")
        )


def find_simulator() -> str | None:
    """`"iverilog"` or `"verilator"`, whichever is installed (Icarus first), else None."""
    if shutil.which("iverilog") and shutil.which("vvp"):
        return "iverilog"
    if shutil.which("verilator"):
        return "verilator"
    return None


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise TightCompressError(f"{cmd[0]} ran longer than {TIMEOUT_S} s in {cwd}") from None


def simulate_testbench(simulator: str, modules: list[Path], testbench: Path, work: Path) -> str:
    """Compile and run one testbench (in its own folder, where its hex files are); the simulator's stdout.

    Raises a one-line error when the compiler rejects the sources."""
    sources = [str(p.resolve()) for p in modules] + [str(testbench.resolve())]
    if simulator == "iverilog":
        binary = work / "tb.vvp"
        built = _run(["iverilog", "-g2005", "-o", str(binary), *sources], testbench.parent)
        if built.returncode != 0:
            raise TightCompressError(f"iverilog rejected {testbench}: {_first_line(built.stderr)}")
        ran = _run(["vvp", "-n", str(binary)], testbench.parent)
    else:
        built = _run(
            ["verilator", "--binary", "--timing", "-Wno-fatal", "-Wno-lint", "-Wno-style",
             "--top-module", "tc_layer_tb", "--Mdir", str(work / "obj"), "-o", "tb", *sources],
            testbench.parent,
        )  # fmt: skip
        if built.returncode != 0:
            raise TightCompressError(f"verilator rejected {testbench}: {_first_line(built.stderr)}")
        ran = _run([str(work / "obj" / "tb")], testbench.parent)
    return ran.stdout + ran.stderr


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else "(no message)"


def verify_export(
    out_dir: str | os.PathLike[str], simulator: str | None = None, layers: list[str] | None = None
) -> list[LayerVerdict]:
    """Run every layer's testbench of an `export --hdl` folder; one verdict per layer, in manifest order.

    `simulator` defaults to `find_simulator()`; with none installed, a one-line error says how to install
    one. `layers` restricts the run to those layer names."""
    from tightcompress.export.rtl import load_rtl, read_manifest
    from tightcompress.hw.cycles import packed_cycles

    out_dir = Path(out_dir)
    simulator = simulator or find_simulator()
    if simulator is None:
        raise TightCompressError(INSTALL_HINT)
    manifest = read_manifest(out_dir)
    if "hdl" not in manifest:
        raise TightCompressError(f"{out_dir} holds no Verilog: export it with `--hdl`")
    array = (int(manifest["array"]["rows"]), int(manifest["array"]["cols"]))
    modules = [out_dir / "hdl" / name for name in MODULES]
    for path in modules:
        if not path.is_file():
            raise TightCompressError(f"missing Verilog module {path}")
    try:
        parsed = load_rtl(out_dir)
    except (ValueError, KeyError, IndexError, TypeError) as exc:  # a damaged hex file or manifest
        raise TightCompressError(f"{out_dir}: a hex file or the manifest is damaged ({exc})") from None
    entries = manifest["layers"]
    if layers is not None:
        unknown = sorted(set(layers) - {e["name"] for e in entries})
        if unknown:
            raise TightCompressError(f"{out_dir} has no layer {unknown[0]!r}")
        entries = [e for e in entries if e["name"] in layers]
    verdicts = []
    with tempfile.TemporaryDirectory(prefix="tightcompress-verify-") as tmp:
        for i, entry in enumerate(entries):
            testbench = out_dir / entry["folder"] / entry.get("testbench", "tc_layer_tb.v")
            if not testbench.is_file():
                raise TightCompressError(f"missing testbench {testbench}")
            layer = parsed[entry["name"]]
            model = packed_cycles(layer.packed, array, int(entry["vectors"]["m"])).cycles
            work = Path(tmp) / str(i)
            work.mkdir()
            output = simulate_testbench(simulator, modules, testbench, work)
            verdicts.append(_verdict(entry["name"], output, model))
    return verdicts


def _verdict(name: str, output: str, model_cycles: int) -> LayerVerdict:
    lines = output.splitlines()
    found = [m for m in (_TB_LINE.match(line.strip()) for line in lines) if m]
    detail = "; ".join(line.lstrip("# ").strip() for line in lines if line.startswith("# "))
    if not found:
        return LayerVerdict(name, 0, 0, 0, model_cycles, 0, 0, False,
                            f"simulator printed no result line: {_first_line(output)}")  # fmt: skip
    tb = found[-1]
    return LayerVerdict(
        name=name,
        matched=int(tb["matched"]),
        vectors=int(tb["vectors"]),
        cycles=int(tb["cycles"]),
        model_cycles=model_cycles,
        passes=int(tb["passes"]),
        folds=int(tb["folds"]),
        timing_ok=tb["timing"] == "ok",
        detail=detail,
    )


def verdict_line(v: LayerVerdict) -> str:
    """One human line per layer, e.g. `conv1: PASS  4/4 vectors  simulated 1234 cycles  model 1234`."""
    state = "PASS" if v.ok else "FAIL"
    line = (
        f"{v.name}: {state}  {v.matched}/{v.vectors} vectors  simulated {v.cycles} cycles  "
        f"model {v.model_cycles} cycles  ({v.passes} passes, {v.folds} folds)"
    )
    if not v.timing_ok:
        line += "  timing check failed"
    elif v.cycles != v.model_cycles:
        line += "  cycles differ from the model"
    if v.detail:
        line += f"  [{v.detail}]"
    return line


__all__ = ["INSTALL_HINT", "TB_PREFIX", "LayerVerdict", "find_simulator", "verdict_line", "verify_export"]
