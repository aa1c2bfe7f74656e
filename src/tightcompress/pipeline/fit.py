"""The format-aware step: per-layer packing options, the choice that meets a rate with the least dropped
magnitude, and prune-to-fit (the kept positions of a packed layer become the layer's mask).

No model code here: everything works on `K x N` NumPy matrices (layer `y = x @ W`).
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, replace

import numpy as np
from tqdm import tqdm

from tightcompress.api import PackConfig, pack
from tightcompress.errors import TightCompressError
from tightcompress.format.build import build_packed
from tightcompress.format.packed import PackedMatrix
from tightcompress.pipeline.config import PERMUTED_NM

log = logging.getLogger("tightcompress.pipeline")

TIGHT_GROUPS = (32, 64)
NM_GROUPS = (4, 8, 16, 32, 64)
HEIGHTS = (1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 16, 24, 32, 48, 64)
# (alpha, gamma) of column combining: rates between the tight heights' steps, so that its allocation lands
# as close to a target rate as tight's does (a coarser grid overshoots and costs it accuracy). Low gammas:
# the authors' merge packs 95 %-sparse layers losslessly or nearly so there. The authors' merge is tried
# at every pair; the least-overlap merge drops less only at high rates (>= 20x, bench_cc_merges.py), so it
# is tried at the alpha >= 24 pairs, and only on layers of at most 1152 rows (it is O(K^2 log K): about a
# minute per setting at K = 2304). So the baseline is the strongest column combining we have.
CC_LEAST_OVERLAP_MIN_ALPHA = 24
CC_LEAST_OVERLAP_MAX_ROWS = 1152
CC_OPTIONS = (
    (1, 0.0),
    (8, 0.0),
    (16, 0.0),
    (8, 0.1),
    (16, 0.1),
    (24, 0.1),
    (32, 0.25),
    (8, 0.25),
    (12, 0.5),
    (16, 0.5),
    (16, 1.0),
    (24, 0.5),
    (24, 1.0),
    (32, 1.0),
    (32, 2.0),
    (48, 2.0),
    (64, 4.0),
)


# Pipeline method names beyond `api.METHODS`: N:M with a channel permutation ("nm-permuted") is packed by
# method "nm" with `permute=True`.


def is_searched(config: PackConfig) -> bool:
    """Whether packing `config` runs the annealing search (its budget is then set by the pipeline)."""
    return config.method == "tight" or (config.method == "nm" and config.permute)


@dataclass(frozen=True)
class Option:
    """One way to pack one layer: its config, the slots it takes and the magnitude it would drop."""

    config: PackConfig
    slots: int
    dropped_fraction: float

    def describe(self) -> str:
        """Short text such as `tight G=32 h=2` or `column-combining merge=authors alpha=16 gamma=0.5`."""
        c = self.config
        if c.method == "column-combining":
            return f"column-combining merge={c.merge} alpha={c.alpha} gamma={c.gamma:g}"
        if c.method == "dense":
            return "dense"
        return f"{PERMUTED_NM if c.permute else c.method} G={c.group} h={c.height}"


def layer_tile(N: int, tile: int) -> int:
    """The tile width for an `N`-column layer: `tile`, or `N` when the whole layer is narrower.

    A layer with fewer outputs than the array has columns is one pass either way; sizing its tile to the
    layer stores no padding columns, which would otherwise count as slots (a 10-output head on 32-wide
    tiles costs 3.2x its own size).
    """
    return min(int(tile), int(N))


def candidate_configs(
    method: str, K: int, tile: int, seed: int = 0, N: int | None = None
) -> list[PackConfig]:
    """The packing configs tried for a `K x N` layer when a rate is targeted (a lossless one included).

    With `N` given, layers narrower than `tile` get a tile of their own width (`layer_tile`).
    """
    if N is not None:
        tile = layer_tile(N, tile)
    if method == "column-combining":
        least_overlap = [
            (a, g)
            for a, g in CC_OPTIONS
            if a >= CC_LEAST_OVERLAP_MIN_ALPHA and K <= CC_LEAST_OVERLAP_MAX_ROWS
        ]
        return [
            PackConfig(method=method, alpha=a, gamma=g, merge=merge, tile=tile, seed=seed)
            for merge, options in (("authors", CC_OPTIONS), ("least-overlap", least_overlap))
            for a, g in options
        ]
    if method == "dense":
        return [PackConfig(method="dense", tile=tile)]
    groups = TIGHT_GROUPS if method == "tight" else NM_GROUPS
    permute = method == PERMUTED_NM
    method = "nm" if permute else method
    # The lossless option is the dense layout itself (G = 1): a full-height group would hold the same
    # slots and pay for a G:1 multiplexer and lane indices it never needs.
    configs = [PackConfig(method="dense", tile=tile)]
    for group in groups:
        g = min(group, K)  # a group never has more rows than the layer
        for height in sorted(h for h in HEIGHTS if h <= g // 2):
            configs.append(
                PackConfig(method=method, group=g, height=height, tile=tile, seed=seed, permute=permute)
            )
    return list(dict.fromkeys(configs))


def refined_config(front: list[Option], chosen: Option, tried: list[PackConfig], K: int) -> PackConfig | None:
    """One more candidate for a `K`-row layer between the chosen option and the next less lossy one on the
    layer's `front` (between the next more lossy one and the choice when the choice is the least lossy),
    or None when the method has none there.

    Tight and N:M: the untried (group, height) of the method (groups as `candidate_configs` clamps them,
    any height below the group) whose nominal rate `G/h` lies strictly between the pair's, nearest to
    their geometric mean (the largest group on a tie): the grid has no option between dense and 2x, nor
    between 2x and 2.67x. Column combining: the more lossy option's gamma bisected against the nearest
    gentler gamma tried at its alpha and merge. Used when the candidates overshoot a target rate
    (`pipeline.oneshot.plan_rate_sampled`)."""
    index = front.index(chosen)
    if index + 1 < len(front):
        lossy, gentle = front[index], front[index + 1]
    elif index > 0:
        lossy, gentle = front[index - 1], front[index]
    else:
        return None
    config = lossy.config
    if config.method == "column-combining":
        gentler = [
            c.gamma
            for c in tried
            if c.method == config.method and (c.alpha, c.merge) == (config.alpha, config.merge)
            and c.gamma < config.gamma
        ]  # fmt: skip
        low = max(gentler, default=0.0)
        gamma = round((low + config.gamma) / 2, 4)
        return replace(config, gamma=gamma) if low < gamma < config.gamma else None
    if config.method not in ("tight", "nm") or not isinstance(config.height, int):
        return None
    high = config.group / config.height
    low = 1.0 if gentle.config.method == "dense" else _nominal_rate(gentle.config)
    if low is None or not low < high:
        return None
    middle = (low * high) ** 0.5
    seen = {(c.method, c.group, c.height, c.permute) for c in tried}
    groups = TIGHT_GROUPS if config.method == "tight" else NM_GROUPS
    best = None
    for group in sorted({min(g, K) for g in groups}):
        for height in range(1, group):
            rate = group / height
            if low < rate < high and (config.method, group, height, config.permute) not in seen:
                distance = abs(np.log(rate / middle))
                if best is None or distance <= best[0] + 1e-12:
                    best = (distance, group, height)
    if best is None:
        return None
    return replace(config, group=best[1], height=best[2])


def _nominal_rate(config: PackConfig) -> float | None:
    """`G/h` of a tight or N:M config with a fixed height, else None."""
    if config.method in ("tight", "nm") and isinstance(config.height, int):
        return config.group / config.height
    return None


def best_reachable_rate(shapes: dict[str, tuple[int, int]], method: str, tile: int) -> float:
    """The highest rate the candidate options could give at all (one slot row per largest group)."""
    dense = slots = 0
    for K, N in shapes.values():
        groups = [
            c.alpha if c.method == "column-combining" else 1 if c.method == "dense" else c.group
            for c in candidate_configs(method, K, tile)
        ]
        width = layer_tile(N, tile)
        n_tiles = -(-N // width)
        dense += K * N
        slots += -(-K // max(groups)) * width * n_tiles
    return dense / max(slots, 1)


def check_rate(shapes: dict[str, tuple[int, int]], method: str, rate: float, tile: int) -> None:
    """Fail early, before any training, when `rate` is beyond every option."""
    best = best_reachable_rate(shapes, method, tile)
    if rate > best + 1e-9:
        raise TightCompressError(
            f"compression rate {rate:g}x cannot be reached by {method} on these layers (tile {tile}); "
            f"the best reachable is {best:.2f}x"
        )


def evaluate_options(
    matrix: np.ndarray,
    configs: list[PackConfig],
    *,
    plan_iterations: int | None = 30_000,
    workers: int | None = None,
) -> list[Option]:
    """Pack `matrix` with each config (a short search for tight) and record slots and dropped magnitude.

    The configs are packed on `workers` threads (default: `search_workers()`): the searches release the
    GIL and each runs whole on one thread with its own seeded RNG, so the options are the same for any
    number of workers (`tests/test_oneshot_speed.py`)."""
    matrix = np.asarray(matrix)

    def one(config: PackConfig) -> Option:
        trial = replace(config, iterations=plan_iterations) if is_searched(config) else config
        report = pack(matrix, trial).report()
        return Option(config, int(report["packed_slots"]), float(report["dropped_magnitude_fraction"]))

    workers = search_workers() if workers is None else max(1, int(workers))
    searched = sum(is_searched(c) for c in configs)
    if workers == 1 or searched < 2:
        return [one(config) for config in configs]
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=min(workers, len(configs)))
    try:
        return list(pool.map(one, configs))
    finally:  # on Ctrl-C the queued configs are dropped; running ones end within their short search
        pool.shutdown(wait=True, cancel_futures=True)


def capacity_floor_fractions(matrix: np.ndarray, configs: list[PackConfig]) -> list[float]:
    """Per config, a lower bound on the fraction of `|matrix|` its packing drops, without searching: for a
    capped search (tight, N:M with a permutation, a fixed height) the per-column floor of
    `format.build.column_capacity_floor` (a column holds at most `sum_g min(size_g, h)` weights, whatever
    the permutation); 0 for every other config (no bound known)."""
    from tightcompress.format.build import uniform_group_offsets

    magnitude = np.abs(np.asarray(matrix, dtype=np.float64))
    K = magnitude.shape[0]
    total = float(magnitude.sum())
    ascending = None
    floors = []
    for config in configs:
        if not (is_searched(config) and isinstance(config.height, int)) or total <= 0.0:
            floors.append(0.0)
            continue
        if ascending is None:  # per column, the running sums of its smallest values (zeros cost nothing)
            ascending = np.cumsum(np.sort(magnitude, axis=0), axis=0)
        capacity = int(np.minimum(np.diff(uniform_group_offsets(K, config.group)), config.height).sum())
        floors.append(float(ascending[K - capacity - 1].sum()) / total if capacity < K else 0.0)
    return floors


def search_workers() -> int:
    """Threads for independent searches: the cores this process may use (`TIGHTCOMPRESS_SEARCH_THREADS`
    overrides; 1 turns the threads off)."""
    import os

    value = os.environ.get("TIGHTCOMPRESS_SEARCH_THREADS")
    if value is not None:
        try:
            return max(1, int(value))
        except ValueError:
            raise TightCompressError(
                f"TIGHTCOMPRESS_SEARCH_THREADS must be an integer >= 1, got {value!r}"
            ) from None
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def frontier(options: list[Option]) -> list[Option]:
    """Options nobody beats on both slots and dropped magnitude, fewest slots first."""
    best: list[Option] = []
    for option in sorted(options, key=lambda o: (o.slots, o.dropped_fraction)):
        if not best or option.dropped_fraction < best[-1].dropped_fraction - 1e-12:
            best.append(option)
    return best


def choose_options(options: dict[str, list[Option]], sizes: dict[str, int], rate: float) -> dict[str, Option]:
    """Per layer, the option meeting `sum(K*N) / sum(slots) >= rate` with the least summed dropped fraction.

    Every layer counts alike (losing a tenth of the first conv's magnitude is as bad as a tenth of a big
    layer's). Greedy on the exchange rate: start every layer at its least-lossy option, then repeatedly
    take the step (to any option with fewer slots) that adds the least dropped fraction per slot saved.
    Raises if even the smallest options miss the rate, naming the best reachable rate.
    """
    fronts = {name: frontier(opts) for name, opts in options.items()}
    dense = sum(sizes.values())
    budget = dense / rate
    best_rate = dense / sum(front[0].slots for front in fronts.values())
    if best_rate < rate - 1e-9:
        raise TightCompressError(
            f"compression rate {rate:g}x cannot be reached with these options; the best reachable is "
            f"{best_rate:.2f}x"
        )
    pick = {name: len(front) - 1 for name, front in fronts.items()}
    total = sum(front[-1].slots for front in fronts.values())
    while total > budget + 1e-9:
        step = None
        for name, front in fronts.items():
            here = front[pick[name]]
            for index in range(pick[name]):
                there = front[index]
                cost = (there.dropped_fraction - here.dropped_fraction) / (here.slots - there.slots)
                # Prefer a step that finishes the job cheaply over a bigger one.
                if step is None or cost < step[0] - 1e-15:
                    step = (cost, name, index)
        assert step is not None  # the best rate check above guarantees a step exists
        _, name, index = step
        total -= fronts[name][pick[name]].slots - fronts[name][index].slots
        pick[name] = index
    # The last step may overshoot the rate: spend the slack on the best loss reductions that still fit.
    while True:
        best = None
        for name, front in fronts.items():
            here = front[pick[name]]
            for index in range(pick[name] + 1, len(front)):
                there = front[index]
                if total + there.slots - here.slots > budget + 1e-9:
                    break
                gain = here.dropped_fraction - there.dropped_fraction
                if best is None or gain > best[0]:
                    best = (gain, name, index)
        if best is None or best[0] <= 0:
            break
        _, name, index = best
        total += fronts[name][index].slots - fronts[name][pick[name]].slots
        pick[name] = index
    return {name: fronts[name][pick[name]] for name in fronts}


def repack(matrix: np.ndarray, arrangement: PackedMatrix) -> PackedMatrix:
    """Pack `matrix` into the same arrangement (permutations, groups, heights cap) as `arrangement`."""
    packed = build_packed(
        np.ascontiguousarray(matrix),
        method=arrangement.method,
        group=arrangement.group,
        tile=arrangement.tile,
        height_cap=arrangement.height_cap,
        row_perm=arrangement.row_perm,
        col_perm=arrangement.col_perm,
        group_offsets=arrangement.group_offsets,
        # Capped: the arrangement's own heights (column combining's empty-row groups have height 0).
        heights=arrangement.heights if arrangement.height_cap is not None else None,
        info={"extra": dict(arrangement.info.get("extra", {}))},
    )
    packed.info["name"] = arrangement.info.get("name", "matrix")
    return packed


def fit_layers(
    matrices: dict[str, np.ndarray],
    configs: dict[str, PackConfig],
    *,
    final_iterations: int | None = 300_000,
    quiet: bool = False,
) -> dict[str, PackedMatrix]:
    """Pack every matrix with its chosen config (full search); kept positions = the prune-to-fit mask."""
    packed = {}
    for name, matrix in tqdm(
        matrices.items(), desc="pack", unit="layer", disable=quiet, file=sys.stderr, leave=False
    ):
        config = configs[name]
        if is_searched(config) and config.iterations is None and final_iterations is not None:
            config = replace(config, iterations=final_iterations)
        packed[name] = pack(matrix, config, name=name)
    return packed


def plan_rate(
    matrices: dict[str, np.ndarray],
    method: str,
    rate: float,
    *,
    tile: int = 32,
    seed: int = 0,
    plan_iterations: int | None = 30_000,
    quiet: bool = False,
) -> dict[str, Option]:
    """Evaluate the candidate configs of every layer and choose per-layer ones reaching `rate`."""
    options = {}
    items = list(matrices.items())
    for name, matrix in tqdm(
        items, desc=f"plan {method}", unit="layer", disable=quiet, file=sys.stderr, leave=False
    ):
        configs = candidate_configs(method, matrix.shape[0], tile, seed, N=matrix.shape[1])
        options[name] = evaluate_options(matrix, configs, plan_iterations=plan_iterations)
    sizes = {name: int(m.shape[0] * m.shape[1]) for name, m in items}
    return choose_options(options, sizes, rate)
