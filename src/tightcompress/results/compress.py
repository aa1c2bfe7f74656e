"""`compress --out-dir DIR`: DIR/report.json, word or subword granularity."""

from __future__ import annotations

from typing import Literal

from tightcompress.results.base import Result, Versioned, field, optional
from tightcompress.results.pack import BitFigures, Notes, PackLayer, PackTotal
from tightcompress.results.simulate import (
    Cycles,
    DenseCycles,
    DenseEnergyPj,
    EnergyGain,
    EnergyPj,
    HardwareFigures,
    HardwareLayer,
    Speedup,
    Vectors,
)  # fmt: skip


class CompressConfig(Result):
    """The pipeline options (CompressConfig, either granularity) plus workflow."""

    workflow: Literal["compress"] = field("-", "always `compress`")
    alpha: int = optional("rows", "column combining: --alpha")
    gamma: float = optional("conflicts per column", "column combining: --gamma")
    batch_size: int = optional("images", "--batch-size: examples per optimizer step over all processes")
    plan_iterations: int | None = optional("moves", "annealing moves per layer while planning (null: scaled)")
    final_iterations: int | None = optional("moves", "annealing moves per layer of the final packing")
    max_fit_rounds: int = optional("rounds", "at most this many fine-tunes of the last format round")
    prune_normalized: bool = optional("-", "unstructured pruning ranks |w| normalised per layer")
    format_start_rate: float = optional("x", "the rate of the first format-aware round")
    distill: float = optional("-", "weight of distillation from the dense model in training (0: off)")
    distill_temperature: float = optional("-", "temperature of that distillation")
    granularity: str = optional("-", "subword runs: `subword`")
    method: str = optional("-", "word runs: --method")
    rate: float | None = optional("x", "--rate target over the packed conv+linear layers (not depthwise)")
    bit_rate: float = optional("x", "subword: --bit-rate target")
    group: int | None = optional("rows", "--group (explicit mode)")
    height: int | None = optional("slots", "--height (explicit mode)")
    tile: int = optional("columns", "--tile C")
    sparsity: float | None = optional("fraction 0-1", "--sparsity unstructured target")
    seed: int = optional("-", "--seed")
    lr: float = optional("-", "--lr")
    prune_rounds: int = optional("rounds", "--prune-rounds")
    prune_epochs: float = optional("epochs", "--prune-epochs")
    finetune_epochs: float = optional("epochs", "--finetune-epochs")
    format_rounds: int = optional("rounds", "--format-rounds")
    world_size: int = optional("processes", "processes that fine-tuned (torchrun); 1 for one process")
    device: str = optional("-", "where training ran: `cpu` or `cuda`")


class Accuracy(Result):
    """Top-1 test accuracy after each stage."""

    dense: float = field("%", "the incoming dense model")
    unstructured: float = optional("%", "word: after gradual unstructured pruning")
    prune_to_fit: float = optional("%", "after pruning to fit the format, before fine-tuning")
    packed_finetuned: float = field("%", "final: packed and fine-tuned (the model written to model.pt)")
    start: float = optional("%", "subword: the model the subword pipeline started from")
    quantized: float = optional("%", "subword: after int8 quantization")
    subword_pruned: float = optional("%", "subword: after gradual subword pruning")


class CompressLayer(PackLayer, HardwareLayer):
    """One packed layer of the fine-tuned model (word: with its figures on the reference array)."""


class CompressTotal(PackTotal, BitFigures):
    """Sums over the layers."""


class CompressHardware(HardwareFigures):
    """The whole model on the reference array, per image: the packed layers and the layers left dense
    (dense_layers, at their dense cost)."""

    array: str = field("PEs", "array rows x columns")
    per: str = field("-", "what one count covers: `image`")
    layers_at_min_folds: int = optional(
        "layers", "packed layers already at their minimum folds (layers[].at_min_folds)"
    )
    cycles: Cycles
    dense_cycles: DenseCycles
    speedup: Speedup
    energy_pj: EnergyPj
    dense_energy_pj: DenseEnergyPj
    energy_gain: EnergyGain


class ModelWeights(Result):
    """Every conv and linear weight of the model, packed or left dense (biases and normalisation
    parameters are not counted)."""

    total: int = field("weights", "packed + left_dense")
    packed: int = field("weights", "weights of the packed layers (sum of K*N)")
    left_dense: int = field("weights", "weights of the layers left dense (dense_layers)")
    stored_slots: float = field("slots", "packed / packed_compression_rate + left_dense")
    compression_rate: float = field("x", "total / stored_slots")


class DenseLayer(HardwareLayer):
    """One layer left dense."""

    name: str = field("-", "module path")
    kind: str = field("-", "why it is dense: `depthwise`")
    shape: list[int] = field("-", "weight shape")
    groups: int = optional("groups", "the conv's groups")
    mapping: str = optional(
        "-", "how it runs, the cheaper in cycles: `per group` (one GEMM a group) or `block-diagonal` (one "
        "dense GEMM, the groups on its diagonal)"
    )
    weights: int = field("weights", "weights of the layer")
    m: Vectors
    cycles: Cycles
    dense_cycles: DenseCycles
    energy_pj: EnergyPj


class Budget(Result):
    """The training the run was given, in optimizer steps (pipeline.train: max(1, round(epochs x
    steps_per_epoch)) a call)."""

    train_images: int = optional("images", "examples in the training split")
    test_images: int = optional("images", "examples in the held-out split the accuracies are on")
    batch_size: int = optional("images", "examples per optimizer step over all processes")
    steps_per_epoch: int = optional("steps", "ceil(train_images / batch_size)")
    prune_rounds: int = optional("rounds", "--prune-rounds")
    prune_steps_per_round: int = optional("steps", "training steps after each pruning round")
    format_rounds: int = optional("rounds", "format-aware rounds (1 in explicit mode)")
    finetune_steps_per_round: int = optional(
        "steps", "fine-tuning steps of each format round (the last may repeat)"
    )
    max_fit_rounds: int = optional("rounds", "at most this many fine-tunes of the last format round")


class CompressReport(Versioned):
    """`compress --out-dir DIR`: DIR/report.json (word or subword granularity): the packed layers of the
    fine-tuned model, its accuracy after each stage and (word) its cycles and energy per image."""

    schema_name = "compress"

    config: CompressConfig = field(
        "-", "the pipeline options (CompressConfig, either granularity) plus workflow"
    )
    layers: list[CompressLayer] = field("-", "one entry per packed layer, in model order")
    total: CompressTotal = field("-", "sums over the layers")
    accuracy: Accuracy = field("-", "top-1 test accuracy after each stage")
    hardware: CompressHardware = optional(
        "-", "the whole model on the reference array, per image: the packed layers and the layers left "
        "dense (dense_layers, at their dense cost)"
    )
    model_weights: ModelWeights = optional(
        "-", "every conv and linear weight of the model, packed or left dense (biases and normalisation "
        "parameters are not counted)"
    )
    dense_layers: list[DenseLayer] = optional(
        "-", "conv/linear layers left dense (depthwise convs), run dense on the reference array per image; "
        "their cycles and energy are in the hardware totals"
    )
    notes: Notes = optional("-", "where the matrices came from, what was left out and why, and other remarks")
    budget: Budget = optional(
        "-", "the training the run was given, in optimizer steps (pipeline.train: max(1, round(epochs x "
        "steps_per_epoch)) a call)"
    )
    compression_rate: float = field(
        "x", "the rate over every conv/linear weight of the model: model_weights.compression_rate (layers "
        "left dense count at 1x); without such layers, = packed_compression_rate"
    )
    packed_compression_rate: float = optional(
        "x", "the rate over the packed layers alone (what --rate targets; word: = total.compression_rate, "
        "subword: the word-equivalent bit rate); per layer: layers[].compression_rate"
    )
    unstructured_sparsity: float | None = optional(
        "fraction 0-1", "word: sparsity after unstructured pruning"
    )
    choices: dict[str, str] = field("-", "the format chosen per layer: `tight G=64 h=12`, `dense`, ...")
    method: str = optional("-", "subword: `tight-subword`")
    granularity: str = optional("-", "subword: `subword`")
    bit_rate: float = optional("x", "subword: 8*K*N / (4 * packed slots) over all layers")
    bit_rate_with_index: float = optional("x", "subword: dense bits / packed bits with index and shift bits")
    subword_sparsity: float = optional("fraction 0-1", "subword: zero subwords / all subwords")
    subword_pruned_sparsity: float | None = optional(
        "fraction 0-1", "subword: sparsity after gradual subword pruning"
    )
    seconds: float = optional("s", "wall time of the pipeline (dense evaluation to the report)")
    seconds_prune_stage: float = optional("s", "wall time of the pruning stage")
    seconds_plan_and_pack: float = optional("s", "wall time of planning and packing (searches and repacks)")
