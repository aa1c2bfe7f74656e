"""`tightcompress export PACKED.safetensors --out-dir DIR`: hex files, manifest and test vectors for RTL."""

from __future__ import annotations

import argparse

from tightcompress.cli.common import SEED, add_alias, add_quiet, declare_paths, find_layer
from tightcompress.export.rtl import export_rtl
from tightcompress.format.io import load_packed


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `export`."""
    parser = subparsers.add_parser("export", help="write packed layers as $readmemh hex files + test vectors")
    parser.add_argument("packed", help="PACKED.safetensors written by `pack --out`")
    out = parser.add_mutually_exclusive_group(required=True)
    out.add_argument("--out-dir", metavar="DIR", help="write the export here (created whole)")
    add_alias(out, "--rtl", "--out-dir", metavar="DIR")
    parser.add_argument("--layer", action="append", help="export only this layer (repeatable)")
    parser.add_argument("--vectors", type=int, default=4, metavar="M", help="test input vectors per layer")
    parser.add_argument("--seed", type=SEED, default=0, help="seed of the test activations")
    parser.add_argument(
        "--array", default="32x32", metavar="RxC", help="PE array rows x columns (recorded in the manifest)"
    )
    parser.add_argument(
        "--hdl",
        action="store_true",
        help="also write Verilog: the PEs, the array, the feeder and a testbench per layer (`verify DIR`)",
    )
    add_quiet(parser)
    parser.set_defaults(func=run)
    declare_paths(parser, inputs=("packed",), output_dirs=("out_dir",))


def run(args: argparse.Namespace) -> int:
    """Load, quantize, simulate, write."""
    layers = load_packed(args.packed)
    if args.layer:
        keys = [find_layer(layers, name, args.packed) for name in args.layer]
        layers = {key: layers[key] for key in dict.fromkeys(keys)}
    manifest = export_rtl(
        layers, args.out_dir, m=args.vectors, seed=args.seed, array=args.array, hdl=args.hdl
    )
    tiles = sum(len(entry["tiles"]) for entry in manifest["layers"])
    hdl = ""
    if args.hdl:
        hdl = f", Verilog for a {args.array} array (run `tightcompress verify {args.out_dir}`)"
    print(f"{len(manifest['layers'])} layer(s), {tiles} tile(s){hdl} -> {args.out_dir}/manifest.json")
    return 0
