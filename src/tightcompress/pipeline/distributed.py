"""Fine-tuning on several processes (DistributedDataParallel, launched by `torchrun`).

The rule: every process trains (its shard of each batch, gradients averaged by DDP), and every choice that
shapes the model is made once, on rank 0, and sent to the others:

- pruning masks: each process prunes, then every parameter and buffer is broadcast from rank 0 (the masks
  are buffers added after DDP was built, which DDP itself does not keep in step);
- the format-aware step (plan, pack: the permutation search; repack after fine-tuning) runs on rank 0 only;
  its packed layers are broadcast and every process applies the same kept positions;
- stage files are written by rank 0 and read by rank 0 (its result is broadcast), so `--resume` works
  when the work folder is on rank 0's machine only.

`RankZeroLevel` wraps a `stages.Granularity` with these rules, so the one pipeline runs unchanged; outside
a process group every function here is the single-process identity (world size 1, rank 0).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from tightcompress.errors import TightCompressError

Result = TypeVar("Result")


def launched_by_torchrun() -> bool:
    """True when the environment of `torchrun` asks for more than one process (`WORLD_SIZE > 1`)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Processes in the group (1 outside one)."""
    return dist.get_world_size() if active() else 1


def rank() -> int:
    """This process's rank (0 outside a group)."""
    return dist.get_rank() if active() else 0


def is_main() -> bool:
    """True on rank 0, the process that searches, writes files and prints."""
    return rank() == 0


def init_from_env(device: str = "auto") -> torch.device:
    """Join the group `torchrun` describes (NCCL on CUDA, else gloo); this process's device.

    `device`: `auto` (CUDA when present), `cpu` or `cuda`; with CUDA each process takes GPU `LOCAL_RANK`.
    """
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise TightCompressError("--device cuda: no CUDA device is available (use --device cpu or auto)")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise TightCompressError(
                f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA device(s) on this machine"
            )
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        import_dynamo_before_the_group()
        backend = "nccl" if use_cuda else "gloo"
        if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":  # torchrun's agent gathered the peers
            dist.init_process_group(backend=backend)
        else:  # started by hand or by another launcher: wait for the peers a bounded time, saying where
            world, rank_here, store = rendezvous_from_env()
            dist.init_process_group(backend=backend, store=store, rank=rank_here, world_size=world)
    return torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")


RENDEZVOUS_TIMEOUT_S = 300.0  # waiting for the other processes to start; TIGHTCOMPRESS_RENDEZVOUS_TIMEOUT


def _env_int(name: str, low: int) -> int:
    text = os.environ.get(name, "").strip()
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if value < low:
        shown = repr(text) if text else "unset"
        raise TightCompressError(f"{name} must be an integer >= {low} (as torchrun sets it), got {shown}")
    return value


@contextmanager
def _stderr_silenced():
    """File descriptor 2 points at /dev/null inside the block (C++ libraries write there directly)."""
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def rendezvous_from_env() -> tuple[int, int, Any]:
    """`(world size, rank, store)`: this process joined the `MASTER_ADDR:MASTER_PORT` rendezvous of
    `WORLD_SIZE` processes. A peer that does not come within `TIGHTCOMPRESS_RENDEZVOUS_TIMEOUT` seconds
    (default 300) is a one-line error naming the address, instead of a silent wait of half an hour."""
    from datetime import timedelta

    world = _env_int("WORLD_SIZE", 1)
    rank_here = _env_int("RANK", 0)
    if rank_here >= world:
        raise TightCompressError(f"RANK {rank_here} must be below WORLD_SIZE {world}")
    host = os.environ.get("MASTER_ADDR", "").strip()
    if not host:
        raise TightCompressError("WORLD_SIZE > 1 needs MASTER_ADDR and MASTER_PORT (torchrun sets them)")
    port = _env_int("MASTER_PORT", 1)
    try:
        wait = float(os.environ.get("TIGHTCOMPRESS_RENDEZVOUS_TIMEOUT", RENDEZVOUS_TIMEOUT_S))
    except ValueError:
        wait = -1.0
    if not 0 < wait < float("inf"):
        raise TightCompressError("TIGHTCOMPRESS_RENDEZVOUS_TIMEOUT must be a positive number of seconds")
    try:
        with _stderr_silenced():  # c10d logs every retry with a C++ stack trace to fd 2
            store = dist.TCPStore(
                host,
                port,
                world,
                is_master=rank_here == 0,
                timeout=timedelta(seconds=wait),
                wait_for_workers=True,
            )
    except Exception as exc:  # DistNetworkError, DistStoreError, RuntimeError: the peers did not come
        first = " ".join(str(exc).split())[:200] or type(exc).__name__
        waited = "for the other processes" if rank_here == 0 else "for rank 0"
        raise TightCompressError(
            f"rank {rank_here} of {world}: waited {wait:g} s at {host}:{port} {waited}, which did not come "
            f"({first}); start all {world} processes (torchrun --nproc-per-node {world}) or unset WORLD_SIZE"
        ) from None
    store.set_timeout(timedelta(minutes=30))  # later store operations: torch's default
    return world, rank_here, store


def import_dynamo_before_the_group() -> None:
    """Import `torch._dynamo` now, before the process group exists, so `shutdown()` can really end it.

    `DistributedDataParallel` imports `torch._dynamo` on first use; imported *after* `init_process_group`
    it keeps ten references to the default group (torch 2.13), so `destroy_process_group` leaves the
    group alive with its gloo worker threads running. A worker that drops the last collective's tensors
    while the interpreter is finalizing then needs the GIL and aborts the process ("terminate called
    without an active exception"). Imported first, the group is freed and its threads joined at shutdown.
    """
    import torch._dynamo  # noqa: F401


def shutdown() -> None:
    """Leave the process group (when this process joined one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def backend() -> str | None:
    """The group's backend (`gloo`, `nccl`), None outside a group."""
    return str(dist.get_backend()) if active() else None


def from_main(compute: Callable[[], Result]) -> Result:
    """`compute()` on rank 0 only; every rank gets its result (pickled through the group).

    An error on rank 0 is raised on every rank (as a one-line `TightCompressError` elsewhere), so no
    process waits forever for a result that will not come.
    """
    if not active():
        return compute()
    payload: list[Any] = [None]
    if is_main():
        try:
            payload[0] = ("ok", compute())
        except Exception as exc:  # sent to the other ranks, then raised here too
            payload[0] = ("error", f"rank 0: {type(exc).__name__}: {exc}")
            dist.broadcast_object_list(payload, src=0)
            raise
    dist.broadcast_object_list(payload, src=0)
    status, value = payload[0]
    if status == "error":
        raise TightCompressError(value)
    return value


def broadcast_module(model: nn.Module) -> None:
    """Copy every parameter and buffer of `model` from rank 0 into the other ranks, in place."""
    if not active():
        return
    for tensor in [*model.parameters(), *model.buffers()]:
        dist.broadcast(tensor.data, src=0)


def check_in_step(model: nn.Module, what: str) -> None:
    """Fail on every rank (one line) unless all ranks hold the same parameters and buffers, bit for bit.

    A cheap guard at the end of a run: a rank that drifted (a mask computed differently, a missed
    broadcast) would otherwise write or serve a model unlike rank 0's, silently.
    """
    if not active():
        return
    digest = hashlib.sha256()
    for tensor in [*model.parameters(), *model.buffers()]:
        digest.update(tensor.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    digests: list[Any] = [None] * world_size()
    dist.all_gather_object(digests, digest.hexdigest())
    if len(set(digests)) > 1:
        differing = [index for index, value in enumerate(digests) if value != digests[0]]
        raise TightCompressError(f"{what}: ranks {differing} hold another model than rank 0")


def all_sum(*values: float) -> list[float]:
    """Each value summed over the ranks (float64 on the CPU-side device of the group's backend)."""
    if not active():
        return list(values)
    device = torch.device("cuda", torch.cuda.current_device()) if backend() == "nccl" else torch.device("cpu")
    total = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return total.tolist()


@contextmanager
def data_parallel(model: nn.Module):
    """The model to train: `model` itself, or a DistributedDataParallel around it inside a group.

    DDP is built per training run, so it always sees the current parameters and masks (building it
    broadcasts them from rank 0 once more); after the block the model is used unwrapped, with rank 0's
    buffers everywhere (DDP's own rule: the last step left each rank its own batch-norm statistics).
    """
    if not active():
        yield model
        return
    from torch.nn.parallel import DistributedDataParallel

    device = next(model.parameters()).device
    wrapped = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    try:
        yield wrapped
    finally:
        del wrapped
    broadcast_module(model)


class RankZeroLevel:
    """A `stages.Granularity` whose choices are made on rank 0 (see the module docstring).

    Outside a process group it is the wrapped granularity itself. Attributes not listed here are the
    wrapped object's (`name`, `label`, `layers`, ...).
    """

    def __init__(self, level: Any) -> None:
        self.level = level

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self.level, attribute)

    def prepare(self, trainer: Any) -> dict[str, float]:
        """Prepare on every rank (e.g. quantize), then rank 0's state everywhere."""
        accuracy = self.level.prepare(trainer)
        broadcast_module(self.level.model)
        return accuracy

    def prune(self, sparsity: float) -> None:
        """Prune on every rank (same structure everywhere), then rank 0's masks everywhere."""
        self.level.prune(sparsity)
        broadcast_module(self.level.model)

    def restore(self, stage: Any) -> None:
        """Restore on every rank, then rank 0's state everywhere."""
        self.level.restore(stage)
        broadcast_module(self.level.model)

    def plan(self, rate: float | None) -> tuple[dict[str, Any], dict[str, str]]:
        """Rank 0 plans; every rank gets its choices."""
        return from_main(lambda: self.level.plan(rate))

    def pack(self, configs: dict[str, Any]) -> dict[str, Any]:
        """Rank 0 searches; every rank gets the packed layers."""
        return from_main(lambda: self.level.pack(configs))

    def apply_kept(self, packed: dict[str, Any]) -> None:
        """Every rank applies the same packed layers; rank 0's masks everywhere (a guard)."""
        self.level.apply_kept(packed)
        broadcast_module(self.level.model)

    def repack(self, packed: dict[str, Any]) -> dict[str, Any]:
        """Rank 0 repacks; every rank gets the result (so all agree on what was dropped)."""
        return from_main(lambda: self.level.repack(packed))
