"""Build the JSON Schemas of every output file and the reference page `docs/outputs.md` rendered from them.

    python scripts/gen_output_docs.py          # rewrite schemas/*.schema.json and docs/outputs.md
    python scripts/gen_output_docs.py --check  # exit 1 if either is out of date (a test runs this)

Each field is defined once below (type, unit, one-line meaning) and shared by every schema that has it, so
`pack`, `simulate` and `compress` describe their common per-layer fields identically. The schemas are written
self-contained (no cross-file `$ref`), allow additional properties (commands may add fields; a reader must
ignore what it does not know) and require only the fields every current writer emits. The page is rendered
from the written JSON files, not from this script's tables.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_DIR = ROOT / "src" / "tightcompress" / "schemas"
DOC = ROOT / "docs" / "outputs.md"
DRAFT = "https://json-schema.org/draft/2020-12/schema"

NUM, INT, STR, BOOL, OBJ, ARR = "number", "integer", "string", "boolean", "object", "array"


def f(kind: str | list[str], unit: str, meaning: str, **extra: Any) -> dict[str, Any]:
    """One field: JSON type(s), unit (`-` for none), one-line meaning."""
    out: dict[str, Any] = {"type": kind, "description": meaning, "x-unit": unit}
    out.update(extra)
    return out


def obj(meaning: str, props: dict[str, Any], required: list[str] | None = None, **extra: Any) -> dict:
    out: dict[str, Any] = {"type": OBJ, "description": meaning, "properties": props}
    if required:
        out["required"] = required
    out.update(extra)
    return out


def arr(meaning: str, items: dict[str, Any], unit: str = "-") -> dict:
    return {"type": ARR, "description": meaning, "x-unit": unit, "items": items}


# ------------------------------------------------------------------------------------------- pack layer
LOWER_BOUND = (
    "fewest slots any LOSSLESS packing with this column-to-tile assignment can use (per tile: the rows "
    "of the densest column, and the tile's nonzeros spread evenly over C columns). With a capped --height "
    "the packing drops weights, so packed_slots can be below this bound: compare a capped run with "
    "lower_bound_dropped_magnitude_fraction instead"
)
PACK_LAYER = {
    "name": f(
        STR, "-", "layer: its module path (`features.0`, `conv1`); a state-dict key may keep `.weight`"
    ),
    "K": f(INT, "rows", "reduction size: input channels x kernel height x kernel width (or input features)"),
    "N": f(INT, "columns", "output channels (or output features)"),
    "nnz": f(INT, "weights", "nonzero weights given to the packer (after --sparsity)"),
    "kept_nnz": f(INT, "weights", "nonzero weights kept in the packed format"),
    "method": f(STR, "-", "packing method: tight, nm, column-combining, dense, tight-subword"),
    "group": f([INT, "null"], "rows", "lane width G: rows one PE multiplexes between (G:1 mux)"),
    "height": f([INT, STR, "null"], "slots", "slots per group per column: the cap h, or `auto` (lossless)"),
    "tile": f(INT, "columns", "array columns C per tile"),
    "n_tiles": f(INT, "tiles", "tiles of C columns: ceil(N / C)"),
    "packed_rows": f(INT, "rows", "physical array rows over all tiles"),
    "packed_slots": f(INT, "slots", "weight slots stored: packed rows x C summed over tiles"),
    "compression_rate": f(NUM, "x", "dense slots / packed slots: K*N / packed_slots"),
    "utilization": f(NUM, "fraction 0-1", "kept nonzeros / packed slots"),
    "index_bits": f(INT, "bits", "lane index bits per slot: ceil(log2 G)"),
    "storage_rate_bits": f(NUM, "x", "8*K*N bits / (8-bit values + index bits of the packed slots)"),
    "dropped_nnz": f(
        INT, "weights", "nonzeros dropped to fit (capped height, N:M, column-combining conflicts)"
    ),
    "dropped_magnitude_fraction": f(NUM, "fraction 0-1", "sum |w| of dropped weights / sum |w| of the input"),
    "input_magnitude": f(NUM, "|w|", "sum of |w| of the input matrix"),
    "lower_bound_slots": f(INT, "slots", LOWER_BOUND),
    "lower_bound_dropped_magnitude_fraction": f(
        NUM,
        "fraction 0-1",
        "least magnitude fraction any arrangement must drop at this height cap (0 if lossless)",
    ),
    "seconds": f(NUM, "s", "wall time packing this layer"),
    "search_iterations": f(INT, "moves", "annealing moves tried"),
    "search_accepted": f(INT, "moves", "annealing moves accepted"),
    "search_initial_cost": f(NUM, "cost", "search cost before annealing (slots, or dropped |w| when capped)"),
    "search_final_cost": f(NUM, "cost", "search cost after annealing"),
    "search_seconds": f(NUM, "s", "wall time of the permutation search"),
    "search_improved": f(
        BOOL,
        "-",
        "the annealer found an arrangement better than its greedy start (false: the start was packed)",
    ),
    "seed": f(INT, "-", "seed of the search"),
    "objective": f(STR, "-", "capped search objective: magnitude (|w|) or squared (w^2)"),
    "alpha": f(INT, "rows", "column combining: rows per group at most"),
    "gamma": f(
        NUM, "conflicts per column", "column combining: conflicts allowed per output column per group"
    ),
    "n_groups": f(INT, "groups", "row groups (column combining: combined rows)"),
    "kind": f(STR, "-", "zoo layers: conv, depthwise or linear"),
    "out_pixels": f(INT, "pixels", "zoo layers: output pixels per image (input vectors M per image)"),
    "granularity": f(STR, "-", "subword layers: `subword` (4-bit subwords per slot)"),
    "subword_rows": f(INT, "rows", "subword layers: rows of the subword matrix (2 per 8-bit weight row)"),
    "kept_subwords": f(INT, "subwords", "subword layers: nonzero 4-bit subwords kept"),
    "subword_sparsity": f(NUM, "fraction 0-1", "subword layers: zero subwords / all subwords"),
    "value_bits": f(INT, "bits", "subword layers: bits of a stored value (4)"),
    "slot_bits": f(INT, "bits", "subword layers: bits per slot: value + lane index + shift bit"),
    "dense_bits": f(INT, "bits", "subword layers: 8*K*N"),
    "packed_bits": f(INT, "bits", "subword layers: packed slots x slot bits"),
    "bit_rate": f(NUM, "x", "subword layers: 8*K*N / (4 * packed slots) (value bits only)"),
    "bit_rate_with_index": f(NUM, "x", "subword layers: dense bits / packed bits (index and shift included)"),
    "choice": f(STR, "-", "compress: the format chosen for this layer (`tight G=64 h=12`)"),
    "relative_output_error": f(
        [NUM, "null"], "fraction",
        "--calibration: ||X_p W_kept - X_d W|| / ||X_d W|| on the calibration set (X_p: the layer's input in "
        "the model pruned so far, X_d: in the dense model)",
    ),
    "relative_output_error_unreconstructed": f(
        NUM, "fraction", "--calibration: the same with the kept weights as they were (before the solve)"
    ),
    "relative_output_error_heldout": f(
        [NUM, "null"], "fraction",
        "--calibration: the same on the held-out calibration rows (one in five) of the solve fitted on the "
        "others, the figure that chose the solve and its damping; null with too few rows to hold out",
    ),
    "dropped_weight_fraction": f(NUM, "fraction 0-1", "one-shot: dropped |w| / |w| of the original weights"),
    "dropped_saliency_fraction": f(
        NUM, "fraction 0-1", "one-shot: dropped |w| x ||x|| / all of it (|w| without calibration)"
    ),
    "solver": f(
        STR, "-",
        "--calibration: exact (per output column) or obs-sweep (SparseGPT's) with its damping, or none; "
        "tight-subword: float-round, column-sweep or sweep (GPTQ's, under the subword format) or none",
    ),
    "relative_output_error_quantized": f(
        NUM, "fraction",
        "tight-subword with calibration: the layer's error with every subword of its int8 weights kept "
        "(quantization alone, on the pruned model's inputs)",
    ),
    "calibration_rows": f(INT, "rows", "--calibration: rows of X (samples x positions) the layer saw"),
    "option": f(STR, "-", "one-shot: the packing option of this layer (`nm G=16 h=8`)"),
}
# pack --rate --method unstructured: an ideal sparse store (one slot per kept weight), not an array layout
UNSTRUCTURED_LAYER = {
    "tile": f([INT, "null"], "columns", "array columns C per tile (null: unstructured, no array layout)"),
    "n_tiles": f([INT, "null"], "tiles", "tiles of C columns: ceil(N / C) (null: unstructured)"),
    "packed_rows": f([INT, "null"], "rows", "physical array rows over all tiles (null: unstructured)"),
}
PACK_LAYER_REQUIRED = [
    "name", "K", "N", "nnz", "kept_nnz", "method", "group", "height", "tile", "n_tiles", "packed_rows",
    "packed_slots", "compression_rate", "utilization", "index_bits", "storage_rate_bits", "dropped_nnz",
    "dropped_magnitude_fraction", "input_magnitude", "lower_bound_slots",
    "lower_bound_dropped_magnitude_fraction", "seconds",
]  # fmt: skip

PACK_TOTAL = {
    "layers": f(INT, "layers", "layers in the report"),
    "dense_slots": f(INT, "slots", "sum of K*N"),
    "packed_slots": f(INT, "slots", "sum of packed slots"),
    "nnz": f(INT, "weights", "sum of input nonzeros"),
    "kept_nnz": f(INT, "weights", "sum of kept nonzeros"),
    "dropped_nnz": f(INT, "weights", "nnz - kept_nnz"),
    "compression_rate": f(NUM, "x", "dense_slots / packed_slots over all layers (weighted by size)"),
    "utilization": f(NUM, "fraction 0-1", "kept_nnz / packed_slots"),
    "storage_rate_bits": f(NUM, "x", "8*dense_slots / (8*packed_slots + index bits)"),
    "dropped_magnitude_fraction": f(NUM, "fraction 0-1", "dropped |w| / input |w| over all layers"),
    "lower_bound_slots": f(INT, "slots", "sum of the layers' lossless lower bounds (see the layer field)"),
    "seconds": f(NUM, "s", "sum of the layers' packing times (CPU time when layers run in parallel)"),
}
PACK_TOTAL_REQUIRED = list(PACK_TOTAL)

PACK_CONFIG = {
    "method": f(STR, "-", "--method"),
    "group": f([INT, "null"], "rows", "--group G"),
    "height": f([INT, STR, "null"], "slots", "--height: a cap or `auto`"),
    "tile": f([INT, "null"], "columns", "--tile C"),
    "alpha": f(INT, "rows", "--alpha (column combining)"),
    "gamma": f(NUM, "conflicts per column", "--gamma (column combining)"),
    "merge": f(STR, "-", "--merge: column combining's merge rule, `authors` or `least-overlap`"),
    "section": f([INT, "null"], "rows", "--section: combine per section of this many rows (null: off)"),
    "permute": f(BOOL, "-", "--permute: nm with one searched input-channel permutation per layer"),
    "sparsity": f([NUM, "null"], "fraction 0-1", "--sparsity: smallest-magnitude fraction zeroed first"),
    "seed": f(INT, "-", "--seed"),
    "iterations": f([INT, "null"], "moves", "--iterations (null: scaled to the matrix)"),
    "objective": f(STR, "-", "--objective"),
}

ONE_SHOT_FIELDS = {
    "method": f(STR, "-", "--calibration: the one-shot method"),
    "compression_rate": f(NUM, "x", "--calibration: total.compression_rate, repeated at the top"),
    "calibrated": f(BOOL, "-", "--calibration: whether calibration samples were used"),
    "calibration_samples": f([INT, "null"], "samples", "--calibration: samples in the calibration file"),
    "relative_output_error": f(
        [NUM, "null"], "fraction", "--calibration: ||f_pruned - f_dense|| / ||f_dense|| of the model outputs"
    ),
    "seconds": f(NUM, "s", "--calibration: wall time of the whole one-shot run"),
    "bit_rate": f(
        NUM, "x", "one-shot tight-subword: 8*sum(K*N) / (4 * packed slots), = compression_rate (total too)"
    ),
    "bit_rate_with_index": f(
        NUM, "x", "one-shot tight-subword: dense bits / packed bits, lane index and shift bits in (total too)"
    ),
    "target_rate": f(
        [NUM, "null"], "x", "--rate: the whole-model rate asked (null: one fixed packing config)"
    ),
    "allocation": f(
        STR,
        "-",
        "--rate/--calibration: how each layer's share was chosen: planned (per-layer options, or for "
        "unstructured per-layer kept counts, with the least summed dropped saliency fraction for the "
        "whole-model rate), uniform (unstructured-uniform: the same fraction in every layer) or fixed "
        "(one packing config)",
    ),
}

NOTES = obj(
    "where the matrices came from, what was left out and why, and other remarks",
    {
        "zoo": f(STR, "-", "zoo model name"),
        "weights": f(STR, "-", "checkpoint path, or the seeded init used"),
        "groups_from": f(STR, "-", "where conv groups were read from (the model class, ONNX, or not known)"),
        "messages": arr(
            "the `note:` lines (simulate: tile cost, baseline pruning; "
            "pack and simulate: layers the search did not improve)",
            {"type": STR},
        ),
        "skipped_layers": arr(
            "layers not packed, and why",
            obj(
                "one skipped layer",
                {
                    "name": f(STR, "-", "state-dict key or module path"),
                    "kind": f(STR, "-", "layer kind, e.g. depthwise"),
                    "shape": arr("weight shape", {"type": INT}),
                    "reason": f(STR, "-", "why it was not packed"),
                },
            ),
        ),
    },
)

# ------------------------------------------------------------------------------------- hardware fields
HW_COMMON = {
    "cycles": f(
        INT, "cycles", "cycles of the packed layer on the array (weight-stationary), stall_cycles included"
    ),
    "stall_cycles": f(
        INT,
        "cycles",
        "cycles added because a buffer's bandwidth (--arch) cannot feed the array; 0 by default",
    ),
    "dense_stall_cycles": f(INT, "cycles", "the same for the dense layer"),
    "cc_stall_cycles": f(INT, "cycles", "the same for the column-combining packing"),
    "dense_cycles": f(INT, "cycles", "cycles of the dense layer on the same array and input vectors"),
    "speedup": f(NUM, "x", "dense_cycles / cycles"),
    "utilization_pe": f(NUM, "fraction 0-1", "useful MACs / (PEs x cycles)"),
    "dense_utilization_pe": f(
        NUM, "fraction 0-1", "the same for the dense layer running every nonzero the method was given"
    ),
    "dense_useful_macs": f(INT, "MACs", "useful MACs of the dense layer: the input's nonzeros x M"),
    "useful_macs": f(INT, "MACs", "multiply-accumulates with a nonzero weight"),
    "pe_cycles": f(INT, "PE-cycles", "PEs x cycles of the packed layer"),
    "dense_pe_cycles": f(INT, "PE-cycles", "PEs x cycles of the dense layer"),
    "energy_pj": f(NUM, "pJ", "modelled energy of the packed layer (hw/energy.py)"),
    "dense_energy_pj": f(NUM, "pJ", "modelled energy of the dense layer"),
    "energy_gain": f(NUM, "x", "dense_energy_pj / energy_pj"),
    "energy_breakdown_pj": {
        "type": OBJ,
        "description": "energy by part: mac, mux, weight_reg, act_forward, sram_*, dram_weights, "
        "dram_activations and dram_outputs (traffic of buffers too small, --arch; 0 by default)",
        "x-unit": "pJ",
        "additionalProperties": {"type": NUM},
    },
    "cc_cycles": f(INT, "cycles", "cycles of the same layer packed by column combining (the baseline)"),
    "speedup_vs_cc": f(NUM, "x", "cc_cycles / cycles"),
    "cc_energy_pj": f(NUM, "pJ", "energy of the column-combining packing"),
    "energy_gain_vs_cc": f(NUM, "x", "cc_energy_pj / energy_pj"),
    "bitexact": f(BOOL, "-", "--check-bitexact: the int8 array simulation matched an exact matmul"),
    "dense_energy_breakdown_pj": {
        "type": OBJ,
        "description": "energy of the dense layer by part (as energy_breakdown_pj)",
        "x-unit": "pJ",
        "additionalProperties": {"type": NUM},
    },
    "cc_energy_breakdown_pj": {
        "type": OBJ,
        "description": "energy of the column-combining packing by part (as energy_breakdown_pj)",
        "x-unit": "pJ",
        "additionalProperties": {"type": NUM},
    },
    "cc_utilization_pe": f(NUM, "fraction 0-1", "PE utilization of the column-combining packing"),
    "cc_nnz": f(INT, "weights", "nonzero weights given to column combining"),
    "cc_dropped_nnz": f(INT, "weights", "weights column combining prunes to reach its cycles and energy"),
    "cc_dropped_magnitude_fraction": f(
        NUM, "fraction 0-1", "their share of the |w| given to column combining"
    ),
    "cc_input_magnitude": f(NUM, "|w|", "summed |w| given to column combining"),
    "accesses": {
        "type": OBJ,
        "description": "memory accesses the energy model counts: sram_weight_reads, sram_index_reads, "
        "sram_activation_reads, sram_output_writes, sram_output_reads (partial sums), dram_weight_reads, "
        "and for buffers too small (--arch) dram_activation_reads, dram_partial_sum_writes, "
        "dram_partial_sum_reads, dram_output_writes",
        "x-unit": "accesses",
        "additionalProperties": {"type": NUM},
    },
}
HW_LAYER = {
    "array": f(STR, "PEs", "array rows x columns, e.g. 32x32"),
    "m": f(INT, "vectors", "input vectors M run through the layer"),
    "passes": f(INT, "passes", "array passes (groups of tiles loaded together)"),
    "folds": f(INT, "folds", "row/column folds of the packed layer"),
    "dense_folds": f(INT, "folds", "folds of the dense layer"),
    "min_folds": f(INT, "folds", "the fewest folds the layer's passes can take: one per pass"),
    "at_min_folds": f(
        BOOL,
        "-",
        "folds == min_folds: every pass fits in one fold of the array's rows, so a higher "
        "compression rate saves this layer's memory but not its cycles (why cycles stop falling)",
    ),
    **HW_COMMON,
}
HW_LAYER_REQUIRED = [
    "array",
    "m",
    "cycles",
    "dense_cycles",
    "speedup",
    "energy_pj",
    "dense_energy_pj",
    "energy_gain",
]
HW_TOTAL_REQUIRED = ["cycles", "dense_cycles", "speedup", "energy_pj", "dense_energy_pj", "energy_gain"]

ENERGY_FIELDS = (
    "add8_pj", "mult8_pj", "add32_pj", "mult32_pj", "mux2_pj_per_bit", "reg_pj_per_bit",
    "sram_weight_pj_per_bit", "sram_index_pj_per_bit", "sram_act_pj_per_bit", "sram_out_pj_per_bit",
    "dram_pj_per_bit",
)  # fmt: skip
ENERGY_TABLE = {
    "type": OBJ,
    "description": "the per-operation energies used (hw/energy.py EnergyTable: pJ per op or bit) and source",
    "x-unit": "pJ",
}

SIM_AREA_TOTAL = {
    "area_mm2": f(NUM, "mm^2", "--area: cell area of the array that runs the network (hw/area.py)"),
    "dense_area_mm2": f(NUM, "mm^2", "--area: cell area of the dense array"),
    "cc_area_mm2": f(NUM, "mm^2", "--area: cell area of column combining's array (alpha lanes)"),
    "throughput_gmacs": f(
        NUM, "GMAC/s", "--area: the network's MACs (nonzeros given x M) per second at the clock"
    ),
    "dense_throughput_gmacs": f(NUM, "GMAC/s", "--area: the same work on the dense array"),
    "cc_throughput_gmacs": f(NUM, "GMAC/s", "--area: the same work at column combining's cycles"),
    "throughput_gmacs_per_mm2": f(NUM, "GMAC/s/mm^2", "--area: throughput_gmacs / area_mm2"),
    "dense_throughput_gmacs_per_mm2": f(NUM, "GMAC/s/mm^2", "--area: the dense array's"),
    "cc_throughput_gmacs_per_mm2": f(NUM, "GMAC/s/mm^2", "--area: column combining's"),
    "throughput_per_area_gain": f(NUM, "x", "--area: throughput per mm^2 over the dense array's"),
    "throughput_per_area_gain_vs_cc": f(NUM, "x", "--area: throughput per mm^2 over column combining's"),
}
SIM_AREA = obj(
    "--area: the arrays synthesised (one PE for every layer: the widest multiplexer any layer needs)",
    {
        "method": f(STR, "-", "the PE's method (tight, nm, column-combining, dense, tight-subword)"),
        "lanes": f(INT, "lanes", "the PE's LANES (G)"),
        "pe_area_um2": f(NUM, "um^2", "cell area of one PE"),
        "array_area_um2": f(NUM, "um^2", "cell area of the array"),
        "dense_pe_area_um2": f(NUM, "um^2", "the dense PE's"),
        "dense_array_area_um2": f(NUM, "um^2", "the dense array's"),
        "cc_alpha": f(INT, "lanes", "column combining's alpha (its PE's lanes)"),
        "cc_pe_area_um2": f(NUM, "um^2", "column combining's PE"),
        "cc_array_area_um2": f(NUM, "um^2", "column combining's array"),
        "clock_mhz": f(NUM, "MHz", "the clock of the throughput figures (--arch)"),
        "library": f(STR, "-", "the cell library of the areas"),
    },
)

ARCH_INF = "a number, or inf in the TOML file (null in a report): unlimited"


def arch_sections(*, report: bool) -> dict[str, Any]:
    """The sections of an architecture file (`hw/arch.py`); `report=True`: as `simulate` reports them."""
    inf_type = [NUM, "null"] if report else NUM

    def buffer(name: str, what: str) -> dict:
        return obj(
            f"the {name} buffer: {what}",
            {
                "size_kb": f(inf_type, "KiB", f"SRAM capacity ({ARCH_INF}: nothing spills to DRAM)"),
                "bandwidth_bits_per_cycle": f(
                    inf_type, "bits/cycle", f"bits per cycle to or from the array ({ARCH_INF}: no stalls)"
                ),
            },
            additionalProperties=report,
        )

    return {
        "array": obj(
            "the PE array",
            {
                "rows": f(INT, "PEs", "PE rows R", minimum=1),
                "cols": f(INT, "PEs", "PE columns C", minimum=1),
                "clock_mhz": f(NUM, "MHz", "clock frequency (cycles to seconds)", exclusiveMinimum=0),
            },
            additionalProperties=report,
        ),
        "bits": obj(
            "operand widths",
            {
                "weight": f(INT, "bits", "weight bits of a word-level slot", minimum=1),
                "activation": f(INT, "bits", "activation bits", minimum=1),
                "accumulator": f(INT, "bits", "partial-sum bits", minimum=1),
            },
            additionalProperties=report,
        ),
        "buffers": obj(
            "on-chip SRAM buffers",
            {
                "weights": buffer("weights", "packed weights and lane indices"),
                "activations": buffer("activations", "the layer's inputs the feeder reads"),
                "outputs": buffer("outputs", "partial sums and the layer's outputs"),
            },
            additionalProperties=report,
        ),
    }


VERSION_FIELDS = {
    "tightcompress_version": f(STR, "-", "version of tightcompress that wrote the file"),
    "report_version": f(INT, "-", "report format version; readers refuse other versions", const=1),
}


def pack_layer(extra: dict | None = None, required: list[str] | None = None) -> dict:
    return obj("one packed layer", {**PACK_LAYER, **(extra or {})}, PACK_LAYER_REQUIRED + (required or []))


def report_schema(title: str, meaning: str, *, layer: dict, total: dict, config: dict, extra: dict,
                  required: list[str]) -> dict:  # fmt: skip
    return {
        "$schema": DRAFT,
        "$id": f"tightcompress/{title}.schema.json",
        "title": title,
        "description": meaning,
        "type": OBJ,
        "properties": {
            **VERSION_FIELDS,
            "config": config,
            "layers": arr("one entry per packed layer, in model order", layer),
            "total": total,
            **extra,
        },
        "required": ["tightcompress_version", "report_version", "config", "layers", "total", *required],
    }


def schemas() -> dict[str, dict]:
    pack = report_schema(
        "pack",
        "`tightcompress pack --json`: every packed layer and the totals.",
        layer=pack_layer(UNSTRUCTURED_LAYER),
        total=obj("sums over the layers", PACK_TOTAL, PACK_TOTAL_REQUIRED),
        config=obj(
            "the packing options",
            {**PACK_CONFIG, "one_shot": {"type": OBJ, "description": "--calibration: the one-shot settings"}},
            ["method"],
        ),
        extra={"notes": NOTES, **ONE_SHOT_FIELDS},
        required=[],
    )
    simulate = report_schema(
        "simulate",
        "`tightcompress simulate --json`: the pack report plus cycles, PE utilization and energy per layer "
        "on one array, against the dense layer and column combining.",
        layer=pack_layer(HW_LAYER, HW_LAYER_REQUIRED),
        total=obj(
            "sums over the layers; ratios over the sums",
            {**PACK_TOTAL, **HW_COMMON, **SIM_AREA_TOTAL},
            PACK_TOTAL_REQUIRED + HW_TOTAL_REQUIRED,
        ),
        config=obj(
            "the packing options, the array and the input vectors",
            {
                **PACK_CONFIG,
                "array": f(STR, "PEs", "--array rows x columns"),
                "m_source": f(STR, "-", "where M came from: topology, model, --vectors or assumed 1"),
                "packed_file": f(STR, "-", "the packed input (its layers' options are in the layers)"),
                "arch": f(STR, "file", "--arch: the architecture file"),
                "match": f(
                    [STR, "null"],
                    "-",
                    "--match dropped: each layer's height is the least whose dropped |w| is at most column "
                    "combining's; null: the heights given",
                ),
            },
            ["array", "m_source"],
        ),
        extra={
            "energy_table": ENERGY_TABLE,
            "architecture": obj(
                "the architecture simulated (--arch file or built-in; --array applied); unlimited as null",
                arch_sections(report=True),
            ),
            "area": SIM_AREA,
            "notes": NOTES,
            "weights": f(STR, "-", "a topology alone: the seeded random weights used"),
        },
        required=["energy_table"],
    )
    accuracy = obj(
        "top-1 test accuracy after each stage",
        {
            "dense": f(NUM, "%", "the incoming dense model"),
            "unstructured": f(NUM, "%", "word: after gradual unstructured pruning"),
            "prune_to_fit": f(NUM, "%", "after pruning to fit the format, before fine-tuning"),
            "packed_finetuned": f(NUM, "%", "final: packed and fine-tuned (the model written to model.pt)"),
            "start": f(NUM, "%", "subword: the model the subword pipeline started from"),
            "quantized": f(NUM, "%", "subword: after int8 quantization"),
            "subword_pruned": f(NUM, "%", "subword: after gradual subword pruning"),
        },
        ["dense", "packed_finetuned"],
    )
    compress_config = obj(
        "the pipeline options (CompressConfig, either granularity) plus workflow",
        {
            "workflow": f(STR, "-", "always `compress`", const="compress"),
            "granularity": f(STR, "-", "subword runs: `subword`"),
            "method": f(STR, "-", "word runs: --method"),
            "rate": f([NUM, "null"], "x", "--rate target over the packed conv+linear layers (not depthwise)"),
            "bit_rate": f(NUM, "x", "subword: --bit-rate target"),
            "group": f([INT, "null"], "rows", "--group (explicit mode)"),
            "height": f([INT, "null"], "slots", "--height (explicit mode)"),
            "tile": f(INT, "columns", "--tile C"),
            "sparsity": f([NUM, "null"], "fraction 0-1", "--sparsity unstructured target"),
            "seed": f(INT, "-", "--seed"),
            "lr": f(NUM, "-", "--lr"),
            "prune_rounds": f(INT, "rounds", "--prune-rounds"),
            "prune_epochs": f(NUM, "epochs", "--prune-epochs"),
            "finetune_epochs": f(NUM, "epochs", "--finetune-epochs"),
            "format_rounds": f(INT, "rounds", "--format-rounds"),
            "world_size": f(INT, "processes", "processes that fine-tuned (torchrun); 1 for one process"),
            "device": f(STR, "-", "where training ran: `cpu` or `cuda`"),
        },
        ["workflow"],
    )
    compress = report_schema(
        "compress",
        "`compress --out-dir DIR`: DIR/report.json (word or subword granularity): the packed layers of the "
        "fine-tuned model, its accuracy after each stage and (word) its cycles and energy per image.",
        layer=pack_layer({**HW_LAYER}),
        total=obj(
            "sums over the layers",
            {
                **PACK_TOTAL,
                **{
                    k: PACK_LAYER[k] for k in ("dense_bits", "packed_bits", "bit_rate", "bit_rate_with_index")
                },
            },
            PACK_TOTAL_REQUIRED,
        ),
        config=compress_config,
        extra={
            "accuracy": accuracy,
            "hardware": obj(
                "the whole model on the reference array, per image: the packed layers and the layers left "
                "dense (dense_layers, at their dense cost)",
                {
                    "array": f(STR, "PEs", "array rows x columns"),
                    "per": f(STR, "-", "what one count covers: `image`"),
                    "layers_at_min_folds": f(
                        INT, "layers", "packed layers already at their minimum folds (layers[].at_min_folds)"
                    ),
                    **HW_COMMON,
                },
                ["array", "per", *HW_TOTAL_REQUIRED],
            ),
            "compression_rate": f(
                NUM,
                "x",
                "the rate over every conv/linear weight of the model: "
                "model_weights.compression_rate (layers left dense count at 1x); without such layers, = "
                "packed_compression_rate",
            ),
            "packed_compression_rate": f(
                NUM,
                "x",
                "the rate over the packed layers alone (what --rate targets; word: = "
                "total.compression_rate, subword: the word-equivalent bit rate); per layer: "
                "layers[].compression_rate",
            ),
            "model_weights": obj(
                "every conv and linear weight of the model, packed or left dense (biases and normalisation "
                "parameters are not counted)",
                {
                    "total": f(INT, "weights", "packed + left_dense"),
                    "packed": f(INT, "weights", "weights of the packed layers (sum of K*N)"),
                    "left_dense": f(INT, "weights", "weights of the layers left dense (dense_layers)"),
                    "stored_slots": f(NUM, "slots", "packed / packed_compression_rate + left_dense"),
                    "compression_rate": f(NUM, "x", "total / stored_slots"),
                },
                ["total", "packed", "left_dense", "stored_slots", "compression_rate"],
            ),
            "dense_layers": arr(
                "conv/linear layers left dense (depthwise convs), run dense on the reference array per "
                "image; their cycles and energy are in the hardware totals",
                obj(
                    "one layer left dense",
                    {
                        "name": f(STR, "-", "module path"),
                        "kind": f(STR, "-", "why it is dense: `depthwise`"),
                        "shape": arr("weight shape", {"type": INT}),
                        "groups": f(INT, "groups", "the conv's groups"),
                        "mapping": f(
                            STR,
                            "-",
                            "how it runs, the cheaper in cycles: `per group` (one GEMM a group) "
                            "or `block-diagonal` (one dense GEMM, the groups on its diagonal)",
                        ),
                        "weights": f(INT, "weights", "weights of the layer"),
                        **HW_LAYER,
                    },
                    ["name", "kind", "shape", "weights", "m", "cycles", "dense_cycles", "energy_pj"],
                ),
            ),
            "notes": NOTES,
            "budget": obj(
                "the training the run was given, in optimizer steps (pipeline.train: max(1, round(epochs x "
                "steps_per_epoch)) a call)",
                {
                    "train_images": f(INT, "images", "examples in the training split"),
                    "test_images": f(INT, "images", "examples in the held-out split the accuracies are on"),
                    "batch_size": f(INT, "images", "examples per optimizer step over all processes"),
                    "steps_per_epoch": f(INT, "steps", "ceil(train_images / batch_size)"),
                    "prune_rounds": f(INT, "rounds", "--prune-rounds"),
                    "prune_steps_per_round": f(INT, "steps", "training steps after each pruning round"),
                    "format_rounds": f(INT, "rounds", "format-aware rounds (1 in explicit mode)"),
                    "finetune_steps_per_round": f(
                        INT, "steps", "fine-tuning steps of each format round (the last may repeat)"
                    ),
                    "max_fit_rounds": f(
                        INT, "rounds", "at most this many fine-tunes of the last format round"
                    ),
                },
            ),
            "unstructured_sparsity": f(
                [NUM, "null"], "fraction 0-1", "word: sparsity after unstructured pruning"
            ),
            "choices": {
                "type": OBJ,
                "description": "the format chosen per layer: `tight G=64 h=12`, `dense`, ...",
                "x-unit": "-",
                "additionalProperties": {"type": STR},
            },
            "method": f(STR, "-", "subword: `tight-subword`"),
            "granularity": f(STR, "-", "subword: `subword`"),
            "bit_rate": f(NUM, "x", "subword: 8*K*N / (4 * packed slots) over all layers"),
            "bit_rate_with_index": f(NUM, "x", "subword: dense bits / packed bits with index and shift bits"),
            "subword_sparsity": f(NUM, "fraction 0-1", "subword: zero subwords / all subwords"),
            "seconds": f(NUM, "s", "wall time of the pipeline (dense evaluation to the report)"),
            "seconds_prune_stage": f(NUM, "s", "wall time of the pruning stage"),
            "seconds_plan_and_pack": f(NUM, "s", "wall time of planning and packing (searches and repacks)"),
        },
        required=["accuracy", "compression_rate", "choices"],
    )
    demo_row = obj(
        "one method",
        {
            "method": f(STR, "-", "dense (the reference row), tight, column-combining, nm or tight-subword"),
            "compression_rate": f(NUM, "x", "measured compression rate over all conv+linear layers"),
            "accuracy": f(NUM, "%", "top-1 test accuracy after packing and fine-tuning"),
            "accuracy_drop": f(NUM, "percentage points", "dense accuracy - accuracy"),
            "bit_rate": f(NUM, "x", "weight bits saved: 8-bit dense bits / packed value bits"),
            "bit_rate_with_index": f(NUM, "x", "tight-subword row: dense bits / packed bits with index bits"),
            "speedup": f(NUM, "x", "dense cycles / packed cycles on the reference array, per image"),
            "energy_gain": f(NUM, "x", "dense energy / packed energy on the reference array, per image"),
        },
        ["method", "compression_rate", "accuracy", "accuracy_drop"],
    )
    demo = {
        "$schema": DRAFT,
        "$id": "tightcompress/demo.schema.json",
        "title": "demo",
        "description": "`tightcompress demo --json`: one row per method, tight against column combining.",
        "type": OBJ,
        "properties": {
            "rows": arr("one row per method, in the order run", demo_row),
            "tight_vs_column_combining": {
                "type": [OBJ, "null"],
                "description": "tight over column combining on the reference array (null unless both ran)",
                "x-unit": "-",
                "properties": {
                    "array": f(STR, "PEs", "array rows x columns"),
                    "layers": arr(
                        "per layer",
                        obj(
                            "one layer",
                            {
                                "name": f(STR, "-", "module path"),
                                "K": f(INT, "rows", "reduction size"),
                                "N": f(INT, "columns", "output channels"),
                                "m": f(INT, "vectors", "input vectors per image (output pixels)"),
                                "tight_rate": f(NUM, "x", "tight's compression rate"),
                                "cc_rate": f(NUM, "x", "column combining's compression rate"),
                                "throughput_gain": f(NUM, "x", "column-combining cycles / tight cycles"),
                                "energy_gain": f(NUM, "x", "column-combining energy / tight energy"),
                            },
                        ),
                    ),
                    "total": obj(
                        "whole model",
                        {
                            "throughput_gain": f(NUM, "x", "column-combining cycles / tight cycles"),
                            "energy_gain": f(NUM, "x", "column-combining energy / tight energy"),
                        },
                    ),
                },
            },
            "unstructured": obj(
                "the shared unstructured-pruning stage",
                {
                    "accuracy": f(NUM, "%", "top-1 accuracy after unstructured pruning"),
                    "sparsity": f([NUM, "null"], "fraction 0-1", "its sparsity"),
                },
            ),
            "seconds": f(NUM, "s", "wall time of the demo"),
        },
        "required": ["rows"],
    }
    ratio = obj(
        "tight over column combining, each at its own max_rate",
        {
            "rate_tight_over_cc": f(
                [NUM, "null"], "x", "max_rate of tight / max_rate of column combining (null: either has none)"
            ),
            "throughput_tight_over_cc": f(
                [NUM, "null"], "x", "speed-up of tight / speed-up of column combining (null: not simulated)"
            ),
            "energy_tight_over_cc": f(
                [NUM, "null"],
                "x",
                "energy gain of tight / energy gain of column combining (null: not simulated)",
            ),
        },
    )
    frontier = {
        "$schema": DRAFT,
        "$id": "tightcompress/frontier.schema.json",
        "title": "frontier",
        "description": "`tightcompress frontier --json`: accuracy against compression rate per method and "
        "seed, on the demo or on your model (`--onnx`, `--model` with `--eval`: then every accuracy is your "
        "metric, in its units), and the highest rate each method reaches at equal accuracy.",
        "type": OBJ,
        "properties": {
            "dense": obj(
                "the dense models (one per seed)",
                {
                    "accuracy_mean": f(
                        NUM, "% or metric", "mean top-1 accuracy (or --eval metric) over seeds"
                    ),
                    "accuracy_std": f(NUM, "points or metric", "standard deviation over seeds"),
                    "per_seed": {
                        "description": "accuracy of each seed's dense model",
                        "x-unit": "% or metric",
                    },
                },
                ["accuracy_mean"],
            ),
            "points": arr(
                "one point per method, target rate and seed",
                obj(
                    "one fitted and fine-tuned (or one-shot pruned) model",
                    {
                        "method": f(
                            STR,
                            "-",
                            "tight, nm, column-combining, nm-permuted, tight-subword; one-shot also "
                            "unstructured (the per-layer reference)",
                        ),
                        "target_rate": f(NUM, "x", "--rates value asked for"),
                        "seed": f(INT, "-", "seed"),
                        "compression_rate": f(NUM, "x", "measured compression rate"),
                        "accuracy": f(
                            NUM, "% or metric", "top-1 test accuracy after fine-tuning, or the --eval metric"
                        ),
                        "speedup": f(
                            [NUM, "null"],
                            "x",
                            "dense cycles / packed cycles, 32x32 array, per input (null: not simulated, e.g. "
                            "one-shot unstructured or subwords)",
                        ),
                        "energy_gain": f([NUM, "null"], "x", "dense energy / packed energy, same array"),
                    },
                    ["method", "target_rate", "seed", "compression_rate", "accuracy"],
                ),
            ),
            "iso_accuracy": {
                "type": OBJ,
                "description": "per allowed drop (`0.5`, `1.0` points): method -> highest rate whose mean "
                "accuracy is within that drop of the dense mean",
                "x-unit": "x",
                "additionalProperties": {"type": OBJ, "additionalProperties": {"type": [NUM, "null"]}},
            },
            "ratios": {
                "type": OBJ,
                "description": "per allowed drop: tight over column combining at their iso-accuracy rates",
                "x-unit": "x",
                "additionalProperties": {"anyOf": [ratio, {"type": "null"}]},
            },
            "config": obj(
                "the grid and the model measured",
                {
                    "methods": f(ARR, "-", "methods measured"),
                    "rates": f(ARR, "x", "target rates"),
                    "seeds": f(ARR, "-", "seeds"),
                    "model": obj(
                        "your model (absent for the demo)",
                        {
                            "kind": f(STR, "-", "onnx or pytorch"),
                            "path": f(STR, "file", "the ONNX file (onnx)"),
                            "class": f(STR, "-", "file.py:Class or module:Class (pytorch)"),
                            "model_args": f(OBJ, "-", "keyword arguments of the class (pytorch)"),
                            "checkpoint": f(STR, "file", "its state_dict (pytorch)"),
                            "sha256": f(STR, "-", "SHA-256 of the ONNX file or the checkpoint"),
                        },
                        ["kind", "sha256"],
                    ),
                    "mode": f(STR, "-", "one-shot (pruned without training) or fine-tune (your model only)"),
                    "metric": f(STR, "-", "--eval module:function (or file.py:function), higher is better"),
                    "calibration": f([STR, "null"], "file", "one-shot calibration inputs, or null"),
                    "data": f([STR, "null"], "folder", "fine-tune: --data ImageFolder root (null: digits)"),
                    "widths": f(ARR, "channels", "demo CNN conv widths (demo)"),
                    "dense_epochs": f(NUM, "epochs", "demo dense training (demo)"),
                    "compress": f(OBJ, "-", "the pipeline budget (demo, fine-tune)"),
                    "array": f(STR, "-", "array of the hardware figures (32x32)"),
                },
                ["methods", "rates", "seeds"],
            ),
        },
        "required": ["dense", "points"],
    }
    sweep = {
        "$schema": DRAFT,
        "$id": "tightcompress/sweep-row.schema.json",
        "title": "sweep-row",
        "description": "`tightcompress sweep --csv`: one CSV row per operating point (layer `TOTAL`) and, "
        "with --per-layer, per layer. Columns in this order; CSV cells are text, shown here with the type "
        "they parse to (empty = none).",
        "type": OBJ,
        "properties": {
            "method": f(STR, "-", "packing method"),
            "group": f([INT, "null"], "rows", "lane width G"),
            "height": f([INT, STR, "null"], "slots", "height cap, or auto"),
            "tile": f(INT, "columns", "array columns C per tile"),
            "sparsity": f(
                [NUM, "null"], "fraction 0-1", "smallest-magnitude fraction zeroed first (empty: as given)"
            ),
            "layer": f(STR, "-", "`TOTAL` for the whole model, else the layer name"),
            "K": f([INT, "null"], "rows", "reduction size (per-layer rows; empty on TOTAL)"),
            "N": f([INT, "null"], "columns", "output channels (per-layer rows; empty on TOTAL)"),
            "dense_slots": f(INT, "slots", "K*N (summed on TOTAL)"),
            "packed_slots": f(INT, "slots", "packed slots"),
            "nnz": f(INT, "weights", "input nonzeros"),
            "kept_nnz": f(INT, "weights", "kept nonzeros"),
            "dropped_nnz": f(INT, "weights", "dropped nonzeros"),
            "compression_rate": f(NUM, "x", "dense_slots / packed_slots"),
            "utilization": f(NUM, "fraction 0-1", "kept_nnz / packed_slots"),
            "storage_rate_bits": f(NUM, "x", "dense bits / (value + index bits)"),
            "dropped_magnitude_fraction": f(NUM, "fraction 0-1", "dropped |w| / input |w|"),
            "seconds": f(NUM, "s", "packing time"),
        },
        "required": ["method", "layer", "compression_rate", "dropped_magnitude_fraction"],
    }
    files = {name: f(STR, "file", meaning) for name, meaning in [
        ("weights", "H_t words of C*w bits: the slot weights of each physical row"),
        ("lanes", "H_t words of C*L bits: each slot's lane index"),
        ("heights", "n_groups words: physical rows of each group in this tile"),
        ("feeder", "K words: the input feature fed at each permuted position"),
        ("columns", "C words: the output column of each array column (all ones = unused)"),
        ("shifts", "subword layers: H_t words of C bits, 1 = shift the 4-bit value left by 4"),
    ]}  # fmt: skip
    manifest = {
        "$schema": DRAFT,
        "$id": "tightcompress/rtl-manifest.schema.json",
        "title": "rtl-manifest",
        "description": "`tightcompress export --out-dir DIR`: DIR/manifest.json, the description of every "
        "hex file written for an RTL testbench (layout in export/rtl.py).",
        "type": OBJ,
        "properties": {
            "format": f(STR, "-", "always `tightcompress.rtl`", const="tightcompress.rtl"),
            "format_version": f(INT, "-", "export format version; readers refuse others", const=1),
            "word_layout": f(STR, "-", "how words and multi-column fields are laid out in the hex files"),
            "array": obj(
                "the PE array the export is for (`export --array`, default 32x32)",
                {
                    "rows": f(INT, "PEs", "array rows R"),
                    "cols": f(INT, "PEs", "array columns C"),
                },
                ["rows", "cols"],
            ),
            "hdl": obj(
                "present with `export --hdl`: the Verilog written (export/hdl.py)",
                {
                    "modules": arr("the shared Verilog modules, one per file", {"type": STR}, "file"),
                    "testbench": f(STR, "file", "each layer folder's testbench"),
                },
                ["modules", "testbench"],
            ),
            "files": arr("every file this export wrote, relative to DIR", {"type": STR}, "file"),
            "layers": arr(
                "one entry per exported layer",
                obj(
                    "one layer",
                    {
                        "name": f(STR, "-", "layer name"),
                        "folder": f(STR, "-", "sub-folder of DIR holding its files"),
                        "method": f(STR, "-", "packing method"),
                        "K": f(INT, "rows", "reduction size"),
                        "N": f(INT, "columns", "output channels"),
                        "input_features": f(INT, "features", "inputs per test vector (= K)"),
                        "group": f(INT, "rows", "lane width G"),
                        "tile": f(INT, "columns", "array columns C"),
                        "n_tiles": f(INT, "tiles", "tiles"),
                        "n_groups": f(INT, "groups", "row groups"),
                        "height_cap": f([INT, "null"], "slots", "height cap (null: lossless)"),
                        "group_offsets": arr("start row of each group, then K", {"type": INT}, "rows"),
                        "groups": f(STR, "file", "group_offsets as n_groups + 1 hex words"),
                        "testbench": f(STR, "file", "with --hdl: the layer's Verilog testbench"),
                        "fields": obj(
                            "bit widths of the hex fields",
                            {
                                "weight_bits": f(INT, "bits", "weight value bits (8, or 4 for subwords)"),
                                "weight_signed": f(BOOL, "-", "weights are two's complement"),
                                "lane_bits": f(INT, "bits", "lane index bits L"),
                                "shift_bits": f(INT, "bits", "subword shift bit (0 or 1)"),
                                "height_bits": f(INT, "bits", "bits of a group height word"),
                                "feeder_bits": f(INT, "bits", "bits of a feeder word"),
                                "column_bits": f(INT, "bits", "bits of a column word"),
                                "group_bits": f(INT, "bits", "bits of a groups.hex word"),
                                "unused_column": f(STR, "hex", "the column word marking an unused column"),
                            },
                        ),
                        "scales": arr(
                            "per-output-column int8 dequantization scales", {"type": NUM}, "w per LSB"
                        ),
                        "vectors": obj(
                            "the test vectors",
                            {
                                "m": f(INT, "vectors", "test input vectors"),
                                "x": f(STR, "file", "int8 activations, M*K words"),
                                "x_bits": f(INT, "bits", "activation word bits"),
                                "y": f(STR, "file", "int32 expected outputs, M*N words"),
                                "y_bits": f(INT, "bits", "output word bits"),
                                "order": f(STR, "-", "element order: row-major"),
                            },
                        ),
                        "tiles": arr(
                            "one entry per tile",
                            obj(
                                "one tile",
                                {
                                    "tile": f(INT, "-", "tile index"),
                                    "rows": f(INT, "rows", "physical rows H_t"),
                                    "files": obj("the tile's hex files", files),
                                },
                            ),
                        ),
                    },
                    ["name", "folder", "method", "K", "N", "group", "tile", "n_tiles", "fields", "tiles"],
                ),
            ),
        },
        "required": ["format", "format_version", "array", "layers"],
    }
    counts = {"type": OBJ, "additionalProperties": {"type": INT}}
    area = {
        "$schema": DRAFT,
        "$id": "tightcompress/area.schema.json",
        "title": "area",
        "description": "`tightcompress area --json`: cells and area of one PE and of the R x C array for a "
        "method, synthesised by Yosys from the exported Verilog and charged Nangate45 cell areas "
        "(hw/area.py, hw/cells.py), against the dense PE and array.",
        "type": OBJ,
        "properties": {
            **VERSION_FIELDS,
            "method": f(STR, "-", "packing method: dense, tight, nm, column-combining, tight-subword"),
            "array": f(STR, "PEs", "array rows x columns"),
            "lanes": f(INT, "lanes", "LANES of the PE: G, alpha for column combining, 1 for dense"),
            "group": f([INT, "null"], "rows", "--group G (tight, nm, tight-subword)"),
            "alpha": f([INT, "null"], "columns", "--alpha (column combining)"),
            "parameters": {
                "type": OBJ,
                "description": "the Verilog parameters synthesised: LANES, A_BITS, W_BITS, ACC_BITS, SUBWORD",
                "x-unit": "-",
                "additionalProperties": {"type": INT},
            },
            "pe_module": f(STR, "-", "the PE module: tc_pe or tc_pe_subword"),
            "pe_cells": f(INT, "cells", "standard cells of one PE"),
            "pe_cells_by_type": {
                **counts,
                "description": "cells of one PE by gate type (hw/cells.py maps each to a Nangate45 cell)",
                "x-unit": "cells",
            },
            "pe_flip_flops": f(INT, "cells", "flip-flops of one PE"),
            "pe_area_um2": f(NUM, "um^2", "cell area of one PE"),
            "array_cells": f(INT, "cells", "standard cells of the whole array (R x C PEs and the skew)"),
            "array_cells_by_type": {
                **counts,
                "description": "cells of the whole array by gate type",
                "x-unit": "cells",
            },
            "array_area_um2": f(NUM, "um^2", "cell area of the whole array"),
            "array_area_mm2": f(NUM, "mm^2", "the same in mm^2"),
            "array_parts_um2": {
                "type": OBJ,
                "description": "the array's area by part: pes, skew_deskew (input skew and output deskew "
                "registers), other (top-level logic)",
                "x-unit": "um^2",
                "additionalProperties": {"type": NUM},
            },
            "dense_pe_area_um2": f(NUM, "um^2", "cell area of the dense PE (LANES = 1) on the same widths"),
            "dense_array_area_um2": f(NUM, "um^2", "cell area of the dense array of the same size"),
            "pe_area_vs_dense": f(NUM, "x", "pe_area_um2 / dense_pe_area_um2"),
            "array_area_vs_dense": f(NUM, "x", "array_area_um2 / dense_array_area_um2"),
            "library": f(STR, "-", "the cell library and file the areas come from"),
            "gate_set": f(STR, "-", "the gates ABC maps onto (abc -g)"),
            "yosys": f(STR, "-", "the Yosys that synthesised"),
            "cached": f(BOOL, "-", "the synthesis result came from the cache"),
            "arch": f(STR, "file", "--arch: the architecture file"),
        },
        "required": [
            "tightcompress_version",
            "report_version",
            "method",
            "array",
            "pe_cells",
            "pe_cells_by_type",
            "pe_area_um2",
            "array_cells",
            "array_area_um2",
            "dense_pe_area_um2",
            "library",
        ],
    }
    arch = {
        "$schema": DRAFT,
        "$id": "tightcompress/arch.schema.json",
        "title": "arch",
        "description": "An architecture file, `simulate --arch A.toml` (TOML; an input, described here like "
        "the outputs; hw/arch.py). Every key is optional and defaults to the built-in architecture "
        "(examples/arch.toml); unknown keys are errors. DRAM traffic and stalls: see the README.",
        "type": OBJ,
        "properties": {
            **arch_sections(report=False),
            "energy": {
                "type": OBJ,
                "description": "per-operation energies overriding hw/energy.py EnergyTable: the fields of "
                "`energy_table` (pJ, *_per_bit per bit, >= 0) and `source`",
                "x-unit": "pJ",
                "additionalProperties": False,
                "properties": {name: f(NUM, "pJ", "EnergyTable field", minimum=0) for name in ENERGY_FIELDS}
                | {"source": f(STR, "-", "where the numbers come from")},
            },
            "cells": {
                "type": OBJ,
                "description": "standard-cell figures overriding hw/cells.py (Nangate45 X1) per gate type "
                "(NOT, NAND, MUX, DFF, ...): area_um2, toggle_fj, and clock_fj for flip-flops",
                "x-unit": "um^2, fJ",
                "additionalProperties": {
                    "type": OBJ,
                    "additionalProperties": False,
                    "properties": {
                        "area_um2": {"type": NUM, "minimum": 0},
                        "toggle_fj": {"type": NUM, "minimum": 0},
                        "clock_fj": {"type": NUM, "minimum": 0},
                    },
                },
            },
        },
        "additionalProperties": False,
    }
    return {
        "pack": pack,
        "simulate": simulate,
        "compress": compress,
        "demo": demo,
        "frontier": frontier,
        "sweep-row": sweep,
        "rtl-manifest": manifest,
        "arch": arch,
        "area": area,
    }


# ------------------------------------------------------------------------------------------- rendering
def _type_text(node: dict[str, Any]) -> str:
    kind = node.get("type")
    if kind is None:
        return "any" if "anyOf" not in node else " or ".join(_type_text(n) for n in node["anyOf"])
    kinds = kind if isinstance(kind, list) else [kind]
    return " or ".join(k if k != "null" else "null" for k in kinds)


def _rows(
    node: dict[str, Any], prefix: str, required: set[str], shared: dict[str, Any] | None = None
) -> list[str]:
    """Table rows of `node`'s fields; fields defined as in `shared` (pack's) are summarised in one row."""
    rows = []
    same = [name for name, child in node.get("properties", {}).items() if (shared or {}).get(name) == child]
    if len(same) > 3:
        rows.append(
            f"| `{prefix}*` | | | | every field of pack's `{prefix.rstrip('.')}` ({len(same)}), plus: |"
        )
    for name, child in node.get("properties", {}).items():
        if len(same) > 3 and name in same:
            continue
        path = f"{prefix}{name}"
        need = "yes" if name in required else ""
        meaning = child.get("description", "").replace("|", "\\|")
        unit = child.get("x-unit", "-").replace("|", "\\|")
        rows.append(f"| `{path}` | {_type_text(child)} | {unit} | {need} | {meaning} |")
        if child.get("type") == OBJ or (isinstance(child.get("type"), list) and OBJ in child["type"]):
            inner = (shared or {}).get(name, {}).get("properties") if shared else None
            rows += _rows(child, f"{path}.", set(child.get("required", [])), inner)
        if child.get("type") == ARR and isinstance(child.get("items"), dict):
            inner = ((shared or {}).get(name, {}).get("items") or {}).get("properties") if shared else None
            rows += _rows(child["items"], f"{path}[].", set(child["items"].get("required", [])), inner)
    return rows


def render_doc(schema_dir: Path) -> str:
    """docs/outputs.md from the written schema files."""
    out = [
        "# Output files",
        "",
        "<!-- Generated by `python scripts/gen_output_docs.py` from src/tightcompress/schemas/*.schema.json;"
        " do not edit by hand. -->",
        "",
        "Every JSON file tightcompress writes has a JSON Schema (draft 2020-12) shipped in the package:",
        "`importlib.resources.files('tightcompress.schemas') / 'pack.schema.json'`, or",
        "`tightcompress.schemas.load_schema('pack')`. The tests validate real outputs against them.",
        "Readers must ignore fields they do not know: commands may add fields (the schemas allow them).",
        "Units: `x` is a ratio (higher is better for rates and gains), `fraction 0-1` a fraction (the report",
        "page shows it as a percentage), `%` a percentage, `pJ` picojoules, `s` seconds.",
        "",
        "**`lower_bound_slots` can exceed `packed_slots`.** The bound is the fewest slots any *lossless*",
        "packing can use with the layer's column-to-tile assignment: per tile, the rows of its densest",
        "column, and its nonzeros spread evenly over the C columns. A capped `--height` is not lossless: it",
        "drops weights to fit (`dropped_nnz`, `dropped_magnitude_fraction`), so it can use fewer slots than",
        "any lossless packing. For a capped run the matching bound is",
        "`lower_bound_dropped_magnitude_fraction`, the least magnitude any arrangement must drop at that",
        "height.",
        "",
    ]
    names = sorted(p.name for p in schema_dir.glob("*.schema.json"))
    order = ["pack", "simulate", "compress", "demo", "frontier", "sweep-row", "rtl-manifest", "arch", "area"]
    names = sorted(names, key=lambda n: order.index(n.split(".")[0]) if n.split(".")[0] in order else 99)
    out.append("Contents: " + ", ".join(f"[{n.split('.')[0]}](#{n.split('.')[0]})" for n in names))
    out.append("")
    pack = json.loads((schema_dir / "pack.schema.json").read_text())["properties"]
    for name in names:
        schema = json.loads((schema_dir / name).read_text())
        shared = pack if name in ("simulate.schema.json", "compress.schema.json") else None
        out += [
            f"## {schema['title']}",
            "",
            schema["description"],
            "",
            f"Schema: `tightcompress/schemas/{name}`",
            "",
        ]
        out += ["| field | type | unit | required | meaning |", "|---|---|---|---|---|"]
        out += _rows(schema, "", set(schema.get("required", [])), shared)
        out.append("")
    return "\n".join(out)


def expected_files() -> dict[Path, str]:
    files = {
        SCHEMA_DIR / f"{name}.schema.json": json.dumps(s, indent=2) + "\n" for name, s in schemas().items()
    }
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the files are out of date")
    args = parser.parse_args(argv)
    files = expected_files()
    stale = [p for p, text in files.items() if not p.is_file() or p.read_text() != text]
    if args.check:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            for path, text in files.items():
                (Path(tmp) / path.name).write_text(text)
            doc = render_doc(Path(tmp)) + "\n"
        if not DOC.is_file() or DOC.read_text() != doc:
            stale.append(DOC)
        for path in stale:
            print(
                f"out of date: {path.relative_to(ROOT)} (run python scripts/gen_output_docs.py)",
                file=sys.stderr,
            )
        return 1 if stale else 0
    SCHEMA_DIR.mkdir(parents=True, exist_ok=True)
    for path, text in files.items():
        path.write_text(text)
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(render_doc(SCHEMA_DIR) + "\n")
    print(f"wrote {len(files)} schemas and {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
