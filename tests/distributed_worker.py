"""Run by `tests/test_distributed.py` under `torchrun --nproc_per_node 2` (gloo, CPU): the rules of
`pipeline.distributed` checked on a real process group. Rank 0 writes what it found to argv[1] (JSON).

Rank 1 starts from *other* weights than rank 0 (as a rank that drifted would), so a rule that is not
enforced (a mask not broadcast, a search run on every rank) shows as a difference between the ranks.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from tightcompress.errors import TightCompressError
from tightcompress.pipeline import distributed
from tightcompress.pipeline.compress import granularity_for
from tightcompress.pipeline.config import CompressConfig
from tightcompress.pipeline.data import Dataset
from tightcompress.pipeline.train import evaluate


def digest(tensors) -> str:
    import hashlib

    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def gathered(value):
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


def main(out_path: str) -> None:
    distributed.init_from_env("cpu")
    rank = dist.get_rank()
    found: dict = {"world_size": dist.get_world_size()}

    # 1. the granularity's choices are rank 0's: masks after a prune, the packed layers of the search.
    torch.manual_seed(rank)  # a different model on each rank
    model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 4))
    config = CompressConfig(method="tight", rate=4, tile=8, final_iterations=2000)
    level = granularity_for(model, config, quiet=True)
    searches = 0
    inner_pack = level.level.pack

    def counted_pack(configs):
        nonlocal searches
        searches += 1
        return inner_pack(configs)

    level.level.pack = counted_pack
    level.prune(0.7)
    masks = digest(m.weight_mask for m in (model[0], model[3]))
    configs, _ = level.plan(4.0)
    packed = level.pack(configs)
    packed_digest = digest(torch.from_numpy(p.to_dense()) for p in packed.values())
    level.apply_kept(packed)
    found["masks_agree"] = len(set(gathered(masks))) == 1
    found["packed_agree"] = len(set(gathered(packed_digest))) == 1
    found["searches_per_rank"] = gathered(searches)
    found["weights_agree"] = len(set(gathered(digest(model.state_dict().values())))) == 1
    try:
        distributed.check_in_step(model, "worker")
        found["check_in_step_passes_when_equal"] = True
    except TightCompressError:
        found["check_in_step_passes_when_equal"] = False

    # 2. the guard fails on every rank when one rank holds other weights.
    if rank == 1:
        with torch.no_grad():
            model[3].bias.add_(1.0)
    try:
        distributed.check_in_step(model, "worker")
        found["check_in_step_caught_drift"] = False
    except TightCompressError as exc:
        found["check_in_step_caught_drift"] = "ranks [1]" in str(exc)
    found["drift_caught_on_every_rank"] = all(gathered(found["check_in_step_caught_drift"]))

    # 3. evaluation: the ranks' shares of the test split add up to the one-process accuracy.
    torch.manual_seed(0)
    data = Dataset(
        torch.randn(20, 1, 6, 6),
        torch.randint(0, 4, (20,)),
        torch.randn(13, 1, 6, 6),
        torch.randint(0, 4, (13,)),
        classes=list("abcd"),
        source="random",
    )
    distributed.broadcast_module(model)
    found["accuracy"] = evaluate(model, data, batch_size=4)
    with torch.no_grad():
        correct = (model(data.x_test).argmax(1) == data.y_test).float()
        found["accuracy_one_process"] = 100.0 * float(correct.mean())

    # 4. training shards: each rank sees its own examples, together the whole split once per pass.
    batches = data.train_batches(3, seed=5, rank=rank, world_size=2)
    first_pass = torch.cat([next(batches)[0] for _ in range(4)])  # 10 of the 20 examples: 3 + 3 + 3 + 1
    rows = [int((data.x_train == row).all(dim=(1, 2, 3)).nonzero()[0]) for row in first_pass]
    all_rows = gathered(rows)
    found["shard_sizes"] = [len(r) for r in all_rows]
    found["shards_cover_split"] = sorted(set(all_rows[0]) | set(all_rows[1])) == list(range(20))
    found["shards_disjoint"] = not set(all_rows[0]) & set(all_rows[1])

    # 5. an error in rank 0's computation reaches every rank as an error (no rank waits forever).
    def failing():
        raise ValueError("no packing fits")

    try:
        distributed.from_main(failing)
        found["error_reached"] = False
    except (TightCompressError, ValueError) as exc:
        found["error_reached"] = "no packing fits" in str(exc)
    found["error_reached_every_rank"] = all(gathered(found["error_reached"]))

    # 6. subwords in the user's own DDP loop: the pruning rounds requantize the layers in place, so the
    #    DDP built on their parameters keeps reducing their gradients.
    from torch.nn.parallel import DistributedDataParallel

    import tightcompress

    torch.manual_seed(0)
    x = torch.randn(128, 1, 8, 8)
    y = (x[:, 0, :, :4].mean(dim=(1, 2)) > 0).long()
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(512, 2)
    )
    tightcompress.prepare_(net, rate=4, granularity="subword", total_steps=8, rounds=2, tile=8)
    wrapped = DistributedDataParallel(net)
    optimizer = torch.optim.Adam(wrapped.parameters(), lr=1e-3)
    batches = torch.Generator().manual_seed(1)
    for step in range(12):
        if step == 8:
            tightcompress.fit_(net)
        index = torch.randint(0, len(x), (32,), generator=batches)[rank::2]
        loss = nn.functional.cross_entropy(wrapped(x[index]), y[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    found["subword_user_loop_ran"] = True

    # 7. shutdown ends the group: no gloo worker thread outlives it (one that does can abort the process
    #    at exit, dropping a collective's tensors while the interpreter finalizes).
    del wrapped, optimizer
    distributed.shutdown()
    found["group_threads_after_shutdown"] = group_threads()
    if rank == 0:
        with open(out_path, "w") as handle:
            json.dump(found, handle)


def group_threads() -> list[str]:
    """Names of this process's gloo threads (Linux names its threads in /proc)."""
    tasks = Path("/proc/self/task")
    names = [(task / "comm").read_text().strip() for task in tasks.iterdir()] if tasks.exists() else []
    return [name for name in names if "gloo" in name]


if __name__ == "__main__":
    main(sys.argv[1])
