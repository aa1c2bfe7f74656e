"""`tightcompress pack` and `tightcompress unpack`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tightcompress.api import METHODS, PackConfig, pack
from tightcompress.cli.common import add_quiet, height_arg
from tightcompress.errors import TightCompressError
from tightcompress.format.io import load_packed, save_packed
from tightcompress.matrices import load_matrices
from tightcompress.report import build_report
from tightcompress.utils.atomic import atomic_path, write_json_atomic


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("pack", help="pack a matrix or every conv/linear weight of a checkpoint")
    parser.add_argument("input", help=".npy K x N matrix, or a .pt/.pth/.safetensors state_dict")
    add_pack_options(parser)
    parser.add_argument("--json", required=True, metavar="REPORT.json", help="write the report here")
    parser.add_argument("--out", metavar="PACKED.safetensors", help="also write the packed layers here")
    add_quiet(parser)
    parser.set_defaults(func=run_pack)

    unpack = subparsers.add_parser("unpack", help="rebuild the K x N matrix from a packed file")
    unpack.add_argument("packed", help="PACKED.safetensors written by `pack --out`")
    unpack.add_argument("output", help="OUT.npy (one layer) or OUT.npz (every layer)")
    unpack.add_argument("--layer", help="which layer to write to a .npy when the file holds several")
    unpack.set_defaults(func=run_unpack)


def add_pack_options(parser: argparse.ArgumentParser) -> None:
    """The packing options shared by `pack` and the commands built on it."""
    parser.add_argument("--method", choices=METHODS, default="tight")
    parser.add_argument("--group", type=int, default=8, metavar="G", help="lane width G (G:1 mux per PE)")
    parser.add_argument(
        "--height",
        type=height_arg,
        default="auto",
        metavar="K|auto",
        help="slots per group per column, or auto for lossless",
    )
    parser.add_argument("--tile", type=int, default=32, metavar="C", help="array columns per tile")
    parser.add_argument("--alpha", type=int, default=8, help="column combining: rows per group at most")
    parser.add_argument(
        "--gamma",
        type=float,
        default=0.5,
        help="column combining: conflicts allowed per output column per group",
    )
    parser.add_argument(
        "--sparsity",
        type=float,
        metavar="S",
        help="first zero the smallest-magnitude fraction S of each matrix",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--iterations", type=int, help="annealing moves (default: scaled to the matrix)")
    parser.add_argument(
        "--objective",
        choices=("magnitude", "squared"),
        default="magnitude",
        help="capped height: minimise dropped |w| or dropped w^2",
    )


def config_from_args(args: argparse.Namespace) -> PackConfig:
    return PackConfig(
        method=args.method,
        group=args.group,
        height=args.height,
        tile=args.tile,
        alpha=args.alpha,
        gamma=args.gamma,
        sparsity=args.sparsity,
        seed=args.seed,
        iterations=args.iterations,
        objective=args.objective,
    )


def run_pack(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    matrices = load_matrices(args.input)
    packed_layers = {}
    for name, matrix in tqdm(
        matrices.items(), desc="pack", unit="layer", disable=args.quiet or len(matrices) < 2, file=sys.stderr
    ):
        packed_layers[name] = pack(matrix, config, name=name)
    layers = [packed.report() for packed in packed_layers.values()]
    report = build_report(layers, config=vars(config))
    if args.out:
        save_packed(args.out, packed_layers)
    write_json_atomic(args.json, report)
    total = report["total"]
    if not args.quiet:
        print(
            f"{len(layers)} layer(s), {config.method}: rate {total['compression_rate']:.2f}x, "
            f"utilization {total['utilization']:.1%}, dropped {total['dropped_nnz']} nnz "
            f"({total['dropped_magnitude_fraction']:.2%} of |w|) -> {args.json}",
            file=sys.stderr,
        )
    return 0


def run_unpack(args: argparse.Namespace) -> int:
    layers = load_packed(args.packed)
    output = Path(args.output)
    if output.suffix == ".npz":
        with atomic_path(output, suffix=".npz") as tmp, open(tmp, "wb") as handle:
            np.savez(handle, **{name: packed.to_dense() for name, packed in layers.items()})
        return 0
    if output.suffix != ".npy":
        raise TightCompressError(f"output must end in .npy or .npz, got {output.name}")
    if args.layer is not None:
        if args.layer not in layers:
            raise TightCompressError(f"no layer {args.layer!r} in {args.packed}; it has {', '.join(layers)}")
        packed = layers[args.layer]
    elif len(layers) == 1:
        packed = next(iter(layers.values()))
    else:
        raise TightCompressError(
            f"{args.packed} holds {len(layers)} layers: name one with --layer, or write .npz"
        )
    with atomic_path(output, suffix=".npy") as tmp, open(tmp, "wb") as handle:
        np.save(handle, packed.to_dense())
    return 0
