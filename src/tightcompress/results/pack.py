"""`tightcompress pack --json`: one packed layer, the totals, the options and the notes (also the
base of the simulate and compress reports)."""

from __future__ import annotations

from typing import Annotated, Any

from tightcompress.results.base import Result, Versioned, field, optional


class BitFigures(Result):
    """Bits of a subword packing (a subword layer; compress's subword totals)."""

    dense_bits: int = optional("bits", "subword layers: 8*K*N")
    packed_bits: int = optional("bits", "subword layers: packed slots x slot bits")
    bit_rate: float = optional("x", "subword layers: 8*K*N / (4 * packed slots) (value bits only)")
    bit_rate_with_index: float = optional(
        "x", "subword layers: dense bits / packed bits (index and shift included)"
    )


class PackLayer(BitFigures):
    """One packed layer."""

    name: str = field(
        "-", "layer: its module path (`features.0`, `conv1`); a state-dict key may keep `.weight`"
    )
    K: int = field(
        "rows", "reduction size: input channels x kernel height x kernel width (or input features)"
    )
    N: int = field("columns", "output channels (or output features)")
    nnz: int = field("weights", "nonzero weights given to the packer (after --sparsity)")
    kept_nnz: int = field("weights", "nonzero weights kept in the packed format")
    method: str = field("-", "packing method: tight, nm, column-combining, dense, tight-subword")
    group: int | None = field("rows", "lane width G: rows one PE multiplexes between (G:1 mux)")
    height: int | str | None = field("slots", "slots per group per column: the cap h, or `auto` (lossless)")
    tile: int | None = field(
        "columns", "array columns C per tile (null: one-shot unstructured, an ideal sparse store)"
    )
    n_tiles: int | None = field("tiles", "tiles of C columns: ceil(N / C) (null: unstructured)")
    packed_rows: int | None = field("rows", "physical array rows over all tiles (null: unstructured)")
    packed_slots: int = field("slots", "weight slots stored: packed rows x C summed over tiles")
    compression_rate: float = field("x", "dense slots / packed slots: K*N / packed_slots")
    utilization: float = field("fraction 0-1", "kept nonzeros / packed slots")
    index_bits: int = field("bits", "lane index bits per slot: ceil(log2 G)")
    storage_rate_bits: float = field("x", "8*K*N bits / (8-bit values + index bits of the packed slots)")
    dropped_nnz: int = field(
        "weights", "nonzeros dropped to fit (capped height, N:M, column-combining conflicts)"
    )
    dropped_magnitude_fraction: float = field(
        "fraction 0-1", "sum |w| of dropped weights / sum |w| of the input"
    )
    input_magnitude: float = field("|w|", "sum of |w| of the input matrix")
    lower_bound_slots: int = field(
        "slots", "fewest slots any LOSSLESS packing with this column-to-tile assignment can use (per tile:"
        " the rows of the densest column, and the tile's nonzeros spread evenly over C columns). With a "
        "capped --height the packing drops weights, so packed_slots can be below this bound: compare a "
        "capped run with lower_bound_dropped_magnitude_fraction instead"
    )
    lower_bound_dropped_magnitude_fraction: float = field(
        "fraction 0-1", "least magnitude fraction any arrangement must drop at this height cap (0 if "
        "lossless)"
    )
    seconds: float = field("s", "wall time packing this layer")
    search_iterations: int = optional("moves", "annealing moves tried")
    search_accepted: int = optional("moves", "annealing moves accepted")
    search_initial_cost: float = optional(
        "cost", "search cost before annealing (slots, or dropped |w| when capped)"
    )
    search_final_cost: float = optional("cost", "search cost after annealing")
    search_seconds: float = optional("s", "wall time of the permutation search")
    search_improved: bool = optional(
        "-", "the annealer found an arrangement better than its greedy start (false: the start was packed)"
    )
    seed: int = optional("-", "seed of the search")
    objective: str = optional("-", "capped search objective: magnitude (|w|) or squared (w^2)")
    alpha: int = optional("rows", "column combining: rows per group at most")
    gamma: float = optional(
        "conflicts per column", "column combining: conflicts allowed per output column per group"
    )
    n_groups: int = optional("groups", "row groups (column combining: combined rows)")
    kind: str = optional("-", "zoo layers: conv, depthwise or linear")
    out_pixels: int = optional("pixels", "zoo layers: output pixels per image (input vectors M per image)")
    granularity: str = optional("-", "subword layers: `subword` (4-bit subwords per slot)")
    subword_rows: int = optional(
        "rows", "subword layers: rows of the subword matrix (2 per 8-bit weight row)"
    )
    kept_subwords: int = optional("subwords", "subword layers: nonzero 4-bit subwords kept")
    subword_sparsity: float = optional("fraction 0-1", "subword layers: zero subwords / all subwords")
    value_bits: int = optional("bits", "subword layers: bits of a stored value (4)")
    slot_bits: int = optional("bits", "subword layers: bits per slot: value + lane index + shift bit")
    choice: str = optional("-", "compress: the format chosen for this layer (`tight G=64 h=12`)")
    relative_output_error: float | None = optional(
        "fraction", "--calibration: ||X_p W_kept - X_d W|| / ||X_d W|| on the calibration set (X_p: the "
        "layer's input in the model pruned so far, X_d: in the dense model)"
    )
    relative_output_error_unreconstructed: float = optional(
        "fraction", "--calibration: the same with the kept weights as they were (before the solve)"
    )
    relative_output_error_heldout: float | None = optional(
        "fraction", "--calibration: the same on the held-out calibration rows (one in five) of the solve "
        "fitted on the others, the figure that chose the solve and its damping; null with too few rows to "
        "hold out"
    )
    dropped_weight_fraction: float = optional(
        "fraction 0-1", "one-shot: dropped |w| / |w| of the original weights"
    )
    dropped_saliency_fraction: float = optional(
        "fraction 0-1", "one-shot: dropped |w| x ||x|| / all of it (|w| without calibration)"
    )
    solver: str = optional(
        "-", "--calibration: exact (per output column) or obs-sweep (SparseGPT's) with its damping, or "
        "none; tight-subword: float-round, column-sweep or sweep (GPTQ's, under the subword format) or none"
    )
    relative_output_error_quantized: float = optional(
        "fraction", "tight-subword with calibration: the layer's error with every subword of its int8 "
        "weights kept (quantization alone, on the pruned model's inputs)"
    )
    calibration_rows: int = optional("rows", "--calibration: rows of X (samples x positions) the layer saw")
    estimated_output_error: float = optional(
        "fraction", "--allocation sensitivity: the relative model output error this layer's dropped saliency "
        "alone is estimated to cause, on its curve measured with the layer alone pruned (the planner's cost)"
    )
    option: str = optional("-", "one-shot: the packing option of this layer (`nm G=16 h=8`)")
    permute: bool = optional("-", "nm: the rows carry one searched input-channel permutation (true) or none")
    tile_narrowed_from: int = optional(
        "columns", "the --tile asked for, when the layer has fewer output columns (tile narrowed to N)"
    )
    merge: str = optional("-", "column combining: the merge rule, `authors` or `least-overlap`")
    section: int | None = optional("rows", "column combining: rows per section combined apart (null: off)")
    max_conflicts: int = optional("weights", "column combining: conflicts allowed per group (from gamma)")
    nonempty_rows: int = optional("rows", "column combining: combined rows holding a nonzero")


class PackTotal(BitFigures):
    """Sums over the layers."""

    layers: int = field("layers", "layers in the report")
    dense_slots: int = field("slots", "sum of K*N")
    packed_slots: int = field("slots", "sum of packed slots")
    nnz: int = field("weights", "sum of input nonzeros")
    kept_nnz: int = field("weights", "sum of kept nonzeros")
    dropped_nnz: int = field("weights", "nnz - kept_nnz")
    compression_rate: float = field("x", "dense_slots / packed_slots over all layers (weighted by size)")
    utilization: float = field("fraction 0-1", "kept_nnz / packed_slots")
    storage_rate_bits: float = field("x", "8*dense_slots / (8*packed_slots + index bits)")
    dropped_magnitude_fraction: float = field("fraction 0-1", "dropped |w| / input |w| over all layers")
    lower_bound_slots: int = field("slots", "sum of the layers' lossless lower bounds (see the layer field)")
    seconds: float = field("s", "sum of the layers' packing times (CPU time when layers run in parallel)")


Method = Annotated[str, field("-", "--method")]


class PackOptions(Result):
    """The packing options (simulate adds the array and the input vectors)."""

    method: Method = None
    group: int | None = optional("rows", "--group G")
    height: int | str | None = optional("slots", "--height: a cap or `auto`")
    tile: int | None = optional("columns", "--tile C")
    alpha: int = optional("rows", "--alpha (column combining)")
    gamma: float = optional("conflicts per column", "--gamma (column combining)")
    merge: str = optional("-", "--merge: column combining's merge rule, `authors` or `least-overlap`")
    section: int | None = optional("rows", "--section: combine per section of this many rows (null: off)")
    permute: bool = optional("-", "--permute: nm with one searched input-channel permutation per layer")
    sparsity: float | None = optional("fraction 0-1", "--sparsity: smallest-magnitude fraction zeroed first")
    seed: int = optional("-", "--seed")
    iterations: int | None = optional("moves", "--iterations (null: scaled to the matrix)")
    objective: str = optional("-", "--objective")


class PackConfig(PackOptions):
    """The packing options."""

    method: Method
    one_shot: dict[str, Any] = optional("-", "--calibration: the one-shot settings")


class SkippedLayer(Result):
    """One skipped layer."""

    name: str = optional("-", "state-dict key or module path")
    kind: str = optional("-", "layer kind, e.g. depthwise")
    shape: list[int] = optional("-", "weight shape")
    reason: str = optional("-", "why it was not packed")


class Notes(Result):
    """Where the matrices came from, what was left out and why, and other remarks."""

    zoo: str = optional("-", "zoo model name")
    weights: str = optional("-", "checkpoint path, or the seeded init used")
    groups_from: str = optional("-", "where conv groups were read from (the model class, ONNX, or not known)")
    messages: list[str] = optional(
        "-", "the `note:` lines (simulate: tile cost, baseline pruning; pack and simulate: layers the "
        "search did not improve)"
    )
    skipped_layers: list[SkippedLayer] = optional("-", "layers not packed, and why")


class PackReport(Versioned):
    """`tightcompress pack --json`: every packed layer and the totals."""

    schema_name = "pack"

    config: PackConfig = field("-", "the packing options")
    layers: list[PackLayer] = field("-", "one entry per packed layer, in model order")
    total: PackTotal = field("-", "sums over the layers")
    notes: Notes = optional("-", "where the matrices came from, what was left out and why, and other remarks")
    method: str = optional("-", "--calibration: the one-shot method")
    compression_rate: float = optional("x", "--calibration: total.compression_rate, repeated at the top")
    calibrated: bool = optional("-", "--calibration: whether calibration samples were used")
    calibration_samples: int | None = optional("samples", "--calibration: samples in the calibration file")
    relative_output_error: float | None = optional(
        "fraction", "--calibration: ||f_pruned - f_dense|| / ||f_dense|| of the model outputs"
    )
    seconds: float = optional("s", "--calibration: wall time of the whole one-shot run")
    bit_rate: float = optional(
        "x", "one-shot tight-subword: 8*sum(K*N) / (4 * packed slots), = compression_rate (total too)"
    )
    bit_rate_with_index: float = optional(
        "x", "one-shot tight-subword: dense bits / packed bits, lane index and shift bits in (total too)"
    )
    target_rate: float | None = optional(
        "x", "--rate: the whole-model rate asked (null: one fixed packing config)"
    )
    allocation: str = optional(
        "-", "--rate/--calibration: how each layer's share was chosen: planned (per-layer options, or for "
        "unstructured per-layer kept counts, with the least summed dropped saliency fraction for the "
        "whole-model rate), uniform (unstructured-uniform: the same fraction in every layer), sensitivity "
        "(the least summed estimated output error, each layer's measured on the calibration samples; a run "
        "without calibration that asked for it is planned, with a note) or fixed (one packing config)"
    )
