"""Cycle model vs SCALE-Sim v3 (weight-stationary): agreement and speed, dense layers and a tight layer.

Needs the SCALE-Sim environment (`bash scripts/setup_scalesim_env.sh`). Run:

    python benchmarks/bench_scalesim.py [--repeats 3] [--json OUT.json]

For each dense layer `(M, K, N)` on an `R x C` array it prints SCALE-Sim's `Total Cycles`, the model's
cycles, their relative difference, and the median wall time of each (SCALE-Sim: whole subprocess run,
including interpreter start; model: `dense_gemm_cycles`). For a packed tight layer it compares the model's
cycles with SCALE-Sim run on the equivalent dense GEMM of each tile's H_t rows (one run per tile).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np

from tightcompress.api import pack
from tightcompress.hw.cycles import dense_gemm_cycles, packed_cycles, scalesim_total_cycles
from tightcompress.hw.scalesim_ref import run_scalesim_gemm, scalesim_available

# (M, K, N, R, C): M > R, K > R (row folds) and N > C (column folds) all occur; one fold; non-square arrays.
DENSE_CASES = [
    (8, 8, 8, 8, 8),
    (64, 64, 64, 16, 16),
    (200, 100, 50, 32, 32),
    (100, 300, 70, 32, 16),
    (49, 576, 128, 32, 32),
    (196, 1152, 256, 64, 64),
    (3136, 147, 64, 32, 32),
    (16, 512, 1000, 16, 32),
]
TIGHT_CASE = {"M": 196, "K": 576, "N": 128, "R": 32, "C": 32, "density": 0.1, "group": 8}


def model_seconds(fn, repeats: int = 200) -> float:
    """Median seconds of one call of `fn` over `repeats` timed batches."""
    times = []
    for _ in range(7):
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        times.append((time.perf_counter() - start) / repeats)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="SCALE-Sim runs per case (median time)")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    if not scalesim_available():
        print("SCALE-Sim environment missing: run bash scripts/setup_scalesim_env.sh", file=sys.stderr)
        return 1
    rows = []
    print(
        "| M | K | N | array | SCALE-Sim Total Cycles | model cycles | diff vs SCALE-Sim + 1 | raw diff "
        "| SCALE-Sim s (median) | model s (median) | model speed-up |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for m, k, n, r, c in DENSE_CASES:
        runs = [run_scalesim_gemm(m, k, n, rows=r, cols=c) for _ in range(args.repeats)]
        ref = runs[0].total_cycles
        assert all(run.total_cycles == ref for run in runs)
        ss_s = statistics.median(run.seconds for run in runs)
        model = dense_gemm_cycles(k, n, m, (r, c))
        mod_s = model_seconds(lambda k=k, n=n, m=m, r=r, c=c: dense_gemm_cycles(k, n, m, (r, c)))
        # SCALE-Sim prints the 0-based index of the last busy cycle: the count of cycles is that + 1.
        diff = (model - (ref + 1)) / (ref + 1)
        raw = (model - ref) / ref
        assert (scalesim_total_cycles(k, n, m, (r, c)) == ref) == (diff == 0)
        rows.append(
            {
                "M": m,
                "K": k,
                "N": n,
                "R": r,
                "C": c,
                "scalesim_cycles": ref,
                "model_cycles": model,
                "rel_diff": diff,
                "raw_rel_diff": raw,
                "scalesim_seconds": ss_s,
                "model_seconds": mod_s,
                "stall_cycles": runs[0].stall_cycles,
            }
        )
        print(
            f"| {m} | {k} | {n} | {r}x{c} | {ref} | {model} | {diff:+.3%} | {raw:+.3%} | {ss_s:.3f} "
            f"| {mod_s * 1e6:.1f} us | {ss_s / mod_s:,.0f}x |"
        )

    t = TIGHT_CASE
    rng = np.random.default_rng(0)
    w = rng.normal(size=(t["K"], t["N"])) * (rng.random((t["K"], t["N"])) < t["density"])
    packed = pack(w, method="tight", group=t["group"], tile=t["C"])
    model = packed_cycles(packed, (t["R"], t["C"]), t["M"]).cycles
    tile_runs = [
        run_scalesim_gemm(t["M"], int(h), t["C"], rows=t["R"], cols=t["C"]) for h in packed.tile_rows
    ]
    # Each tile is its own SCALE-Sim run, which reports (its folds' sum - 1): add the 1 back per tile.
    ref_sum = sum(run.total_cycles + 1 for run in tile_runs)
    ss_s = sum(run.seconds for run in tile_runs)
    mod_s = model_seconds(lambda: packed_cycles(packed, (t["R"], t["C"]), t["M"]), repeats=20)
    dense = dense_gemm_cycles(t["K"], t["N"], t["M"], (t["R"], t["C"]))
    print()
    print(
        f"tight layer K={t['K']} N={t['N']} density {t['density']} G={t['group']} on {t['R']}x{t['C']}, "
        f"M={t['M']}: H_t = {packed.tile_rows.tolist()}"
    )
    print(
        f"  model {model} cycles; SCALE-Sim on dense GEMMs of H_t rows: {ref_sum} "
        f"(rel. diff {(model - ref_sum) / ref_sum:+.3%}); dense {dense} -> speed-up {dense / model:.2f}x"
    )
    print(
        f"  time: SCALE-Sim {ss_s:.2f} s ({len(tile_runs)} runs), model {mod_s * 1e6:.0f} us "
        f"({ss_s / mod_s:,.0f}x faster)"
    )
    rows.append(
        {
            "tight": t,
            "tile_rows": packed.tile_rows.tolist(),
            "model_cycles": model,
            "scalesim_cycles": ref_sum,
            "scalesim_seconds": ss_s,
            "model_seconds": mod_s,
            "dense_cycles": dense,
        }
    )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
