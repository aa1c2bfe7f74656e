"""`run_frontier`: accuracy against compression rate for every method at several rates and seeds, and the
rate each method keeps at equal accuracy (the Tight Compression paper states its headline as a rate at
equal accuracy: 10.28x whole weights, 14.13x subwords, against 5.88x for column combining).

The parts, each its own module:
- `grid`: the grid of points and the model they measure (`FrontierConfig`);
- `kinds`: the model being measured, behind one small interface (`kinds.base.ModelKind`): the embedded
  demo (`kinds.demo`, trained and fine-tuned), an ONNX file or a PyTorch model (one-shot or fine-tuned);
- `executors`: where the pieces run (this process, a process pool, Ray tasks);
- `store`: the work folder, whose point and seed files make `--resume`;
- `result`: the F.json payload; its iso-accuracy arithmetic is `pipeline.iso_accuracy` (torch-free).

This module is the driver and the two pieces every executor runs: a seed's preparation (`prepare_seed`,
the kind's starting point for every point of the seed) and a point (`run_point`). Every piece runs in one
CPU thread with torch's deterministic algorithms, so it gives the same numbers serially, in a process pool
or on a Ray cluster. The driver writes each finished point to `WORKDIR/frontier/` atomically and keeps
each seed's stages there, so `resume` reuses them wherever they were computed.

Summary (`pipeline.iso_accuracy.summarize`): per (method, target rate) the means over seeds;
`iso_accuracy[tol][method]` is the highest mean measured rate whose mean accuracy is within `tol` points
of the dense mean (None if none is); `ratios[tol]` compares tight and column combining each at its own
iso-accuracy point: rate, throughput and energy efficiency (their mean gains over dense on a 32x32 array).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from tightcompress.errors import TightCompressError
from tightcompress.parallel import default_jobs
from tightcompress.pipeline.config import FRONTIER_METHODS, default_workdir
from tightcompress.pipeline.frontier.executors import (
    PointDone,
    Run,
    execute_pool,
    execute_ray,
    execute_serial,
)
from tightcompress.pipeline.frontier.grid import FrontierConfig, PointKey, label, parse_methods
from tightcompress.pipeline.frontier.kinds.base import ModelKind, Stages
from tightcompress.pipeline.frontier.kinds.demo import DemoKind
from tightcompress.pipeline.frontier.result import build_frontier
from tightcompress.pipeline.frontier.store import (
    frontier_dir,
    load_point,
    load_seed_stages,
    point_key,
    point_path,
    save_seed_stages,
    seed_path,
)
from tightcompress.utils.atomic import write_json_atomic

__all__ = [
    "FRONTIER_METHODS",
    "DemoKind",
    "FrontierConfig",
    "ModelKind",
    "build_frontier",
    "deterministic_cpu",
    "parse_methods",
    "prepare_seed",
    "run_frontier",
    "run_point",
]

log = logging.getLogger("tightcompress.frontier")

RAY_MAX_RETRIES = 3  # Ray reruns a task whose worker process died this many times before reporting it

Progress = Callable[[str], None]


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


# ------------------------------------------------------------------------------------------- the pieces
def prepare_seed(config: FrontierConfig, seed: int, stage_dir: Path, *, resume: bool = False) -> Stages:
    """What every point of `seed` starts from (the demo: the dense model and the shared gradual pruning
    through every rate). `stage_dir` holds the intermediate files; `resume` continues them."""
    return config.model.prepare(seed, config.methods, config.rates, stage_dir, resume)


def run_point(config: FrontierConfig, stages: Stages, method: str, rate: float) -> dict[str, Any]:
    """Compress with one method at one rate from a seed's stages and measure it; the point's JSON fields.

    When the method's options cannot reach the rate on this model (found while planning, before any
    fine-tuning), the point is `{"method", "target_rate", "seed", "unreachable": reason}`.
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


def _measure_point(config: FrontierConfig, stages: Stages, method: str, rate: float) -> dict[str, Any]:
    measured = config.model.measure(stages, method, rate)
    return {"method": method, "target_rate": float(rate), "seed": int(stages.seed), **measured}


def _prepare_task(config: FrontierConfig, seed: int, stage_dir: str | None, resume: bool) -> Stages:
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


def _point_task(config: FrontierConfig, stages: Stages, method: str, rate: float) -> PointDone:
    """A worker's point, and the wall and CPU seconds it took."""
    wall, cpu = time.perf_counter(), time.process_time()
    with deterministic_cpu():
        point = run_point(config, stages, method, rate)
    return point, {"seconds": time.perf_counter() - wall, "cpu_seconds": time.process_time() - cpu}


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
    config.model.check(config.methods, config.rates)
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
    stages: dict[int, Stages] = {}
    for seed in seeds_needed:
        loaded_stages = load_seed_stages(seed_path(workdir, config, seed), config.model) if resume else None
        if loaded_stages is not None:
            stages[seed] = loaded_stages
    prepare = [seed for seed in seeds_needed if seed not in stages]
    if found:
        log.info("resumed %d finished point(s) from %s", len(found), frontier_dir(workdir))
    if on_total is not None:
        on_total(len(prepare) + len(todo))

    def on_stages(made: Stages) -> None:
        save_seed_stages(seed_path(workdir, config, made.seed), made)
        log.info("seed %d stages made in %.0f s (%.0f s CPU)", made.seed, made.seconds, made.cpu_seconds)
        if progress:
            progress(f"seed {made.seed} stages")

    def on_point(key: PointKey, done: PointDone, dense_accuracy: float) -> None:
        point, timing = done
        record = {"point": point, "dense_accuracy": dense_accuracy, "key": point_key(config, *key), **timing}
        write_json_atomic(point_path(workdir, config, *key), record)
        found[key] = point
        dense_by_seed[key[2]] = dense_accuracy
        if "unreachable" in point:
            log.warning("%s: %s", label(key), point["unreachable"])
        if progress:
            progress(label(key))

    run = Run(
        config, todo, stages, prepare, frontier_dir(workdir) / "stages", resume,
        _prepare_task, _point_task, on_stages, on_point,
    )  # fmt: skip
    if todo:
        if ray_address is not None:
            execute_ray(run, ray_address, RAY_MAX_RETRIES)
        else:
            workers = min(jobs or default_jobs(), max(len(prepare), len(todo), 1))
            if workers == 1:
                with deterministic_cpu():
                    execute_serial(run)
            else:
                execute_pool(run, workers)
    missing = [key for key in config.grid() if key not in found]
    if missing:  # never silently: every point is either finished or the run raised
        raise TightCompressError(
            f"frontier: {len(missing)} point(s) did not finish, e.g. {label(missing[0])}"
        )
    measured = [found[key] for key in config.grid() if "unreachable" not in found[key]]
    result = build_frontier(config, measured, dense_by_seed)
    result["unreachable"] = [found[key] for key in config.grid() if "unreachable" in found[key]]
    result["seconds"] = time.perf_counter() - start
    return result
