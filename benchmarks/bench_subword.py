"""Word-level vs subword-level tight packing: bit rates and reconstruction error at equal bit rate.

For each synthetic layer (Gaussian / Laplacian `K x N`, seeded):
- word level: magnitude-prune the float matrix to a sweep of sparsities, quantize per column to int8
  (`[-127, 127]`), pack tight (lossless, `height=auto`); bit rates `8KN / (8 slots)` and
  `8KN / ((8 + ceil(log2 G)) slots)`;
- subword level: magnitude-prune to a base word sparsity (0 = dense), quantize for subwords (`[-119, 119]`),
  prune subwords by importance to several subword sparsities, pack the `2K x N` subword matrix tight
  (lossless); bit rates `8KN / (4 slots)` and `8KN / ((4 + 1 + ceil(log2 G)) slots)`.
The error is the relative Frobenius error of the dequantized kept weights against the original float
matrix. The word-level error at the subword point's bit rate is interpolated (linearly in the bit rate)
from the word sweep; every subword point's packing is also checked bit-exactly against the int8 GEMM.

    python benchmarks/bench_subword.py --json benchmarks/subword_results.json \
        --results benchmarks/RESULTS_subword.md
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np

from tightcompress.api import pack
from tightcompress.hw.subword_sim import reference_gemm, simulate_subword_gemm
from tightcompress.prune import magnitude_prune
from tightcompress.prune.subword import (
    prune_subwords,
    quantize_for_subwords,
    subword_effective_int8,
    subword_sparsity,
)
from tightcompress.prune.subword_pack import word_bit_rates
from tightcompress.quant import dequantize_columns, quantize_columns
from tightcompress.subword_packer import pack_subwords

BEGIN, END = "<!-- BEGIN GENERATED -->", "<!-- END GENERATED -->"


def make_matrix(dist: str, K: int, N: int, seed: int) -> np.ndarray:
    """A seeded synthetic weight matrix with per-column spread (like real layers)."""
    rng = np.random.default_rng([seed, K, N, 0 if dist == "gaussian" else 1])
    base = rng.standard_normal((K, N)) if dist == "gaussian" else rng.laplace(size=(K, N))
    return base * rng.uniform(0.5, 1.5, size=N)


def rel_error(approx: np.ndarray, exact: np.ndarray) -> float:
    """Relative Frobenius error `||approx - exact|| / ||exact||`."""
    return float(np.linalg.norm(approx - exact) / np.linalg.norm(exact))


def word_point(W: np.ndarray, sparsity: float, args: argparse.Namespace) -> dict:
    """Word-level tight packing of `W` magnitude-pruned to `sparsity`, int8 per column."""
    q, scales = quantize_columns(magnitude_prune(W, sparsity))
    packed = pack(
        q.astype(np.float32), group=args.group, tile=args.tile, seed=args.seed, iterations=args.iterations
    )
    rate, rate_index = word_bit_rates(packed)
    return {
        "word_sparsity": sparsity,
        "slots": packed.packed_slots,
        "bit_rate": rate,
        "bit_rate_with_index": rate_index,
        "error": rel_error(dequantize_columns(q, scales), W),
    }


def subword_point(
    W: np.ndarray, q: np.ndarray, scales: np.ndarray, target: float, args: argparse.Namespace, rng
) -> dict:
    """Subword pruning of `q` to `target` and tight packing of its subword matrix, checked bit-exactly."""
    masks = prune_subwords(q, target, scales=scales)
    sp = pack_subwords(q, masks, group=args.group, tile=args.tile, seed=args.seed, iterations=args.iterations)
    effective = subword_effective_int8(q, masks)
    x = rng.integers(-128, 128, size=(4, q.shape[0])).astype(np.int8)
    exact = bool(
        np.array_equal(sp.to_int8_dense(), effective)
        and np.array_equal(simulate_subword_gemm(sp, x), reference_gemm(x, effective))
    )
    return {
        "subword_sparsity": subword_sparsity(q, masks),
        "slots": sp.packed_slots,
        "lower_bound_slots": sp.report()["lower_bound_slots"],
        "bit_rate": sp.bit_rate,
        "bit_rate_with_index": sp.bit_rate_with_index,
        "error": rel_error(dequantize_columns(effective, scales), W),
        "bit_exact": exact,
    }


def interp(rates: list[float], errors: list[float], rate: float) -> float:
    """Word-level error at `rate`, linear between sweep points; NaN outside the sweep."""
    order = np.argsort(rates)
    r, e = np.asarray(rates)[order], np.asarray(errors)[order]
    return float(np.interp(rate, r, e)) if r[0] <= rate <= r[-1] else math.nan


def run(args: argparse.Namespace) -> dict:
    """All layers, both sweeps; returns the JSON-able results."""
    layers = []
    for shape in args.shapes:
        K, N = (int(v) for v in shape.split("x"))
        for dist in args.dists:
            start = time.perf_counter()
            W = make_matrix(dist, K, N, args.seed)
            rng = np.random.default_rng(args.seed)
            words = [word_point(W, s, args) for s in args.word_sweep]
            rates = [p["bit_rate"] for p in words]
            rates_i = [p["bit_rate_with_index"] for p in words]
            errors = [p["error"] for p in words]
            subs = []
            for base in args.base_sparsities:
                q, scales = quantize_for_subwords(magnitude_prune(W, base) if base > 0 else W)
                start_sparsity = subword_sparsity(q)
                targets = [start_sparsity] + [t for t in args.subword_targets if t > start_sparsity + 0.004]
                for target in targets:
                    point = subword_point(W, q, scales, target, args, rng)
                    point["base_word_sparsity"] = base
                    point["word_error_at_bit_rate"] = interp(rates, errors, point["bit_rate"])
                    point["word_error_at_bit_rate_with_index"] = interp(
                        rates_i, errors, point["bit_rate_with_index"]
                    )
                    subs.append(point)
                    print(f"{shape} {dist} base={base} sub={point['subword_sparsity']:.3f}", file=sys.stderr)
            layers.append(
                {
                    "shape": shape,
                    "dist": dist,
                    "word": words,
                    "subword": subs,
                    "seconds": time.perf_counter() - start,
                }
            )
    return {
        "command": " ".join(["python", *sys.argv]),
        "group": args.group,
        "tile": args.tile,
        "iterations": args.iterations,
        "seed": args.seed,
        "python": platform.python_version(),
        "layers": layers,
    }


def _f(value: float, digits: int = 3) -> str:
    return "—" if math.isnan(value) else f"{value:.{digits}f}"


def markdown(results: dict) -> str:
    """The generated tables of RESULTS_subword.md."""
    lines = [
        f"Generated by `{results['command']}` (G={results['group']}, C={results['tile']}, "
        f"{results['iterations']} annealing iterations, seed {results['seed']}, lossless height).",
        "",
    ]
    for layer in results["layers"]:
        lines += [
            f"### {layer['shape']} {layer['dist']} ({layer['seconds']:.0f} s)",
            "",
            "Word level (int8 per column, one weight per slot):",
            "",
            "| word sparsity | slots | bit rate | bit rate w/ index | rel. error |",
            "|---:|---:|---:|---:|---:|",
        ]
        for p in layer["word"]:
            lines.append(
                f"| {p['word_sparsity']:.2f} | {p['slots']} | {_f(p['bit_rate'], 2)} | "
                f"{_f(p['bit_rate_with_index'], 2)} | {_f(p['error'], 4)} |"
            )
        lines += [
            "",
            "Subword level (4-bit subwords, one per slot); word-level error interpolated at the same rate:",
            "",
            "| base word sp. | subword sp. | slots | bit rate | bit rate w/ index | rel. error | "
            "word err @ bit rate | word err @ rate w/ index | bit-exact |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|:---:|",
        ]
        for p in layer["subword"]:
            lines.append(
                f"| {p['base_word_sparsity']:.2f} | {p['subword_sparsity']:.3f} | {p['slots']} | "
                f"{_f(p['bit_rate'], 2)} | {_f(p['bit_rate_with_index'], 2)} | {_f(p['error'], 4)} | "
                f"{_f(p['word_error_at_bit_rate'], 4)} | {_f(p['word_error_at_bit_rate_with_index'], 4)} | "
                f"{'yes' if p['bit_exact'] else 'NO'} |"
            )
        lines.append("")
    return "\n".join(lines)


def write_results(path: Path, generated: str) -> None:
    """Replace the generated block of the results file (create the file if needed), keeping the prose."""
    text = path.read_text() if path.exists() else f"# Subword packing results\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text += f"\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{BEGIN}\n{generated}\n{END}{tail}")


def main() -> None:
    """Parse options, run the sweeps, print the tables, optionally write JSON and the results file."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", nargs="+", default=["576x64", "1152x128"])
    parser.add_argument("--dists", nargs="+", default=["gaussian", "laplace"])
    parser.add_argument(
        "--word-sweep",
        nargs="+",
        type=float,
        default=[0.8, 0.85, 0.88, 0.9, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98, 0.99],
    )
    parser.add_argument("--base-sparsities", nargs="+", type=float, default=[0.9, 0.95, 0.0])
    parser.add_argument(
        "--subword-targets", nargs="+", type=float, default=[0.92, 0.94, 0.95, 0.96, 0.97, 0.98, 0.99]
    )
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--tile", type=int, default=32)
    parser.add_argument("--iterations", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--results", type=Path, help="markdown file whose generated block is replaced")
    args = parser.parse_args()
    results = run(args)
    generated = markdown(results)
    print(generated)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    if args.results:
        write_results(args.results, generated)


if __name__ == "__main__":
    main()
