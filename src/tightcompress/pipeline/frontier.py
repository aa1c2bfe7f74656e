"""`run_frontier`: accuracy against compression rate for every method at several rates and seeds, on the
embedded demo, and the rate each method keeps at equal accuracy (the Tight Compression paper states its
headline as a rate at equal accuracy: 10.28x whole weights, 14.13x subwords, against 5.88x for column
combining).

One point `(method, rate r, seed)` is the demo's pipeline (`pipeline.demo`): same data split, model, dense
training, distillation teacher and fine-tuning budget. Per seed, the dense model and one gradual pruning
are made once: the demo's cubic rounds up to the sparsity `1 - 1/r` of the lowest rate, then one more round
(`prune_epochs`) per higher rate; the snapshot at `1 - 1/r` is where every word-level method starts at rate
r, and runs the demo's format-aware step (`compress_model`). A `tight-subword` point is the demo's subword
row at bit rate r (`run_subword_row`, from the dense model, as in the demo). The lowest rate's points are
therefore exactly `tightcompress demo --rate r` (in one thread).

Every seed stage and point runs in one CPU thread with torch's deterministic algorithms, so it gives the
same numbers serially, in a process pool or on a Ray cluster. The driver writes each finished point to
`WORKDIR/frontier/` atomically and keeps each seed's stages there, so `resume` reuses them wherever they
were computed (a cluster run resumes on one machine and the reverse).

Summary (`summarize`): per (method, target rate) the means over seeds; `iso_accuracy[tol][method]` is the
highest mean measured rate whose mean accuracy is within `tol` points of the dense mean (None if none is);
`ratios[tol]` compares tight and column combining each at its own iso-accuracy point: rate, throughput and
energy efficiency (their mean gains over dense on the demo's 32x32 array).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import multiprocessing
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from tightcompress.errors import TightCompressError
from tightcompress.parallel import connect_ray, default_jobs, ray_failure, stop_pool
from tightcompress.pipeline import fit
from tightcompress.pipeline.compress import (
    StageResult,
    compress_model,
    restore,
    unstructured_stage,
)
from tightcompress.pipeline.config import (
    DEFAULT_RATES,
    DEFAULT_SEEDS,
    FRONTIER_METHODS,
    SUBWORD_METHOD,
)
from tightcompress.pipeline.data import load_mnist
from tightcompress.pipeline.demo import DemoConfig, default_workdir, dense_model, run_subword_row
from tightcompress.pipeline.iso_accuracy import POINT_FIELDS, TOLERANCES, mean_std, summarize
from tightcompress.pipeline.models import gemm_layers
from tightcompress.pipeline.train import frozen_copy
from tightcompress.readers.matrices import weight_to_matrix
from tightcompress.utils.atomic import atomic_path, write_json_atomic

log = logging.getLogger("tightcompress.frontier")

RAY_MAX_RETRIES = 3  # Ray reruns a task whose worker process died this many times before reporting it
_FORMAT = "frontier-1"  # bump when a point's meaning changes, so older point files are not resumed

Progress = Callable[[str], None]
PointKey = tuple[str, float, int]


def parse_methods(values: Sequence[str]) -> tuple[str, ...]:
    """Method names given with spaces and/or commas (`tight,nm cc`), checked, duplicates dropped."""
    names = [part.strip() for value in values for part in value.split(",") if part.strip()]
    if not names:
        raise TightCompressError("give at least one method")
    for name in names:
        if name not in FRONTIER_METHODS:
            raise TightCompressError(f"unknown method {name!r}; choose from {', '.join(FRONTIER_METHODS)}")
    return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class FrontierConfig:
    """The grid (methods x rates x seeds) and the demo settings every point uses (its `rate`, `seed`,
    `methods` and `subword_bit_rate` are set per point and ignored here)."""

    methods: tuple[str, ...] = FRONTIER_METHODS
    rates: tuple[float, ...] = DEFAULT_RATES
    seeds: tuple[int, ...] = DEFAULT_SEEDS
    demo: DemoConfig = field(default_factory=DemoConfig)
    tolerances: tuple[float, ...] = TOLERANCES

    def __post_init__(self) -> None:
        object.__setattr__(self, "methods", parse_methods(self.methods))
        rates = tuple(float(r) for r in self.rates)
        if not rates or any(not (math.isfinite(r) and r >= 1.0) for r in rates):
            raise TightCompressError(f"rates must be finite numbers >= 1, got {self.rates!r}")
        if len(set(rates)) != len(rates):
            raise TightCompressError(f"rates must be distinct, got {self.rates!r}")
        object.__setattr__(self, "rates", rates)
        if not self.seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in self.seeds):
            raise TightCompressError(f"seeds must be integers >= 0, got {self.seeds!r}")
        if len(set(self.seeds)) != len(self.seeds):
            raise TightCompressError(f"seeds must be distinct, got {self.seeds!r}")
        if not self.tolerances or any(not t >= 0 for t in self.tolerances):
            raise TightCompressError(f"tolerances must be >= 0, got {self.tolerances!r}")

    def word_rates(self) -> tuple[float, ...]:
        """The rates of the shared pruning chain, rising (none when only subwords are asked for)."""
        if not any(m != SUBWORD_METHOD for m in self.methods):
            return ()
        return tuple(sorted(self.rates))

    def demo_for(self, seed: int) -> DemoConfig:
        """The demo settings of one seed."""
        return replace(self.demo, seed=seed)

    def grid(self) -> list[PointKey]:
        """Every point, in output order: by method, then rate, then seed."""
        return [(m, r, s) for m in self.methods for r in self.rates for s in self.seeds]


@dataclass
class SeedStages:
    """What every point of one seed starts from: the dense model and the pruning snapshot of each rate."""

    seed: int
    dense: StageResult
    pruned: dict[float, StageResult]
    seconds: float = 0.0  # wall and CPU time it took to make them (0 when loaded)
    cpu_seconds: float = 0.0

    def for_point(self, method: str, rate: float) -> SeedStages:
        """Only what one point reads (the dense model, and its rate's snapshot for word-level methods)."""
        pruned = {} if method == SUBWORD_METHOD else {rate: self.pruned[rate]}
        return SeedStages(self.seed, self.dense, pruned)


# ------------------------------------------------------------------------------------------ keys, files
def _hash(payload: Any) -> str:
    return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def _settings(config: FrontierConfig, seed: int) -> dict[str, Any]:
    demo = config.demo_for(seed)
    compress = {k: v for k, v in asdict(demo.compress).items() if k not in ("method", "rate", "seed")}
    return {
        "format": _FORMAT,
        "seed": seed,
        "widths": list(demo.widths),
        "dense_epochs": demo.dense_epochs,
        "dense_lr": demo.dense_lr,
        "test_fraction": demo.test_fraction,
        "compress": compress,
    }


def seed_key(config: FrontierConfig, seed: int) -> str:
    """Hash of everything a seed's stages depend on (the pruning chain included)."""
    return _hash({**_settings(config, seed), "chain": list(config.word_rates())})


def point_key(config: FrontierConfig, method: str, rate: float, seed: int) -> str:
    """Hash of everything one point depends on (word-level points: the chain up to their rate)."""
    chain = None if method == SUBWORD_METHOD else [r for r in config.word_rates() if r <= rate]
    return _hash({**_settings(config, seed), "method": method, "rate": rate, "chain": chain})


def frontier_dir(workdir: Path) -> Path:
    """Where the frontier keeps its points and seed stages."""
    return workdir / "frontier"


def point_path(workdir: Path, config: FrontierConfig, method: str, rate: float, seed: int) -> Path:
    """The file of one finished point."""
    key = point_key(config, method, rate, seed)
    return frontier_dir(workdir) / f"point-{method}-{rate:g}x-s{seed}-{key}.json"


def seed_path(workdir: Path, config: FrontierConfig, seed: int) -> Path:
    """The file of one seed's stages."""
    return frontier_dir(workdir) / f"seed-s{seed}-{seed_key(config, seed)}.pt"


def _stage_payload(stage: StageResult) -> dict[str, Any]:
    return {
        "state": stage.state,
        "masks": stage.masks,
        "accuracy": stage.accuracy,
        "meta": json.dumps(stage.meta),
    }


def _stage_from(payload: dict[str, Any]) -> StageResult:
    return StageResult(
        payload["state"], payload["masks"], float(payload["accuracy"]), json.loads(payload["meta"])
    )


def save_seed_stages(path: Path, stages: SeedStages) -> None:
    """Write a seed's stages atomically (one file: dense model and every pruning snapshot)."""
    payload = {
        "seed": stages.seed,
        "dense": _stage_payload(stages.dense),
        "pruned": {repr(rate): _stage_payload(stage) for rate, stage in stages.pruned.items()},
        "seconds": stages.seconds,
        "cpu_seconds": stages.cpu_seconds,
    }
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(payload, str(tmp))


def load_seed_stages(path: Path) -> SeedStages | None:
    """A seed's stages, or None when the file is missing or unreadable (then they are made again)."""
    if not path.is_file():
        return None
    try:
        payload = torch.load(str(path), map_location="cpu", weights_only=True)
        pruned = {float(rate): _stage_from(stage) for rate, stage in payload["pruned"].items()}
        return SeedStages(int(payload["seed"]), _stage_from(payload["dense"]), pruned)
    except Exception as exc:  # a damaged file is redone, not trusted
        log.warning("ignoring unreadable seed stages %s (%s)", path, type(exc).__name__)
        return None


def load_point(path: Path) -> tuple[dict[str, Any], float] | None:
    """A finished point and its seed's dense accuracy, or None when missing or unreadable."""
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        fields = ("method", "target_rate", "seed", "unreachable")
        names = fields if "unreachable" in record["point"] else POINT_FIELDS
        point = {name: record["point"][name] for name in names}
        return point, float(record["dense_accuracy"])
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        log.warning("ignoring unreadable point file %s (%s)", path, type(exc).__name__)
        return None


# ------------------------------------------------------------------------------------------------- work
@contextlib.contextmanager
def deterministic_cpu() -> Iterator[None]:
    """One torch thread and deterministic algorithms (restored after): the same numbers in any process."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(deterministic)
        torch.set_num_threads(threads)


def check_rates(config: FrontierConfig) -> None:
    """Fail before any training when a (method, rate) is beyond every packing option of the demo CNN."""
    model = config.demo.model(load_mnist(config.demo.test_fraction, config.seeds[0]))
    shapes = {
        n: tuple(weight_to_matrix(m.weight.detach().numpy()).shape) for n, m in gemm_layers(model).items()
    }
    subword_shapes = {n: (2 * K, N) for n, (K, N) in shapes.items()}
    for method in config.methods:
        for rate in config.rates:
            if method == SUBWORD_METHOD:
                fit.check_rate(subword_shapes, "tight", rate, config.demo.compress.tile)
            else:
                fit.check_rate(shapes, method, rate, config.demo.compress.tile)


def prepare_seed(config: FrontierConfig, seed: int, stage_dir: Path, *, resume: bool = False) -> SeedStages:
    """Train (or load) the dense model of `seed` and run the shared gradual pruning through every rate.

    `stage_dir` holds the demo's stage files of this work (dense model, pruning rounds); with `resume` an
    interrupted chain continues after its last saved round.
    """
    demo = config.demo_for(seed)
    data = load_mnist(demo.test_fraction, seed)
    dense = dense_model(data, demo, stage_dir, quiet=True)
    pruned: dict[float, StageResult] = {}
    rates = config.word_rates()
    if rates:
        model = demo.model(data)
        restore(model, dense)
        teacher = frozen_copy(model)
        base = replace(demo.compress, rate=rates[0], seed=seed)  # the demo's own pruning at the lowest rate
        stage = unstructured_stage(
            model, data, base, workdir=stage_dir, resume=resume, quiet=True, teacher=teacher
        )
        pruned[rates[0]] = stage
        for index, rate in enumerate(rates[1:]):
            model = demo.model(data)
            restore(model, stage)
            step = replace(base, rate=rate, prune_rounds=1, seed=seed + base.prune_rounds + index)
            stage = unstructured_stage(
                model, data, step, workdir=stage_dir, resume=resume, quiet=True, teacher=teacher
            )
            pruned[rate] = stage
    return SeedStages(seed, dense, pruned)


def run_point(config: FrontierConfig, stages: SeedStages, method: str, rate: float) -> dict[str, Any]:
    """Fit and fine-tune one method at one rate from a seed's stages; the point's JSON fields.

    When the method's options cannot reach the rate on this seed's pruned layers (found while planning,
    before any fine-tuning), the point is `{"method", "target_rate", "seed", "unreachable": reason}`.
    """
    try:
        return _measure_point(config, stages, method, rate)
    except TightCompressError as exc:
        if "cannot be reached" not in str(exc):  # `fit.choose_options` / `fit.check_rate`: rate too high
            raise
        return {
            "method": method,
            "target_rate": float(rate),
            "seed": int(stages.seed),
            "unreachable": str(exc),
        }


def _measure_point(config: FrontierConfig, stages: SeedStages, method: str, rate: float) -> dict[str, Any]:
    seed = stages.seed
    demo = config.demo_for(seed)
    data = load_mnist(demo.test_fraction, seed)
    model = demo.model(data)
    restore(model, stages.dense)
    teacher = frozen_copy(model)
    if method == SUBWORD_METHOD:
        row, result = run_subword_row(
            demo.model(data),
            data,
            stages.dense,
            bit_rate=rate,
            seed=seed,
            config=demo.compress,  # the word-level budget and teacher, as in the demo
            workdir=None,
            resume=False,
            quiet=True,
            teacher=teacher,
        )
        hardware = result.report["hardware"]
        measured = {"compression_rate": row["compression_rate"], "accuracy": row["accuracy"]}
    else:
        if rate not in stages.pruned:
            raise TightCompressError(f"seed {seed} has no pruning stage for {rate:g}x")
        result = compress_model(
            demo.model(data),
            data,
            replace(demo.compress, method=method, rate=rate, seed=seed),
            workdir=None,
            resume=False,
            quiet=True,
            unstructured=stages.pruned[rate],
            dense_accuracy=stages.dense.accuracy,
            teacher=teacher,
        )
        hardware = result.report["hardware"]
        measured = {
            "compression_rate": result.report["compression_rate"],
            "accuracy": result.report["accuracy"]["packed_finetuned"],
        }
    return {
        "method": method,
        "target_rate": float(rate),
        "seed": int(seed),
        "compression_rate": float(measured["compression_rate"]),
        "accuracy": float(measured["accuracy"]),
        "speedup": float(hardware["speedup"]),
        "energy_gain": float(hardware["energy_gain"]),
    }


def _prepare_task(config: FrontierConfig, seed: int, stage_dir: str | None, resume: bool) -> SeedStages:
    """A worker's seed preparation (in a temporary folder when the driver's folder is not shared)."""
    wall, cpu = time.perf_counter(), time.process_time()
    with deterministic_cpu():
        if stage_dir is not None:
            stages = prepare_seed(config, seed, Path(stage_dir), resume=resume)
        else:
            with tempfile.TemporaryDirectory(prefix="tightcompress-frontier-") as tmp:
                stages = prepare_seed(config, seed, Path(tmp))
    stages.seconds, stages.cpu_seconds = time.perf_counter() - wall, time.process_time() - cpu
    return stages


def _point_task(
    config: FrontierConfig, stages: SeedStages, method: str, rate: float
) -> tuple[dict[str, Any], dict[str, float]]:
    """A worker's point, and the wall and CPU seconds it took."""
    wall, cpu = time.perf_counter(), time.process_time()
    with deterministic_cpu():
        point = run_point(config, stages, method, rate)
    return point, {"seconds": time.perf_counter() - wall, "cpu_seconds": time.process_time() - cpu}


def _label(key: PointKey) -> str:
    method, rate, seed = key
    return f"{method} at {rate:g}x, seed {seed}"


def _failed(what: str, exc: BaseException) -> TightCompressError:
    return TightCompressError(f"frontier {what} failed: {ray_failure(exc)}")


# ----------------------------------------------------------------------------------------- executors
@dataclass
class _Run:
    """The driver's state: what is left to do, and what to call when a piece finishes."""

    config: FrontierConfig
    todo: list[PointKey]
    stages: dict[int, SeedStages]  # known (resumed) seed stages
    prepare: list[int]  # seeds whose stages must be made
    stage_dir: Path
    resume: bool
    on_stages: Callable[[SeedStages], None]
    on_point: Callable[[PointKey, tuple[dict[str, Any], dict[str, float]], float], None]

    def points_of(self, seed: int) -> list[PointKey]:
        return [key for key in self.todo if key[2] == seed]


def _execute_serial(run: _Run) -> None:
    for seed in run.config.seeds:
        keys = run.points_of(seed)
        if not keys:
            continue
        stages = run.stages.get(seed)
        if stages is None:
            stages = _prepare_task(run.config, seed, str(run.stage_dir), run.resume)
            run.on_stages(stages)
        for key in keys:
            run.on_point(key, _point_task(run.config, stages, key[0], key[1]), stages.dense.accuracy)


def _execute_pool(run: _Run, jobs: int) -> None:
    # spawn: a forked child of a process whose OpenMP pool has run can hang in torch; the start-up cost
    # (importing torch once per worker) is small against a point's fine-tuning.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        pending: dict[Future, tuple[str, Any]] = {}

        def submit_points(stages: SeedStages) -> None:
            for key in run.points_of(stages.seed):
                piece = stages.for_point(key[0], key[1])  # pickled per task: send only what it reads
                future = pool.submit(_point_task, run.config, piece, key[0], key[1])
                pending[future] = ("point", (key, stages.dense.accuracy))

        for seed in run.prepare:
            future = pool.submit(_prepare_task, run.config, seed, str(run.stage_dir), run.resume)
            pending[future] = ("seed", seed)
        for stages in run.stages.values():
            submit_points(stages)
        try:
            while pending:
                done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
                for future in done:
                    kind, what = pending.pop(future)
                    name = f"seed {what} (dense model and pruning)" if kind == "seed" else _label(what[0])
                    try:
                        result = future.result()
                    except BrokenProcessPool as exc:
                        raise _failed(f"{name}", RuntimeError(f"a worker process died ({exc})")) from None
                    except TightCompressError as exc:
                        raise TightCompressError(f"frontier {name}: {exc}") from None
                    except Exception as exc:
                        raise _failed(name, exc) from None
                    if kind == "seed":
                        run.on_stages(result)
                        submit_points(result)
                    else:
                        run.on_point(what[0], result, what[1])
        except BaseException:  # Ctrl-C, SIGTERM or a failed point: terminate the workers now
            stop_pool(pool)
            raise


def _execute_ray(run: _Run, address: str) -> None:
    ray = connect_ray(address, nothing="no frontier point was run")
    options = {"num_cpus": 1, "max_retries": RAY_MAX_RETRIES}
    prepare = ray.remote(**options)(_prepare_task)
    point = ray.remote(**options)(_point_task)
    pending: dict[Any, tuple[str, Any]] = {}
    stage_refs = {seed: ray.put(stages) for seed, stages in run.stages.items()}
    for seed in run.prepare:
        # Made once per seed on the cluster; every point of the seed gets it from the object store.
        ref = prepare.remote(run.config, seed, None, False)
        stage_refs[seed] = ref
        pending[ref] = ("seed", seed)
    dense_accuracy = {seed: stages.dense.accuracy for seed, stages in run.stages.items()}
    for key in run.todo:
        pending[point.remote(run.config, stage_refs[key[2]], key[0], key[1])] = ("point", key)

    def seed_done(seed: int, ref: Any) -> None:
        try:
            made = ray.get(ref)
        except Exception as exc:  # RayTaskError (the task raised), WorkerCrashedError after retries...
            raise _failed(f"seed {seed} (dense model and pruning)", exc) from None
        dense_accuracy[seed] = made.dense.accuracy
        run.on_stages(made)

    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            kind, what = pending.pop(done[0])
            if kind == "seed":
                seed_done(what, done[0])
                continue
            if what[2] not in dense_accuracy:  # its seed finished too, but was not collected yet
                pending.pop(stage_refs[what[2]])
                seed_done(what[2], stage_refs[what[2]])
            try:
                result = ray.get(done[0])
            except Exception as exc:
                raise _failed(_label(what), exc) from None
            run.on_point(what, result, dense_accuracy[what[2]])
    except BaseException:
        for ref in pending:
            with contextlib.suppress(Exception):
                ray.cancel(ref)
        raise


def build_frontier(
    config: FrontierConfig, points: Sequence[dict[str, Any]], dense_by_seed: Mapping[int, float]
) -> dict[str, Any]:
    """The F.json payload: dense accuracy over seeds, every point, the summary, iso-accuracy rates, ratios."""
    per_seed = {str(seed): float(dense_by_seed[seed]) for seed in config.seeds}
    dense_mean, dense_std = mean_std(list(per_seed.values()))
    summary, iso_accuracy, ratios = summarize(points, dense_mean, config.tolerances)
    demo = config.demo
    return {
        "dense": {"accuracy_mean": dense_mean, "accuracy_std": dense_std, "per_seed": per_seed},
        "points": list(points),
        "iso_accuracy": iso_accuracy,
        "ratios": ratios,
        "summary": summary,
        "config": {
            "methods": list(config.methods),
            "rates": list(config.rates),
            "seeds": list(config.seeds),
            "widths": list(demo.widths),
            "dense_epochs": demo.dense_epochs,
            "compress": {
                k: v for k, v in asdict(demo.compress).items() if k not in ("method", "rate", "seed")
            },
            "array": "32x32",
        },
    }


# ---------------------------------------------------------------------------------------------- driver
def run_frontier(
    config: FrontierConfig | None = None,
    *,
    workdir: str | os.PathLike[str] | None = None,
    resume: bool = False,
    jobs: int | None = None,
    ray_address: str | None = None,
    progress: Progress | None = None,
    on_total: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Run every (method, rate, seed) point and return the F.json payload (plus `seconds`).

    `jobs=1` runs in this process, more in a process pool (default: the usable cores); `ray_address`
    sends every seed preparation and point to a Ray cluster as a task. With `resume`, finished points and
    seed stages in `workdir` are reused. `on_total(n)` is told how many pieces (seed preparations and
    points) are left; `progress(label)` is called as each finishes.
    """
    config = config or FrontierConfig()
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise TightCompressError(f"jobs must be an integer >= 1, got {jobs!r}")
    start = time.perf_counter()
    check_rates(config)
    workdir = Path(workdir) if workdir is not None else default_workdir()
    found: dict[PointKey, dict[str, Any]] = {}
    dense_by_seed: dict[int, float] = {}
    todo: list[PointKey] = []
    for key in config.grid():
        loaded = load_point(point_path(workdir, config, *key)) if resume else None
        if loaded is None:
            todo.append(key)
        else:
            found[key] = loaded[0]
            dense_by_seed[key[2]] = loaded[1]
    seeds_needed = list(dict.fromkeys(key[2] for key in todo))
    stages: dict[int, SeedStages] = {}
    for seed in seeds_needed:
        loaded_stages = load_seed_stages(seed_path(workdir, config, seed)) if resume else None
        if loaded_stages is not None:
            stages[seed] = loaded_stages
    prepare = [seed for seed in seeds_needed if seed not in stages]
    if found:
        log.info("resumed %d finished point(s) from %s", len(found), frontier_dir(workdir))
    if on_total is not None:
        on_total(len(prepare) + len(todo))

    def on_stages(made: SeedStages) -> None:
        save_seed_stages(seed_path(workdir, config, made.seed), made)
        log.info("seed %d stages made in %.0f s (%.0f s CPU)", made.seed, made.seconds, made.cpu_seconds)
        if progress:
            progress(f"seed {made.seed} stages")

    def on_point(key: PointKey, done: tuple[dict[str, Any], dict[str, float]], dense_accuracy: float) -> None:
        point, timing = done
        record = {"point": point, "dense_accuracy": dense_accuracy, "key": point_key(config, *key), **timing}
        write_json_atomic(point_path(workdir, config, *key), record)
        found[key] = point
        dense_by_seed[key[2]] = dense_accuracy
        if "unreachable" in point:
            log.warning("%s: %s", _label(key), point["unreachable"])
        if progress:
            progress(_label(key))

    run = _Run(config, todo, stages, prepare, frontier_dir(workdir) / "stages", resume, on_stages, on_point)
    if todo:
        if ray_address is not None:
            _execute_ray(run, ray_address)
        else:
            workers = min(jobs or default_jobs(), max(len(prepare), len(todo), 1))
            if workers == 1:
                with deterministic_cpu():
                    _execute_serial(run)
            else:
                _execute_pool(run, workers)
    missing = [key for key in config.grid() if key not in found]
    if missing:  # never silently: every point is either finished or the run raised
        raise TightCompressError(
            f"frontier: {len(missing)} point(s) did not finish, e.g. {_label(missing[0])}"
        )
    measured = [found[key] for key in config.grid() if "unreachable" not in found[key]]
    result = build_frontier(config, measured, dense_by_seed)
    result["unreachable"] = [found[key] for key in config.grid() if "unreachable" in found[key]]
    result["seconds"] = time.perf_counter() - start
    return result
