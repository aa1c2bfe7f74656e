"""`prepare_` / `fit_` / `sparsify_` inside your own DistributedDataParallel loop.

    torchrun --nproc_per_node 2 examples/ddp_user_loop.py [--json OUT.json]

CPU processes talk over gloo; with GPUs each process takes GPU `LOCAL_RANK` over NCCL. The data are the
8x8 digits that ship with scikit-learn (1,797 real images). The pruning rounds and the format-aware fit run
inside your loop; the search runs on rank 0 and its result reaches every rank, so all ranks keep the same
masks. Rank 0 prints the rate and accuracy (and writes them to `--json`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os

import torch

# Before init_process_group: DDP imports torch._dynamo on first use, and imported after the group exists it
# pins the group (torch 2.13), whose gloo threads then outlive destroy_process_group and can abort the
# process at exit.
import torch._dynamo
import torch.distributed as dist
from sklearn.datasets import load_digits
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import tightcompress


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="rank 0 writes the results here")
    parser.add_argument("--rate", type=float, default=8.0)
    parser.add_argument("--steps", type=int, default=300, help="steps of each of the three training phases")
    args = parser.parse_args()

    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda", int(os.environ["LOCAL_RANK"])) if cuda else torch.device("cpu")

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target)
    x_train, y_train, x_test, y_test = x[:1400], y[:1400], x[1400:], y[1400:]

    torch.manual_seed(0)  # the same initial model everywhere (DDP also broadcasts rank 0's)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.BatchNorm2d(32),  # its statistics: rank 0's everywhere once fit_ runs
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(512, 10),
    ).to(device)

    def train(network: nn.Module, steps: int, seed: int) -> None:
        optimizer = torch.optim.Adam(network.parameters(), lr=3e-3)
        batches = torch.Generator().manual_seed(seed)  # the same global batches on every rank
        for _ in range(steps):
            index = torch.randint(0, len(x_train), (64 * world,), generator=batches)[rank::world]
            loss = nn.functional.cross_entropy(network(x_train[index].to(device)), y_train[index].to(device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    def accuracy() -> float:
        model.eval()
        with torch.no_grad():
            correct = (model(x_test.to(device)).argmax(1).cpu() == y_test).float().mean().item()
        model.train()
        return 100 * correct

    train(DistributedDataParallel(model), args.steps, seed=1)  # the dense model
    dense_accuracy = accuracy()
    tightcompress.prepare_(model, rate=args.rate, total_steps=args.steps)  # masks + pruning schedule
    train(DistributedDataParallel(model), args.steps, seed=2)  # pruning rounds happen on schedule
    packed = tightcompress.fit_(model)  # rank 0 searches; every rank gets the same kept positions
    train(DistributedDataParallel(model), args.steps // 2, seed=3)  # fine-tune: the masks hold
    report = tightcompress.sparsify_(model)  # packed modules, in the arrangement fit_ found

    packed_accuracy = accuracy()
    state = [t.detach().cpu().reshape(-1) for t in model.state_dict().values() if t.is_floating_point()]
    digest = hashlib.sha256(torch.cat(state).numpy().tobytes()).hexdigest()
    digests: list = [None] * world
    dist.all_gather_object(digests, digest)
    if rank == 0:
        result = {
            "world_size": world,
            "rate": report["total"]["compression_rate"],
            "dense_accuracy": dense_accuracy,
            "accuracy": packed_accuracy,
            "layers": sorted(packed),
            "ranks_agree": len(set(digests)) == 1,
        }
        print(
            f"{world} processes: rate {result['rate']:.1f}x, accuracy {dense_accuracy:.1f} % dense -> "
            f"{packed_accuracy:.1f} % packed"
        )
        if args.json:
            with open(args.json, "w") as handle:
                json.dump(result, handle)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
