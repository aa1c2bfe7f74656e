"""Where the frontier's pieces run: in this process, in a process pool, or as Ray tasks.

A piece is a seed's preparation (`prepare_task(config, seed, stage_dir, resume) -> Stages`) or a point
(`point_task(config, stages, method, rate) -> (point, timing)`); the driver passes both functions in `Run`
with what is left to do, and is called back (`on_stages`, `on_point`) as each piece finishes, in this
process, whichever executor ran it. A seed's points are sent once its stages exist; a failure stops the
run with one line naming the piece (what finished stays saved for `--resume`).
"""

from __future__ import annotations

import contextlib
import multiprocessing
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tightcompress.errors import TightCompressError
from tightcompress.parallel import connect_ray, ray_failure, stop_pool
from tightcompress.pipeline.frontier.grid import FrontierConfig, PointKey, label
from tightcompress.pipeline.frontier.kinds.base import Stages

PointDone = tuple[dict[str, Any], dict[str, float]]  # the point's JSON fields, its wall and CPU seconds


@dataclass
class Run:
    """The driver's state: what is left to do, how to do a piece, and what to call when one finishes."""

    config: FrontierConfig
    todo: list[PointKey]
    stages: dict[int, Stages]  # known (resumed) seed stages
    prepare: list[int]  # seeds whose stages must be made
    stage_dir: Path
    resume: bool
    prepare_task: Callable[[FrontierConfig, int, str | None, bool], Stages]
    point_task: Callable[[FrontierConfig, Stages, str, float], PointDone]
    on_stages: Callable[[Stages], None]
    on_point: Callable[[PointKey, PointDone, float], None]

    def points_of(self, seed: int) -> list[PointKey]:
        return [key for key in self.todo if key[2] == seed]


def failed(what: str, exc: BaseException) -> TightCompressError:
    """One line naming the piece that failed and why (a Ray or pool error unwrapped)."""
    return TightCompressError(f"frontier {what} failed: {ray_failure(exc)}")


def execute_serial(run: Run) -> None:
    """Every piece in this process, seed by seed."""
    for seed in run.config.seeds:
        keys = run.points_of(seed)
        if not keys:
            continue
        stages = run.stages.get(seed)
        if stages is None:
            stages = run.prepare_task(run.config, seed, str(run.stage_dir), run.resume)
            run.on_stages(stages)
        for key in keys:
            run.on_point(key, run.point_task(run.config, stages, key[0], key[1]), stages.dense_accuracy)


def execute_pool(run: Run, jobs: int) -> None:
    """The pieces in `jobs` worker processes; each seed's points as soon as its stages are made."""
    # spawn: a forked child of a process whose OpenMP pool has run can hang in torch; the start-up cost
    # (importing torch once per worker) is small against a point's fine-tuning.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        pending: dict[Future, tuple[str, Any]] = {}

        def submit_points(stages: Stages) -> None:
            for key in run.points_of(stages.seed):
                piece = stages.for_point(key[0], key[1])  # pickled per task: send only what it reads
                future = pool.submit(run.point_task, run.config, piece, key[0], key[1])
                pending[future] = ("point", (key, stages.dense_accuracy))

        for seed in run.prepare:
            future = pool.submit(run.prepare_task, run.config, seed, str(run.stage_dir), run.resume)
            pending[future] = ("seed", seed)
        for stages in run.stages.values():
            submit_points(stages)
        try:
            while pending:
                done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
                for future in done:
                    kind, what = pending.pop(future)
                    name = f"seed {what} (dense model and pruning)" if kind == "seed" else label(what[0])
                    try:
                        result = future.result()
                    except BrokenProcessPool as exc:
                        raise failed(f"{name}", RuntimeError(f"a worker process died ({exc})")) from None
                    except TightCompressError as exc:
                        raise TightCompressError(f"frontier {name}: {exc}") from None
                    except Exception as exc:
                        raise failed(name, exc) from None
                    if kind == "seed":
                        run.on_stages(result)
                        submit_points(result)
                    else:
                        run.on_point(what[0], result, what[1])
        except BaseException:  # Ctrl-C, SIGTERM or a failed point: terminate the workers now
            stop_pool(pool)
            raise


def execute_ray(run: Run, address: str, max_retries: int) -> None:
    """Every piece as a task on the Ray cluster at `address` (a task whose worker died is rerun up to
    `max_retries` times); each seed's stages are made once and shared through the object store."""
    ray = connect_ray(address, nothing="no frontier point was run")
    options = {"num_cpus": 1, "max_retries": max_retries}
    prepare = ray.remote(**options)(run.prepare_task)
    point = ray.remote(**options)(run.point_task)
    pending: dict[Any, tuple[str, Any]] = {}
    stage_refs = {seed: ray.put(stages) for seed, stages in run.stages.items()}
    for seed in run.prepare:
        # Made once per seed on the cluster; every point of the seed gets it from the object store.
        ref = prepare.remote(run.config, seed, None, False)
        stage_refs[seed] = ref
        pending[ref] = ("seed", seed)
    dense_accuracy = {seed: stages.dense_accuracy for seed, stages in run.stages.items()}
    for key in run.todo:
        pending[point.remote(run.config, stage_refs[key[2]], key[0], key[1])] = ("point", key)

    def seed_done(seed: int, ref: Any) -> None:
        try:
            made = ray.get(ref)
        except Exception as exc:  # RayTaskError (the task raised), WorkerCrashedError after retries...
            raise failed(f"seed {seed} (dense model and pruning)", exc) from None
        dense_accuracy[seed] = made.dense_accuracy
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
                raise failed(label(what), exc) from None
            run.on_point(what, result, dense_accuracy[what[2]])
    except BaseException:
        for ref in pending:
            with contextlib.suppress(Exception):
                ray.cancel(ref)
        raise
