"""`tightcompress simulate`: pack every layer, then add cycles, PE utilization and energy on an array.

M (input vectors per layer) is `--vectors` for every layer here (`--batch`: its deprecated spelling);
the Python API (`simulate_packed(..., m=)`) takes the true output-pixel count x batch per layer.
"""

from __future__ import annotations

import argparse
import sys

from tqdm import tqdm

from tightcompress.api import PackConfig, pack
from tightcompress.cli.common import (
    add_alias,
    add_quiet,
    add_skip_bad_layers,
    compile_kernels_once,
    declare_paths,
)
from tightcompress.cli.pack import (
    add_key_option,
    add_pack_options,
    config_from_args,
    read_input,
    split_bad_layers,
)
from tightcompress.errors import TightCompressError
from tightcompress.format.dtypes import store_dtype
from tightcompress.hw.bitexact import check_bitexact, random_activations
from tightcompress.hw.cycles import parse_array
from tightcompress.hw.energy import load_energy_table
from tightcompress.hw.simulate import simulate_packed, total_simulation
from tightcompress.readers import INPUT_HELP
from tightcompress.report import build_report
from tightcompress.utils.atomic import write_json_atomic


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `simulate`."""
    parser = subparsers.add_parser(
        "simulate", help="pack, then model cycles, utilization and energy on a weight-stationary array"
    )
    parser.add_argument("input", help=INPUT_HELP)
    add_key_option(parser)
    add_pack_options(parser)
    parser.set_defaults(tile=None)  # default: the array's column count
    for action in parser._actions:
        if action.dest == "tile":
            action.help = f"{action.help} (default: the array's column count)"
    parser.add_argument("--array", default="32x32", metavar="RxC", help="PE array rows x columns")
    parser.add_argument("--vectors", type=int, default=1, metavar="M", help="input vectors per layer (M)")
    add_alias(parser, "--batch", "--vectors", type=int, metavar="M")
    parser.add_argument(
        "--energy-table",
        metavar="FILE",
        help=".toml/.json overriding per-op energies in pJ (default: the built-in 45 nm table)",
    )
    parser.add_argument("--gate-zeros", action="store_true", help="PEs skip MACs on zero weights")
    parser.add_argument(
        "--no-vs-cc", action="store_true", help="skip packing by column combining as a second baseline"
    )
    parser.add_argument(
        "--check-bitexact", action="store_true", help="also run the int8 array simulation on random inputs"
    )
    parser.add_argument("--json", required=True, metavar="REPORT.json", help="write the report here")
    add_skip_bad_layers(parser)
    add_quiet(parser)
    parser.set_defaults(func=run_simulate)
    declare_paths(parser, inputs=("input", "energy_table"), outputs=("json",))


def run_simulate(args: argparse.Namespace) -> int:
    """Pack, simulate, write the report."""
    array = parse_array(args.array)
    if args.vectors < 1:
        raise TightCompressError(f"--vectors must be >= 1, got {args.vectors}")
    if args.tile is None:
        args.tile = array[1]
    config = config_from_args(args)
    table = load_energy_table(args.energy_table) if args.energy_table else None
    cc_config = None
    if not args.no_vs_cc and config.method != "column-combining":
        cc_config = PackConfig(
            method="column-combining",
            tile=config.tile,
            alpha=config.alpha,
            gamma=config.gamma,
            merge=config.merge,
            section=config.section,
            sparsity=config.sparsity,
            seed=config.seed,
        )
    found = read_input(args)
    matrices, bad_layers = split_bad_layers(found.arrays, skip=args.skip_bad_layers)
    compile_kernels_once(args)
    layers = []
    hw_layers = []
    for name, matrix in tqdm(
        matrices.items(),
        desc="simulate",
        unit="layer",
        disable=args.quiet or len(matrices) < 2,
        file=sys.stderr,
    ):
        packed = store_dtype(pack(matrix, config, name=name), found.dtypes[name])
        cc = pack(matrix, cc_config, name=name) if cc_config is not None else None
        if config.method == "column-combining" and not args.no_vs_cc:
            cc = packed  # itself: gains over column combining are then 1
        hw = simulate_packed(
            packed, array=array, m=args.vectors, energy=table, gate_zeros=args.gate_zeros, cc_baseline=cc
        )
        if args.check_bitexact:
            hw["bitexact"] = check_bitexact(
                packed, random_activations(min(args.vectors, 4), packed.K, args.seed)
            )
        hw_layers.append(hw)
        layers.append({**packed.report(), **hw})
    report = build_report(layers, config={**vars(config), "array": args.array, "batch": args.vectors})
    report["total"].update(total_simulation(hw_layers))
    if args.check_bitexact:
        report["total"]["bitexact"] = all(hw["bitexact"] for hw in hw_layers)
    report["energy_table"] = (table or load_energy_table()).to_dict()
    skipped = [*found.skipped, *bad_layers]
    if skipped or len(found.layers) > 1:
        report["notes"] = {**found.notes, "skipped_layers": skipped}
    write_json_atomic(args.json, report)
    total = report["total"]
    print(
        f"{len(layers)} layer(s), {config.method} on {args.array}, M={args.vectors}: "
        f"{total['cycles']} cycles (dense {total['dense_cycles']}, speed-up {total['speedup']:.2f}x), "
        f"PE utilization {total['utilization_pe']:.1%}, energy {total['energy_pj'] / 1e6:.3f} uJ "
        f"(gain {total['energy_gain']:.2f}x over dense) -> {args.json}"
    )
    return 0
