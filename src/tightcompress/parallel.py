"""Pack many independent layers at once: a process pool on this machine, or a Ray cluster (optional extra).

Every layer is packed by `tightcompress.pack` with the same `PackConfig` (seed included), in a process of
its own, so the result of a layer never depends on the job count, the scheduling order or the other layers.
Layers are submitted largest first (longest-processing-time scheduling) to keep the workers evenly busy.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import numpy as np

from tightcompress.api import PackConfig, pack
from tightcompress.errors import TightCompressError
from tightcompress.format.packed import PackedMatrix
from tightcompress.utils.memory import check_memory, pack_memory

Progress = Callable[[str], None]

# Linux: fork, so a worker starts at once with the parent's imports (spawn re-imports the CLI and torch,
# about 2.7 s per worker: demo zoo, 2 jobs, 3.9 s wall with fork vs 11.7 s with spawn). Elsewhere: spawn.
_START_METHOD = "fork" if sys.platform.startswith("linux") else "spawn"


def default_jobs() -> int:
    """Worker processes by default: the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def pack_layers(
    matrices: Mapping[str, np.ndarray],
    config: PackConfig,
    *,
    jobs: int | None = None,
    ray_address: str | None = None,
    progress: Progress | None = None,
) -> dict[str, PackedMatrix]:
    """Pack every named `K x N` matrix with `config`; results in the input order, identical for any `jobs`.

    `jobs=1` packs in this process; more uses a process pool (fork on Linux, spawn elsewhere);
    `ray_address` sends the layers to a Ray cluster instead and fails clearly when it cannot be reached.
    """
    if not matrices:
        raise TightCompressError("no layers to pack")
    tasks = [Task(name, name, matrices[name], config) for name in matrices]
    results = run_tasks(tasks, jobs=jobs, ray_address=ray_address, progress=progress)
    return {name: results[name] for name in matrices}


@dataclass(frozen=True)
class Task:
    """One unit of work: pack `matrix` (layer `name`) with `config`; `key` names the result."""

    key: Hashable
    name: str
    matrix: np.ndarray
    config: PackConfig


def run_tasks(
    tasks: Sequence[Task],
    *,
    jobs: int | None = None,
    ray_address: str | None = None,
    progress: Progress | None = None,
) -> dict[Hashable, PackedMatrix]:
    """Run packing tasks (largest matrix first) locally or on Ray; `{task.key: packed}`."""
    if jobs is not None and (not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1):
        raise TightCompressError(f"jobs must be an integer >= 1, got {jobs!r}")
    if len({task.key for task in tasks}) != len(tasks):
        raise TightCompressError("task keys must be unique")
    order = sorted(range(len(tasks)), key=lambda i: (-int(tasks[i].matrix.size), i))
    ordered = [tasks[i] for i in order]
    if ray_address is not None:
        return _run_ray(ordered, ray_address, progress)
    workers = worker_count(jobs, len(tasks))
    check_pack_memory([task.matrix.shape for task in ordered], workers)
    # never more workers than cores (each costs about 115 MiB and they would only take turns) or tasks
    return _run_local(ordered, workers, progress)


def worker_count(jobs: int | None, tasks: int) -> int:
    """Processes that pack `tasks` layers for `jobs` (None: the cores): never more than the cores (each
    costs about 115 MiB, and more only take turns) or the tasks."""
    return min(jobs or default_jobs(), default_jobs(), max(tasks, 1))


def check_pack_memory(shapes: Sequence[tuple[int, ...]], workers: int) -> None:
    """A one-line error, before any work, when packing matrices of `shapes` with `workers` processes at
    once would need more memory than is available (`utils.memory`)."""
    if not shapes:
        return
    largest = max(shapes, key=lambda shape: int(np.prod(shape)))
    check_memory(
        pack_memory((int(np.prod(shape)) for shape in shapes), workers),
        f"packing {len(shapes)} layer(s) (the largest {' x '.join(map(str, largest))}) with {workers} "
        "worker(s)",
        "pack fewer layers at once: a lower --jobs" if workers > 1 else "",
    )


def _pack_task(task: Task) -> tuple[Hashable, PackedMatrix]:
    """Pack one task (what a worker runs)."""
    return task.key, pack(task.matrix, task.config, name=task.name)


def _run_local(tasks: list[Task], jobs: int, progress: Progress | None) -> dict[Hashable, PackedMatrix]:
    results: dict[Hashable, PackedMatrix] = {}
    if jobs == 1:
        for task in tasks:
            results[task.key] = _pack_task(task)[1]
            if progress:
                progress(task.name)
        return results
    context = multiprocessing.get_context(_START_METHOD)
    pool = ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=context,
        initializer=worker_signals,
        initargs=(os.getpid(),),
    )
    try:
        pending = {pool.submit(_pack_task, task) for task in tasks}
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                key, packed = future.result()  # re-raises a worker's TightCompressError here
                results[key] = packed
                if progress:
                    progress(packed.info.get("name", str(key)))
    except BaseException:
        # Ctrl-C, SIGTERM or an error: stop now, not after the layers in flight (a worker may be minutes
        # into one).
        stop_pool(pool)
        raise
    pool.shutdown()
    return results


def stop_pool(pool: ProcessPoolExecutor) -> None:
    """Cancel what has not started and terminate the workers now (a worker may be hours into a task): after
    this no worker is alive to hold the caller's stdout/stderr pipes."""
    workers = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for worker in workers:
        with contextlib.suppress(Exception):
            worker.terminate()
    for worker in workers:
        with contextlib.suppress(Exception):
            worker.join(timeout=5)
            if worker.is_alive():
                worker.kill()
                worker.join(timeout=5)


_PR_SET_PDEATHSIG = 1


def worker_signals(parent: int | None = None) -> None:
    """A worker's signals: Ctrl-C is left to the parent, which stops the workers (no traceback from each);
    SIGTERM and SIGHUP kill it at once (the parent's handlers, inherited through fork, would turn them into
    exceptions); on Linux the worker also gets SIGTERM when the parent dies, even of SIGKILL, so no worker
    outlives the run."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
            if parent is not None and os.getppid() != parent:  # the parent died before prctl
                os._exit(1)


def _run_ray(tasks: list[Task], address: str, progress: Progress | None) -> dict[Hashable, PackedMatrix]:
    """Pack on a Ray cluster. No silent fallback: an unreachable cluster is an error naming the address."""
    ray = connect_ray(address)
    remote = ray.remote(max_retries=RAY_MAX_RETRIES)(_pack_task)
    refs = {remote.remote(task): task.name for task in tasks}
    results: dict[Hashable, PackedMatrix] = {}
    try:
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            name = refs.pop(done[0])
            try:
                key, packed = ray.get(done[0])
            except Exception as exc:  # the task raised, or its worker died more often than Ray retries
                own = isinstance(getattr(exc, "cause", exc), TightCompressError)  # names the layer already
                raise TightCompressError(ray_failure(exc) if own else f"{name}: {ray_failure(exc)}") from None
            results[key] = packed
            if progress:
                progress(packed.info.get("name", str(key)))
    except BaseException:
        for ref in refs:
            with contextlib.suppress(Exception):
                ray.cancel(ref)
        raise
    return results


RAY_MAX_RETRIES = 3  # Ray reruns a task whose worker process died this many times before it is reported
_ray_address: str | None = None  # the address this process is connected to through `connect_ray`


def connect_ray(address: str, *, nothing: str = "nothing was packed") -> Any:
    """The `ray` module, connected to `address` (`HOST:PORT`, `ray://HOST:PORT`, `auto` or `local`).

    Fails fast with one line (naming the address; `nothing` says what was not done) when Ray is missing
    or nobody answers; a connection to another address made earlier in this process is closed first.
    """
    global _ray_address
    try:
        import ray  # optional extra: pip install ray
    except ImportError:
        raise TightCompressError(
            f"--ray {address}: Ray is not installed (pip install ray); "
            f"{nothing} — drop --ray to run on this machine"
        ) from None
    _probe(address, nothing=nothing)
    if ray.is_initialized():
        if _ray_address == address:
            return ray
        ray.shutdown()
    try:
        extra = {"include_dashboard": False} if address == "local" else {}  # a new local cluster
        ray.init(address=address, logging_level="ERROR", log_to_driver=False, **extra)
    except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError... depending on version
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TightCompressError(
            f"cannot reach the Ray cluster at {address} ({first}); {nothing} and no fallback "
            "was tried — drop --ray to run on this machine"
        ) from None
    _ray_address = address
    return ray


def ray_failure(exc: BaseException) -> str:
    """One line saying why a remote task failed: the task's own error, or how its worker died."""
    cause = getattr(exc, "cause", None)  # RayTaskError: the exception the task raised
    if isinstance(cause, BaseException):
        exc = cause
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    if isinstance(exc, TightCompressError):
        return first
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _probe(address: str, timeout: float = 5.0, *, nothing: str = "nothing was packed") -> None:
    """Fail fast on a `host:port` (or `ray://host:port`) nobody listens on: `ray.init` retries for minutes."""
    if address in ("auto", "local"):
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        raise TightCompressError(f"--ray {address}: expected HOST:PORT, ray://HOST:PORT, 'auto' or 'local'")
    import socket

    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout) as connection:
            answer = _grpc_handshake(connection)
    except TimeoutError:
        raise TightCompressError(
            f"the server at {address} accepted the connection but did not answer as a Ray cluster (gRPC) "
            f"within {timeout:g} s; {nothing} and no fallback was tried — check the address (the head "
            "node's GCS port, 6379 by default) or drop --ray"
        ) from None
    except OSError as exc:
        raise TightCompressError(
            f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}); {nothing} and no "
            "fallback was tried — drop --ray to run on this machine"
        ) from None
    if answer is not None:
        raise TightCompressError(
            f"the server at {address} is not a Ray cluster (it answered {answer!r}, not gRPC); {nothing} "
            "and no fallback was tried — check the address or drop --ray"
        )


# HTTP/2 client connection preface and an empty SETTINGS frame: every gRPC server (Ray's GCS and its
# client server) answers with a SETTINGS frame of its own at once, before any authentication.
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def _grpc_handshake(connection: Any) -> bytes | None:
    """None when the peer answers the HTTP/2 preface with a SETTINGS frame (a gRPC server, as Ray is);
    else the first bytes it sent. A peer that says nothing raises `TimeoutError` (the socket's timeout):
    `ray.init` would retry such a port for minutes, printing warnings."""
    connection.sendall(_H2_PREFACE)
    header = b""
    while len(header) < 9:
        chunk = connection.recv(9 - len(header))
        if not chunk:
            return header or b"(connection closed)"
        header += chunk
    return None if header[3] == 0x04 else header
