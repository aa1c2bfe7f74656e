"""`tightcompress simulate`: cycles, PE utilization and energy of every layer on a weight-stationary array.

The input is one of
- a packed `.safetensors` written by `pack --out`, `compress` or `save_model` (any method; how each layer
  was packed is in the file; layer weights it carries unpacked, such as a depthwise conv, are listed as
  skipped),
- a checkpoint (`.npy` matrix, `.pt`/`.pth`/`.safetensors` state dict), packed first with the options given,
- a SCALE-Sim topology `.csv` alone: shapes only, so dense, or with `--sparsity S` seeded random weights
  of that sparsity (uniformly spread zeros, not a trained network's) for the packed methods.

M, the input vectors each layer streams (output pixels x batch), comes from `--topology NET.csv` (rows
matched by layer name), `--model FILE.py:Class --input-shape BxCxHxW` (one forward pass with hooks) or
`--vectors M` (every layer); without any of them M = 1 (one output pixel), which the summary says.
The summary (a table per layer and in total, energy by component, notes, one summary line) goes to
stdout, progress to stderr, the full report to `--json`.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from tightcompress.api import PackConfig
from tightcompress.cli.common import (
    MAX_VECTORS,
    add_alias,
    add_quiet,
    add_skip_bad_layers,
    compile_kernels_once,
    declare_paths,
    int_in,
)
from tightcompress.cli.pack import (
    add_key_option,
    add_pack_options,
    add_parallel_options,
    read_input,
    split_bad_layers,
)
from tightcompress.errors import TightCompressError
from tightcompress.format.dtypes import store_dtype
from tightcompress.format.io import PACKED_FILE_FORMATS, load_packed, load_packed_state
from tightcompress.format.packed import PackedMatrix
from tightcompress.hw.arch import DEFAULT_ARCH, Architecture, load_architecture
from tightcompress.hw.bitexact import check_bitexact, random_activations
from tightcompress.hw.cycles import column_occupancy, parse_array
from tightcompress.hw.energy import load_energy_table
from tightcompress.parallel import Task, check_pack_memory, run_tasks, worker_count
from tightcompress.prune.subword_pack import SubwordPacked, is_subword, weight_matrix, weight_shape
from tightcompress.readers.matrices import DEPTHWISE_REASON
from tightcompress.readers.topology import (
    TopologyLayer,
    match_topology,
    read_topology,
    topology_name,
    write_topology,
)
from tightcompress.report import build_report, min_folds_note, unimproved_search_note
from tightcompress.results import SimulateReport
from tightcompress.utils.atomic import output_group, write_json_atomic

# Packing options: None when not given, so a packed input can refuse them and a topology pick its method.
_PACK_OPTIONS = (
    "method", "group", "height", "tile", "alpha", "gamma", "merge", "section", "sparsity", "iterations",
    "objective",
)  # fmt: skip
M_ASSUMED = "assumed: M = 1 for every layer"
# Options that configure the column-combining baseline, so they apply to a packed input too.
_CC_OPTIONS = ("alpha", "gamma", "merge", "section")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `simulate`."""
    parser = subparsers.add_parser(
        "simulate",
        help="cycles, PE utilization and energy of every layer on a weight-stationary array",
        description=(__doc__ or "").split("\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "input",
        help="packed .safetensors from `pack --out`; or a checkpoint (.npy/.pt/.pth/.safetensors/.onnx), "
        "packed first with the options below; or a SCALE-Sim topology .csv alone (dense, or --sparsity S)",
    )
    add_key_option(parser, model=False)
    add_pack_options(parser)
    parser.set_defaults(**dict.fromkeys(_PACK_OPTIONS))  # None: "not given" (a packed file refuses them)
    shown = {f.name: f.default for f in fields(PackConfig)}
    for action in parser._actions:
        if action.dest == "tile":
            action.help = f"{action.help} (default: the array's column count)"
        elif action.dest in shown and action.help and "default" not in action.help:
            action.help = f"{action.help} (default: {shown[action.dest]})"
    add_parallel_options(parser)
    parser.add_argument(
        "--array", metavar="RxC", help="PE array rows x columns (default: the --arch file's, else 32x32)"
    )
    parser.add_argument(
        "--arch",
        metavar="A.toml",
        help="architecture file: array, buffer sizes and bandwidths, operand bits, clock, energy table "
        "(examples/arch.toml; unlimited buffers by default)",
    )
    vectors = parser.add_argument_group("input vectors per layer, M = output pixels x batch (default 1)")
    vectors.add_argument(
        "--topology", metavar="NET.csv", help="SCALE-Sim topology giving each layer's M (matched by name)"
    )
    vectors.add_argument(
        "--model",
        metavar="FILE.py:Class",
        help="the checkpoint's model class (or module:Class): its conv groups are read from it, and with "
        "--input-shape each layer's M is counted in one forward pass",
    )
    vectors.add_argument("--input-shape", metavar="BxCxHxW", help="with --model: the input, batch first")
    vectors.add_argument(
        "--vectors", type=int_in(1, MAX_VECTORS), metavar="M", help="the same M for every layer"
    )
    add_alias(vectors, "--batch", "--vectors", type=int_in(1, MAX_VECTORS), metavar="M")
    parser.add_argument(
        "--emit-topology",
        metavar="OUT.csv",
        help="write the SCALE-Sim topology of the simulated layers (dense shapes, same names)",
    )
    parser.add_argument(
        "--energy-table", metavar="FILE", help=".toml/.json overriding per-op energies (pJ), over --arch's"
    )
    parser.add_argument("--gate-zeros", action="store_true", help="PEs skip MACs on zero weights")
    parser.add_argument(
        "--no-vs-cc", action="store_true", help="skip packing by column combining as a second baseline"
    )
    parser.add_argument(
        "--check-bitexact", action="store_true", help="also run the int8 array simulation on random inputs"
    )
    parser.add_argument(
        "--area",
        action="store_true",
        help="also synthesise the arrays (Yosys, cached; `tightcompress area`) and report area and "
        "throughput per mm2 against dense and column combining",
    )
    parser.add_argument(
        "--match",
        choices=("dropped",),
        help="dropped: compare at matched loss; each layer of tight or nm gets the least height whose "
        "dropped |w| is at most column combining's on that layer (not with a packed file)",
    )
    parser.add_argument("--json", metavar="REPORT.json", help="write the full report here")
    add_skip_bad_layers(parser)
    add_quiet(parser)
    parser.set_defaults(func=run_simulate)
    declare_paths(
        parser,
        inputs=("input", "topology", "energy_table", "model", "arch"),
        outputs=("json", "emit_topology"),
    )


def run_simulate(args: argparse.Namespace) -> int:
    """Read the layers, find each layer's M, pack what needs packing, simulate, report."""
    from tightcompress.hw.simulate import simulate_packed, total_simulation  # numba: not at start-up

    arch = resolve_architecture(args)
    array = arch.array
    table = load_energy_table(args.energy_table, base=arch.energy) if args.energy_table else arch.energy
    kind = input_kind(args.input)
    notes: list[str] = []
    weights_note = None
    skipped: list[dict] = []
    reader_notes: dict[str, Any] = {}
    dtypes: dict[str, str] = {}
    if kind == "packed":
        packed, config = _read_packed(args)
        skipped.extend(dense_layers_in_file(args.input))
        shapes = {name: weight_shape(p) for name, p in packed.items()}  # weights' K x N
    else:
        matrices, config, weights_note = _read_matrices(
            args, kind, array, notes, skipped, reader_notes, dtypes
        )
        shapes = {name: matrix.shape for name, matrix in matrices.items()}
    vectors, rows, m_source = _vectors(args, kind, shapes)
    cc_config = None
    if kind == "topology" and config.sparsity is None and not args.no_vs_cc:
        notes.append("no column-combining baseline: dense random weights have no zeros to combine")
    elif not args.no_vs_cc:
        cc_config = PackConfig(
            method="column-combining",
            tile=array[1],
            alpha=8 if args.alpha is None else args.alpha,
            gamma=0.5 if args.gamma is None else args.gamma,
            merge="authors" if args.merge is None else args.merge,
            section=args.section,
            sparsity=None if kind == "packed" else config.sparsity,
            seed=args.seed,
        )
    tasks = []
    if kind != "packed":
        tasks += [Task((name, "method"), name, matrix, config) for name, matrix in matrices.items()]
    if cc_config is not None:
        if kind == "packed":
            sources = {n: weight_matrix(p) for n, p in packed.items() if p.method != "column-combining"}
        else:
            sources = matrices if config.method != "column-combining" else {}
        tasks += [Task((name, "cc"), name, source, cc_config) for name, source in sources.items()]
    if args.match and (kind == "packed" or cc_config is None or config.method not in ("tight", "nm")):
        raise TightCompressError(
            "--match dropped caps tight's or nm's height per layer to column combining's loss: it needs "
            "--method tight or nm on a checkpoint or a topology with --sparsity, and the column-combining "
            "baseline (no --no-vs-cc)"
        )
    if tasks:
        compile_kernels_once(args)
    results = _pack(tasks, args)
    if args.match:
        _match_dropped(matrices, config, results, args)
        notes.append(
            f"--match dropped: each layer's {config.method} height is the least whose dropped |w| is at most "
            "column combining's on that layer (the height column of the JSON)"
        )
    if kind != "packed":
        packed = {
            name: store_dtype(results[(name, "method")], dtypes.get(name, str(matrix.dtype)))
            for name, matrix in matrices.items()
        }
    layers, hw_layers = [], []
    for name, layer in packed.items():
        cc = None
        if cc_config is not None:
            cc = layer if layer.method == "column-combining" else results[(name, "cc")]
        if is_subword(layer):  # 4-bit subword slots against the dense int8 layer (`hw.subword_sim`)
            hw = simulate_subword_layer(layer, name, args, array, vectors[name], table, cc)
        else:
            hw = simulate_packed(
                layer,
                array=array,
                m=vectors[name],
                energy=table,
                gate_zeros=args.gate_zeros,
                cc_baseline=cc,
                weight_bits=arch.weight_bits,
                arch=arch,
            )
            if args.check_bitexact:
                x = random_activations(min(vectors[name], 4), layer.K, args.seed)
                hw["bitexact"] = check_bitexact(layer, x)
        if cc is not None:
            cc_report = cc.report()
            hw["cc_nnz"] = cc_report["nnz"]
            hw["cc_dropped_nnz"] = cc_report["dropped_nnz"]
            hw["cc_dropped_magnitude_fraction"] = cc_report["dropped_magnitude_fraction"]
            hw["cc_input_magnitude"] = cc_report["input_magnitude"]
        hw_layers.append(hw)
        layers.append({**layer.report(), "name": name, **hw})
    note = _tile_note(packed, array)
    if note:
        notes.append(note)
    unimproved = unimproved_search_note(layers)
    if unimproved:
        notes.append(unimproved)
    report_config: dict[str, Any] = {"array": args.array, "m_source": m_source, "match": args.match}
    if args.arch is not None:
        report_config["arch"] = str(args.arch)
    if kind == "packed":
        report_config["packed_file"] = str(args.input)
    else:
        report_config.update(vars(config))
    report = build_report(layers, config=report_config)
    report["total"].update(total_simulation(hw_layers))
    if cc_config is not None:
        dropped = sum(hw["cc_dropped_nnz"] for hw in hw_layers)
        report["total"]["cc_dropped_nnz"] = dropped
        cc_magnitude = sum(hw["cc_input_magnitude"] for hw in hw_layers)
        report["total"]["cc_dropped_magnitude_fraction"] = (
            sum(hw["cc_dropped_magnitude_fraction"] * hw["cc_input_magnitude"] for hw in hw_layers)
            / cc_magnitude
            if cc_magnitude
            else 0.0
        )
        if dropped:
            nnz = sum(hw["cc_nnz"] for hw in hw_layers)
            notes.append(
                f"column combining (alpha {cc_config.alpha}, gamma {cc_config.gamma}) prunes {dropped} of "
                f"the {nnz} nonzero weights ({dropped / nnz:.1%}) to reach its cycles and energy"
            )
    report["notes"] = {**reader_notes, "skipped_layers": skipped, "messages": notes}
    if weights_note:
        report["weights"] = weights_note
    if args.check_bitexact:
        report["total"]["bitexact"] = all(hw["bitexact"] for hw in hw_layers)
    report["energy_table"] = table.to_dict()
    report["architecture"] = arch.to_dict()
    if args.area:
        from tightcompress.hw.area import throughput_per_area

        cc_alpha = cc_config.alpha if cc_config is not None else None
        figures = throughput_per_area(report["total"], packed, arch, cc_alpha=cc_alpha)
        report["area"] = figures.pop("area")
        report["total"].update(figures)
    with output_group() as stage:  # the topology and the report are written all or none
        if args.emit_topology:
            write_topology(stage(args.emit_topology), emitted_topology(packed, vectors, rows))
        if args.json:
            write_json_atomic(stage(args.json), SimulateReport.dump(report))
    print(format_summary(report, args, m_source), end="")
    return 0


def resolve_architecture(args: argparse.Namespace) -> Architecture:
    """The `--arch` file's architecture (built-in without), its array replaced by `--array` when given;
    sets `args.array` to the array used and `args.architecture` to the result."""
    arch = load_architecture(args.arch) if args.arch is not None else DEFAULT_ARCH
    if args.array is not None:
        rows, cols = parse_array(args.array)
        arch = replace(arch, rows=rows, cols=cols)
    args.array = f"{arch.rows}x{arch.cols}"
    args.architecture = arch
    return arch


def input_kind(path: str) -> str:
    """`packed` (a file `pack --out`, `compress` or `save_model` wrote), `topology` (a `.csv`) or
    `checkpoint` (anything else)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return "topology"
    if suffix == ".safetensors" and Path(path).is_file():
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(path, framework="numpy") as handle:
                metadata = handle.metadata() or {}
        except (SafetensorError, OSError, ValueError) as exc:
            raise TightCompressError(f"{path}: not a readable safetensors file ({exc})") from None
        if metadata.get("format") in PACKED_FILE_FORMATS:  # `pack --out`, `compress`, `save_model` files
            return "packed"
    return "checkpoint"


def _read_packed(args: argparse.Namespace) -> tuple[dict[str, PackedMatrix], None]:
    """The layers of a packed file; packing options are an error (the file says how it was packed)."""
    given = [o for o in _PACK_OPTIONS if o not in _CC_OPTIONS and getattr(args, o) is not None]
    given += ["permute"] if args.permute else []
    given += ["key"] if args.key is not None else []
    packed = load_packed(args.input)
    if given:
        first = next(iter(packed.values()))
        raise TightCompressError(
            f"{args.input} is packed already ({first.method}, G={first.group}, tile {first.tile}): "
            f"{', '.join('--' + o for o in given)} do not apply; pack the checkpoint again to change them"
        )
    return packed, None


def dense_layers_in_file(path: str) -> list[dict]:
    """The layer weights a packed file carries unpacked among its other tensors (a depthwise conv, a layer
    `sparsify_`'s filter or `--skip-bad-layers` left out), as `notes.skipped_layers` entries: they are not
    simulated, and the summary says so instead of leaving them out silently."""
    state, _dtypes = load_packed_state(path)
    entries = []
    for name, array in state.items():
        if array.ndim < 2 or not name.split(".")[-1].endswith("weight"):
            continue
        depthwise = array.ndim > 2 and array.shape[1] == 1 and int(np.prod(array.shape[2:])) > 1
        reason = DEPTHWISE_REASON if depthwise else "left dense in the packed file (not packed)"
        entries.append(
            {
                "name": name,
                "kind": "depthwise" if depthwise else "dense",
                "shape": list(array.shape),
                "reason": f"{reason}; not simulated",
            }
        )
    return entries


def _config(args: argparse.Namespace, method: str, tile: int) -> PackConfig:
    """The packing config from the options given, PackConfig's defaults for the rest, tile = array width."""
    defaults = {f.name: f.default for f in fields(PackConfig)}
    values = {o: defaults[o] if getattr(args, o) is None else getattr(args, o) for o in _PACK_OPTIONS}
    values.update(
        method=method, tile=tile if args.tile is None else args.tile, seed=args.seed, permute=args.permute
    )
    return PackConfig(**values)


def _read_matrices(
    args: argparse.Namespace,
    kind: str,
    array: tuple[int, int],
    notes: list[str],
    skipped: list[dict],
    reader_notes: dict[str, Any],
    dtypes: dict[str, str],
) -> tuple[dict[str, np.ndarray], PackConfig, str | None]:
    """`(matrices, config, weights note)` of a checkpoint or of a topology alone (seeded random weights).

    A checkpoint's layers the readers leave out (depthwise) and, with `--skip-bad-layers`, the layers that
    cannot be packed go to `skipped`; the reader's notes to `reader_notes`; stored dtypes to `dtypes`."""
    if kind == "checkpoint":
        if args.key is not None and Path(args.input).suffix.lower() not in (".pt", ".pth", ".safetensors"):
            raise TightCompressError("--key selects a state_dict inside a .pt/.pth/.safetensors checkpoint")
        found = read_input(args)
        matrices, bad_layers = split_bad_layers(
            found.arrays, skip=args.skip_bad_layers, squared=getattr(args, "objective", "") == "squared"
        )
        skipped.extend([*found.skipped, *bad_layers])
        reader_notes.update({k: v for k, v in found.notes.items() if k != "skipped_layers"})
        dtypes.update(found.dtypes)
        return matrices, _config(args, args.method or "tight", array[1]), None
    if args.key is not None:
        raise TightCompressError("--key selects a state_dict inside a checkpoint, not a topology")
    rows = read_topology(args.input)
    skipped = [row.name for row in rows if row.depthwise]
    if skipped:
        notes.append(
            f"depthwise rows (name with 'DP') are not dense GEMMs, not simulated: {', '.join(skipped)}"
        )
    rows = [row for row in rows if not row.depthwise]
    if not rows:
        raise TightCompressError(f"{args.input}: no dense layer rows to simulate")
    if args.sparsity is None:
        method = args.method or "dense"
        if method != "dense":
            raise TightCompressError(
                f"a topology has shapes, not weights: --method {method} needs --sparsity S "
                "(seeded random weights of that sparsity), or use --method dense"
            )
        note = f"random dense weights N(0, 1), seed {args.seed}: the topology gives shapes only"
    else:
        method = args.method or "tight"
        note = (
            f"random weights N(0, 1), seed {args.seed}, pruned to sparsity {args.sparsity} by magnitude: "
            "zeros spread uniformly at random, not a trained network's"
        )
    from tightcompress.utils.memory import PACK_BYTES_PER_WEIGHT, check_memory

    sizes = [row.k * row.n for row in rows]  # Python ints: no overflow for K = 1e29
    check_memory(
        (4 + PACK_BYTES_PER_WEIGHT) * sum(sizes),
        f"the random weights of {len(rows)} topology layer(s) (the largest {max(sizes):,} weights)",
    )
    matrices = {}
    for index, row in enumerate(rows):
        rng = np.random.default_rng([args.seed, index])
        matrices[row.name] = rng.standard_normal((row.k, row.n), dtype=np.float32)
    return matrices, _config(args, method, array[1]), note


def _vectors(
    args: argparse.Namespace, kind: str, shapes: dict[str, tuple[int, int]]
) -> tuple[dict[str, int], dict[str, TopologyLayer], str]:
    """`(M per layer, topology row per layer where known, where M came from)`."""
    # --model alone only tells a checkpoint's conv groups; with --input-shape it also counts M
    sources = [o for o in ("topology", "input_shape", "vectors") if getattr(args, o) is not None]
    if kind == "topology":
        sources.insert(0, "input")
    if len(sources) > 1:
        names = ["the input topology" if s == "input" else "--" + s.replace("_", "-") for s in sources]
        raise TightCompressError(f"give one source of M, not {' and '.join(names)}")
    if args.input_shape is not None and args.model is None:
        raise TightCompressError("--input-shape goes with --model FILE.py:Class")
    if args.vectors is not None:
        if args.vectors < 1:
            raise TightCompressError(f"--vectors must be >= 1, got {args.vectors}")
        return dict.fromkeys(shapes, args.vectors), {}, f"--vectors {args.vectors}"
    if kind == "topology" or args.topology is not None:
        path = args.input if kind == "topology" else args.topology
        rows = match_topology(shapes, [r for r in read_topology(path) if not r.depthwise], source=str(path))
        return {name: row.m for name, row in rows.items()}, rows, f"topology {path}"
    if args.input_shape is not None:
        from tightcompress.pipeline.hardware import model_topology
        from tightcompress.pipeline.models import load_model_class

        shape = _parse_shape(args.input_shape)
        model_class = load_model_class(args.model)
        try:
            model = model_class()
        except TypeError as exc:
            raise TightCompressError(
                f"{args.model}: cannot build the model without arguments ({exc})"
            ) from None
        rows = match_topology(shapes, list(model_topology(model, shape).values()), source=args.model)
        return {name: row.m for name, row in rows.items()}, rows, f"model {args.model} on {args.input_shape}"
    return dict.fromkeys(shapes, 1), {}, M_ASSUMED


def _parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(part) for part in text.lower().split("x"))
    except ValueError:
        raise TightCompressError(f"--input-shape must be like 1x3x224x224, got {text!r}") from None
    if len(shape) < 2 or min(shape) < 1:
        raise TightCompressError(f"--input-shape must be positive sizes, batch first, got {text!r}")
    return shape


def _pack(tasks: list[Task], args: argparse.Namespace) -> dict:
    """Pack the tasks (the method's layers and the column-combining baselines) with a progress bar."""
    if not tasks:
        return {}
    if args.ray is None:  # before the progress bar starts
        check_pack_memory([t.matrix.shape for t in tasks], worker_count(args.jobs, len(tasks)))
    with tqdm(
        total=len(tasks), desc="pack", unit="layer", disable=args.quiet or len(tasks) < 2, file=sys.stderr
    ) as bar:
        return run_tasks(tasks, jobs=args.jobs, ray_address=args.ray, progress=lambda _name: bar.update())


def _match_dropped(
    matrices: dict[str, np.ndarray], config: PackConfig, results: dict, args: argparse.Namespace
) -> None:
    """`--match dropped`: replace each layer's packing by the least height (1..G) whose dropped |w| is at
    most column combining's on that layer, found by bisection, all layers at once each round (dropped
    |w| falls as the height grows; h = G drops nothing, since a group holds G rows)."""
    target = {name: results[(name, "cc")].report()["dropped_magnitude_fraction"] for name in matrices}
    low = dict.fromkeys(matrices, 1)
    high = dict.fromkeys(matrices, config.group)
    while any(low[name] < high[name] for name in matrices):
        tasks = []
        for name in matrices:
            if low[name] < high[name]:
                height = (low[name] + high[name]) // 2
                tasks.append(
                    Task((name, height), name, matrices[name], dataclasses.replace(config, height=height))
                )
        for (name, height), packed in _pack(tasks, args).items():
            if packed.report()["dropped_magnitude_fraction"] <= target[name] + 1e-12:
                high[name] = height
            else:
                low[name] = height + 1
    final = [
        Task(name, name, matrices[name], dataclasses.replace(config, height=high[name])) for name in matrices
    ]
    for name, packed in _pack(final, args).items():
        results[(name, "method")] = packed


def emitted_topology(
    packed: dict[str, PackedMatrix], vectors: dict[str, int], rows: dict[str, TopologyLayer]
) -> list[TopologyLayer]:
    """The SCALE-Sim rows of the simulated layers: the layer's own row where its M is that row's, else
    the GEMM-equivalent row of its M x K x N. Named by `topology_name` (no `.weight`)."""
    emitted = []
    for name, layer in packed.items():
        row = rows.get(name)
        k, n = weight_shape(layer)
        if row is not None and row.m == vectors[name] and (row.k, row.n) == (k, n):
            emitted.append(replace(row, name=topology_name(name)))
        else:
            emitted.append(TopologyLayer.from_gemm(topology_name(name), vectors[name], k, n))
    return emitted


def simulate_subword_layer(
    layer: PackedMatrix,
    name: str,
    args: argparse.Namespace,
    array: tuple[int, int],
    m: int,
    table: Any,
    cc: PackedMatrix | None,
) -> dict[str, Any]:
    """`hw.subword_sim.simulate_subword` of a subword-packed layer (as `compress --granularity subword`
    reports it), column combining of its int8 weights as the baseline; `--check-bitexact` runs the
    subword array against the integer GEMM of the recomposed int8 weights."""
    from tightcompress.hw.subword_sim import simulate_subword, simulate_subword_gemm

    if args.gate_zeros:
        raise TightCompressError(f"{name}: --gate-zeros is not modelled for subword-packed layers")
    subwords = SubwordPacked.from_packed(layer)
    arch = getattr(args, "architecture", None)
    hw = simulate_subword(subwords, array=array, m=m, energy=table, cc_baseline=cc, arch=arch)
    if args.check_bitexact:
        x = random_activations(min(m, 4), subwords.K, args.seed)
        reference = x.astype(np.int64) @ subwords.to_int8_dense().astype(np.int64)
        hw["bitexact"] = bool(np.array_equal(simulate_subword_gemm(subwords, x), reference))
    return hw


def _tile_note(packed: dict[str, PackedMatrix], array: tuple[int, int]) -> str | None:
    """One line on what a tile other than the array's width costs, measured on these layers."""
    cols = array[1]
    # a layer narrower than the array packed at its own width leaves columns idle whatever the tile
    odd = [p for p in packed.values() if p.tile != cols and not p.tile == p.N < cols]
    if not odd:
        return None
    tiles = sorted({p.tile for p in odd})
    folds_width = [column_occupancy(p, array) for p in odd]
    occupancy = float(np.mean(folds_width))
    shown = "/".join(str(t) for t in tiles)
    if all(p.tile < cols for p in odd):
        cost = "tight tiles narrower than the array each take a pass of their own"
    else:
        cost = "a tile wider than the array runs in several column folds at the height of its widest columns"
    return (
        f"tile {shown} on a {cols}-column array: the folds use {occupancy:.0%} of the columns on average "
        f"({cost}); --tile {cols} matches the array"
    )


def format_summary(report: dict[str, Any], args: argparse.Namespace, m_source: str) -> str:
    """The per-layer table, the energy by component and one summary line (what stdout shows)."""
    layers, total = report["layers"], report["total"]
    has_cc = "cc_cycles" in total
    # Each method's dropped |w| stands beside its speed-up: a lossy method's gains are not free.
    head = ["layer", "M", "cycles", "vs dense", "dropped"] + (["vs CC", "CC dropped"] if has_cc else [])
    head += ["PE util", "energy uJ", "compute", "SRAM", "DRAM", "E vs dense"] + (
        ["E vs CC"] if has_cc else []
    )
    lines = [head]
    for layer in [*layers, {**total, "name": "total", "m": ""}]:
        parts = _energy_parts(layer["energy_breakdown_pj"])
        row = [layer["name"], str(layer["m"]), str(layer["cycles"]), f"{layer['speedup']:.2f}x"]
        row.append(f"{layer['dropped_magnitude_fraction']:.1%}")
        if has_cc:
            row += [f"{layer['speedup_vs_cc']:.2f}x", f"{layer['cc_dropped_magnitude_fraction']:.1%}"]
        row += [f"{layer['utilization_pe']:.1%}", f"{layer['energy_pj'] / 1e6:.3f}"]
        row += [f"{value / 1e6:.3f}" for value in parts]
        row.append(f"{layer['energy_gain']:.2f}x")
        if has_cc:
            row.append(f"{layer['energy_gain_vs_cc']:.2f}x")
        lines.append(row)
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = []
    for number, line in enumerate(lines):
        if number == len(lines) - 1:
            out.append("  ".join("-" * w for w in widths))
        out.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(line, widths, strict=True))
            )
        )
    breakdown = ", ".join(f"{k} {v / 1e6:.3f}" for k, v in total["energy_breakdown_pj"].items())
    out.append(f"energy by component (uJ): {breakdown}")
    for note in report["notes"]["messages"]:
        out.append(f"note: {note}")
    for entry in report["notes"]["skipped_layers"]:
        out.append(f"note: skipped {entry['name']}: {entry['reason']}")
    floor = min_folds_note(layers, args.array)
    if floor:
        out.append(f"note: {floor}")
    if "weights" in report:
        out.append(f"weights: {report['weights']}")
    methods = "/".join(sorted({layer["method"] for layer in layers}))
    if m_source == M_ASSUMED:
        m_text = "M = 1 assumed for every layer (one input vector; give --topology, --model or --vectors)"
    else:
        m_text = f"M from {m_source}"
    line = (
        f"{len(layers)} layer(s), {methods} on {args.array}, {m_text}: {total['cycles']} cycles "
        f"(speed-up {total['speedup']:.2f}x over dense"
    )
    if has_cc:
        line += f", {total['speedup_vs_cc']:.2f}x over column combining"
    line += f"; dropped |w| {total['dropped_magnitude_fraction']:.1%}"
    if has_cc:
        line += f", column combining's {total['cc_dropped_magnitude_fraction']:.1%}"
    line += (
        f"), PE utilization {total['utilization_pe']:.1%} (dense {total['dense_utilization_pe']:.1%}), "
        f"energy {total['energy_pj'] / 1e6:.3f} uJ (gain {total['energy_gain']:.2f}x over dense"
    )
    if has_cc:
        line += f", {total['energy_gain_vs_cc']:.2f}x over column combining"
    line += ")"
    if "bitexact" in total:
        line += f", bit-exact {'yes' if total['bitexact'] else 'NO'}"
    if "area_mm2" in total:
        line += (
            f", array {total['area_mm2']:.3f} mm2 (dense {total['dense_area_mm2']:.3f}), "
            f"{total['throughput_gmacs_per_mm2']:.2f} GMAC/s/mm2 at {report['area']['clock_mhz']:g} MHz "
            f"({total['throughput_per_area_gain']:.2f}x dense"
        )
        if "throughput_per_area_gain_vs_cc" in total:
            line += f", {total['throughput_per_area_gain_vs_cc']:.2f}x column combining"
        line += ")"
    if args.json:
        line += f" -> {args.json}"
    out.append(line)
    return "\n".join(out) + "\n"


def _energy_parts(breakdown: dict[str, float]) -> tuple[float, float, float]:
    """`(compute, SRAM, DRAM)` pJ of an energy breakdown: PE work, on-chip buffers, off-chip weights."""
    sram = sum(v for k, v in breakdown.items() if k.startswith("sram_"))
    dram = sum(v for k, v in breakdown.items() if k.startswith("dram_"))
    return sum(breakdown.values()) - sram - dram, sram, dram
