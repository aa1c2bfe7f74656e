"""`pack()`: the Python entry point that mirrors `tightcompress pack`, with its parameters checked first."""

from __future__ import annotations

import dataclasses
import math
import time
import types
import typing
from dataclasses import dataclass
from typing import Literal

import numpy as np

from tightcompress.errors import TightCompressError
from tightcompress.format.dtypes import search_copy, store_dtype
from tightcompress.format.packed import PackedMatrix

# The numba-compiled baselines and search are imported where they are used (`pack`), so that importing
# the API (and the command line's start-up) does not load numba.

METHODS = ("tight", "nm", "column-combining", "dense")
Method = Literal["tight", "nm", "column-combining", "dense"]


@dataclass(frozen=True)
class PackConfig:
    """Everything that decides how a matrix is packed. Validated on construction."""

    method: Method = "tight"
    group: int = 8
    height: int | Literal["auto"] = "auto"
    tile: int = 32
    alpha: int = 8
    gamma: float = 0.5
    sparsity: float | None = None
    seed: int = 0
    iterations: int | None = None
    objective: Literal["magnitude", "squared"] = "magnitude"
    merge: Literal["authors", "least-overlap"] = "authors"  # column combining's merge rule
    section: int | None = None  # column combining: rows per reduction-axis section (None: whole axis)
    # nm only: search one row (input-channel) permutation per layer before applying N:M (`_pack_searched`)
    permute: bool = False

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.method not in METHODS:
            raise TightCompressError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if not _is_int(self.group) or self.group < 1:
            raise TightCompressError(f"group G must be an integer >= 1, got {self.group!r}")
        if self.group > 256:
            raise TightCompressError(f"group G must be at most 256 (8-bit lane index), got {self.group}")
        if self.height != "auto":
            if not _is_int(self.height) or self.height < 1:
                raise TightCompressError(f"height must be an integer >= 1 or 'auto', got {self.height!r}")
            if self.method in ("tight", "nm") and self.height > self.group:
                raise TightCompressError(f"height h={self.height} exceeds group G={self.group}")
        if not _is_int(self.tile) or self.tile < 1:
            raise TightCompressError(f"tile C must be an integer >= 1, got {self.tile!r}")
        if not _is_int(self.alpha) or not 1 <= self.alpha <= 256:
            raise TightCompressError(f"alpha must be an integer in [1, 256], got {self.alpha!r}")
        if not 0.0 <= float(self.gamma):
            raise TightCompressError(f"gamma must be >= 0, got {self.gamma!r}")
        if self.sparsity is not None and not 0.0 <= self.sparsity < 1.0:
            raise TightCompressError(f"sparsity must be in [0, 1), got {self.sparsity}")
        if self.iterations is not None and (not _is_int(self.iterations) or self.iterations < 0):
            raise TightCompressError(f"iterations must be an integer >= 0, got {self.iterations!r}")
        if self.objective not in ("magnitude", "squared"):
            raise TightCompressError(f"objective must be 'magnitude' or 'squared', got {self.objective!r}")
        if self.section is not None and (not _is_int(self.section) or self.section < 1):
            raise TightCompressError(f"section must be an integer >= 1 or None, got {self.section!r}")
        if self.permute and self.method != "nm":
            raise TightCompressError(
                f"permute applies to method nm only (tight permutes anyway), not {self.method}"
            )
        if not 0 <= self.seed <= _MAX_SEED:
            raise TightCompressError(f"seed must be an integer in [0, 2**32 - 1], got {self.seed!r}")


# ------------------------------------------------------------------------------- generic option checks
_MAX_SEED = 2**32 - 1  # numba's np.random.seed takes a 32-bit seed
_INT64_MAX = 2**63 - 1  # every integer option reaches compiled code as an int64


def check_field_types(config: object) -> None:
    """Check every field of a config dataclass against its type hint; a one-line error names the first bad.

    Understands int, float, bool, str, None, Literal and unions of them (other hints are not checked), so a
    field added to a config is checked by its annotation alone. Integers must fit an int64 and floats must
    be finite: `seed="a"`, `sparsity="0.5"`, `gamma=inf`, `iterations=10**20` are refused here rather than
    deep in NumPy or numba.
    """
    hints = typing.get_type_hints(type(config))
    for field in dataclasses.fields(config):
        hint = hints.get(field.name)
        value = getattr(config, field.name)
        if hint is not None and _matches(value, hint) is False:
            raise TightCompressError(f"{field.name} must be {_describe(hint)}, got {value!r}")


def _matches(value: object, hint: object) -> bool | None:
    """Whether `value` fits `hint`; None when the hint is of a kind not checked here."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        return any(value == option and type(value) is type(option) for option in typing.get_args(hint))
    if origin in (typing.Union, types.UnionType):
        results = [_matches(value, arg) for arg in typing.get_args(hint)]
        return True if any(results) else (None if None in results else False)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool | np.bool_)
    if hint is int:
        return _is_int(value) and -_INT64_MAX - 1 <= int(value) <= _INT64_MAX
    if hint is float:
        return (
            isinstance(value, int | float | np.integer | np.floating)
            and not isinstance(value, bool)
            and (math.isfinite(float(value)))
        )
    if hint is str:
        return isinstance(value, str)
    return None


def _describe(hint: object) -> str:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return " or ".join(repr(option) for option in typing.get_args(hint))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in typing.get_args(hint))
    names = {int: "an integer (int64)", float: "a finite number", bool: "True or False", str: "a string"}
    return "None" if hint is type(None) else names.get(hint, getattr(hint, "__name__", str(hint)))


def check_matrix(weights: np.ndarray, name: str = "matrix") -> np.ndarray:
    """A 2-D, finite, not all-zero floating matrix, or a one-line error naming what is wrong."""
    weights = _as_array(weights, name)
    if weights.ndim != 2:
        raise TightCompressError(
            f"{name}: expected a 2-D K x N matrix (inputs x outputs), got shape {weights.shape}"
        )
    if weights.size == 0:
        raise TightCompressError(f"{name}: the matrix is empty (shape {weights.shape})")
    if not np.issubdtype(weights.dtype, np.floating):
        if not np.issubdtype(weights.dtype, np.integer):
            raise TightCompressError(f"{name}: expected numeric weights, got dtype {weights.dtype}")
        weights = weights.astype(np.float32)
    if not np.all(np.isfinite(weights)):
        raise TightCompressError(f"{name}: the matrix has NaN or infinite weights")
    if not np.any(weights):
        raise TightCompressError(f"{name}: the matrix is all zeros; there is nothing to pack")
    return np.ascontiguousarray(weights)


def check_sums_finite(weights: np.ndarray, name: str = "matrix", *, squared: bool = False) -> None:
    """Refuse a matrix whose total |w| (or w^2 for the squared objective) overflows float64: every report
    fraction divides by it, so the result would be NaN or infinite (1e308 weights). One line, at the door,
    before any work and without NumPy's overflow warning."""
    with np.errstate(over="ignore", invalid="ignore"):
        magnitude = np.abs(weights.astype(np.float64, copy=False))
        total = float(np.add.reduce(magnitude, axis=None))
        if squared and math.isfinite(total):
            total = float(np.add.reduce(np.square(magnitude), axis=None))
    if not math.isfinite(total):
        what = "w^2 (the squared objective)" if squared else "|w|"
        raise TightCompressError(
            f"{name}: the sum of {what} overflows float64 (largest |w| {float(magnitude.max()):.3g}); "
            "rescale the weights"
        )


def _as_array(weights: object, name: str) -> np.ndarray:
    """NumPy view of an array-like; a torch tensor is detached and moved to the CPU (no torch import)."""
    if hasattr(weights, "detach") and hasattr(weights, "cpu"):
        weights = weights.detach().cpu()
        if str(getattr(weights, "dtype", "")) == "torch.bfloat16":
            weights = weights.float()
        weights = weights.numpy()
    try:
        return np.asarray(weights)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TightCompressError(f"{name}: not a numeric array ({str(exc).splitlines()[0]})") from None


def pack(
    weights: np.ndarray, config: PackConfig | None = None, *, name: str = "matrix", **options
) -> PackedMatrix:
    """Pack a NumPy `K x N` matrix (layer `y = x @ W`: K inputs, N outputs) by the configured method.

    K x N is the transpose of PyTorch's `(out, in)` layout: for a PyTorch weight or tensor use
    `tightcompress.pack_weight(weight, ...)`, which converts it. Pass a `PackConfig` or its fields as
    keywords, e.g. `pack(W, method="tight", group=32, height=2, tile=64)`. `method="nm", permute=True` is
    N:M with one searched input-channel (row) permutation per layer: at least as free as NVIDIA's channel
    permutation, since the array's feeder reads K in any order. fp16 and integer weights are searched in
    float32 and their kept values stored in the input dtype. The result has `.to_dense()`, `.matmul(x)`,
    `.report()` and the report figures as properties.
    """
    refuse_torch_tensor(weights)
    if config is None:
        unknown = sorted(set(options) - {f.name for f in dataclasses.fields(PackConfig)})
        if unknown:
            valid = ", ".join(f.name for f in dataclasses.fields(PackConfig))
            raise TightCompressError(f"unknown option {unknown[0]!r} for pack(); the options are {valid}")
        config = PackConfig(**options)
    elif not isinstance(config, PackConfig):
        raise TightCompressError(f"config must be a PackConfig, got {type(config).__name__}")
    elif options:
        raise TightCompressError("give either a PackConfig or keyword options, not both")
    input_dtype = str(np.asarray(weights).dtype)
    weights = check_matrix(weights, name)
    check_sums_finite(weights, name, squared=config.objective == "squared")
    weights = search_copy(weights)
    requested_tile = config.tile
    if config.tile > weights.shape[1]:  # a tile wider than the layer only adds padding columns
        config = dataclasses.replace(config, tile=int(weights.shape[1]))
    if config.sparsity is not None:
        from tightcompress.prune import magnitude_prune

        weights = magnitude_prune(weights, config.sparsity)
        if not np.any(weights):
            raise TightCompressError(f"{name}: sparsity {config.sparsity} leaves no nonzero weight")
    height_cap = None if config.height == "auto" else int(config.height)
    from tightcompress.baselines import pack_column_combining, pack_dense, pack_nm

    if config.method == "dense":
        packed = pack_dense(weights, tile=config.tile)
    elif config.method == "nm" and config.permute:
        packed = _pack_searched(weights, config, height_cap, shared_rows=True)
    elif config.method == "nm":
        packed = pack_nm(weights, group=config.group, height=config.height, tile=config.tile)
        packed.info.setdefault("extra", {})["permute"] = False
    elif config.method == "column-combining":
        packed = pack_column_combining(
            weights,
            alpha=config.alpha,
            gamma=config.gamma,
            tile=config.tile,
            merge=config.merge,
            section=config.section,
        )
    else:
        packed = _pack_searched(weights, config, height_cap)
    packed.info["name"] = name
    if config.tile != requested_tile:
        packed.info.setdefault("extra", {})["tile_narrowed_from"] = int(requested_tile)
    return store_dtype(packed, input_dtype)


def refuse_torch_tensor(weights: object) -> None:
    """`pack` takes NumPy `K x N`; a torch tensor is PyTorch layout `(out, in, ...)`: point to pack_weight."""
    module = type(weights).__module__ or ""
    if module == "torch" or module.startswith("torch."):
        raise TightCompressError(
            "pack() takes a NumPy K x N matrix (inputs x outputs); for a PyTorch weight (out, in[, kh, kw]) "
            "use tightcompress.pack_weight(weight, ...)"
        )


def _pack_searched(
    weights: np.ndarray, config: PackConfig, height_cap: int | None, *, shared_rows: bool = False
) -> PackedMatrix:
    """Tight (per-tile row permutations and column moves), or with `shared_rows` N:M with a channel
    permutation: one row permutation for the whole layer, columns in order. Both by the same annealer,
    budget rules, floor and early stop.

    The permuted N:M is at least as free as NVIDIA's input-channel permutation (apex ASP,
    `allow_permutation=True`; Pool and Yu, NeurIPS 2021): a systolic array's feeder reads the rows of K
    in any order, so no block constraint of the convolution's channel layout is needed.
    """
    from tightcompress.format.build import build_packed, uniform_group_offsets
    from tightcompress.permute import AnnealConfig, search_permutation

    start = time.perf_counter()
    offsets = uniform_group_offsets(weights.shape[0], config.group)
    if shared_rows and height_cap is not None:  # capped N:M: the channel-swap search (h23nmperm)
        from tightcompress.baselines.structured import search_nm_permutation

        result = search_nm_permutation(
            weights, group=config.group, height=height_cap, tile=config.tile, seed=config.seed,
            iterations=config.iterations, objective=config.objective,
        )  # fmt: skip
    else:
        anneal = AnnealConfig(iterations=config.iterations, seed=config.seed, objective=config.objective)
        result = search_permutation(
            weights,
            group_offsets=offsets,
            tile=config.tile,
            height_cap=height_cap,
            config=anneal,
            shared_rows=shared_rows,
        )
    extra = {"permute": True} if shared_rows else {}
    build_cap = height_cap
    if shared_rows and height_cap is None:  # lossless N:M: the least uniform N the found order allows
        from tightcompress.baselines.structured import lossless_nm_height

        build_cap = lossless_nm_height(weights, config.group, result.row_perm[0])
    packed = build_packed(
        weights,
        method="nm" if shared_rows else "tight",
        group=config.group,
        tile=config.tile,
        height_cap=build_cap,
        row_perm=result.row_perm,
        col_perm=result.col_perm,
        group_offsets=offsets,
        # The search's floor is of its objective; it is the |w| floor only for the magnitude objective.
        magnitude_floor=result.lower_bound if config.objective == "magnitude" else None,
        info={
            "extra": {
                **extra,
                "search_iterations": result.iterations,
                "search_accepted": result.accepted,
                "search_initial_cost": result.initial_cost,
                "search_final_cost": result.final_cost,
                # False: the annealer found nothing better than its greedy start (which was packed)
                "search_improved": bool(result.final_cost < result.initial_cost),
                "search_seconds": result.seconds,
                "seed": config.seed,
                "objective": config.objective,
            }
        },
    )
    packed.info["seconds"] = time.perf_counter() - start
    return packed


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)
