"""Real Ray, no fakes: a Ray cluster on loopback started for this module (`ray start --head` in a temporary
folder, token authentication with a token of its own, stopped by process id at the end).

`pack`, `sweep` and `frontier` connect to it with `--ray 127.0.0.1:PORT` from a subprocess (as a user
would) and must give bit-identical results to the local runs; a Ray worker killed in the middle of a point
is retried by Ray, or (retries exhausted) reported by the point's name; `frontier --ray local` starts a
cluster of its own. Everything here binds to and connects to 127.0.0.1 only:
`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` stops Ray from replacing a loopback node address with the machine's
network address.
"""

from __future__ import annotations

import csv
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
import torch

import tightcompress
from tightcompress.cli.main import main
from tightcompress.format.io import load_packed
from tightcompress.pipeline import frontier as frontier_module

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(find_spec("ray") is None, reason="the `ray` extra is not installed"),
    pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="stops the cluster through /proc"),
]

SRC = str(Path(tightcompress.__file__).resolve().parents[1])  # the code under test, for the Ray workers


@dataclass
class Cluster:
    address: str
    env: dict[str, str]
    folder: Path


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _processes() -> dict[int, tuple[int, str]]:
    """`{pid: (parent pid, command line)}` of every process readable in /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = (
                Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            )
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        table[int(entry)] = (int(stat.rpartition(")")[2].split()[1]), cmdline)
    return table


def _cluster_pids(folder: Path) -> set[int]:
    """The cluster's processes: those naming its folder on their command line, and their descendants."""
    table = _processes()
    own = {os.getpid()}
    parent = os.getppid()
    while parent > 1 and parent in table:
        own.add(parent)
        parent = table[parent][0]
    tree = {pid for pid, (_, cmdline) in table.items() if str(folder) in cmdline and pid not in own}
    grew = True
    while grew:
        children = {pid for pid, (ppid, _) in table.items() if ppid in tree and pid not in tree}
        tree |= children
        grew = bool(children)
    return tree


def _stop(folder: Path) -> None:
    """Terminate the cluster's processes by id (SIGKILL after 15 s), then remove its folder."""
    pids = _cluster_pids(folder)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 15
    while pids and time.monotonic() < deadline:
        time.sleep(0.2)
        pids = {pid for pid in pids if Path(f"/proc/{pid}").exists() and _state(pid) != "Z"}
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    shutil.rmtree(folder, ignore_errors=True)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return "Z"


@pytest.fixture(scope="module")
def cluster() -> Cluster:
    folder = Path(tempfile.mkdtemp(prefix="tcray-", dir="/tmp"))  # short: Ray's socket paths must fit
    (folder / "token").write_text(secrets.token_hex(32))
    env = {
        **os.environ,
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # keep 127.0.0.1 (Ray swaps it for the network address)
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(folder / "token"),  # never the user's ~/.ray/auth_token
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_TMPDIR": str(folder),  # `--ray local` clusters live here too
        "PYTHONPATH": os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p),
    }
    gcs, agent, agent_grpc, metrics, runtime_env, dashboard = _free_ports(6)
    command = [
        str(Path(sys.executable).with_name("ray")),
        "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(gcs), "--num-cpus", "2",
        "--include-dashboard", "false", "--dashboard-port", str(dashboard), "--temp-dir", str(folder),
        "--disable-usage-stats", "--dashboard-agent-listen-port", str(agent),
        "--dashboard-agent-grpc-port", str(agent_grpc), "--metrics-export-port", str(metrics),
        "--runtime-env-agent-port", str(runtime_env),
    ]  # fmt: skip
    if not Path(command[0]).exists():
        pytest.skip(f"no `ray` command next to {sys.executable}")
    try:
        started = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        if started.returncode != 0:
            pytest.fail(f"ray start failed:\n{started.stdout}\n{started.stderr}")
        yield Cluster(f"127.0.0.1:{gcs}", env, folder)
    finally:
        _stop(folder)


def _cli(cluster: Cluster, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """`tightcompress ARGS` in a subprocess with the cluster's environment."""
    return subprocess.run(
        [sys.executable, "-m", "tightcompress.cli.main", *args],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _ok(run: subprocess.CompletedProcess) -> None:
    assert run.returncode == 0, run.stderr[-3000:]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    generator = torch.Generator().manual_seed(0)
    state = {
        "conv1.weight": torch.randn(16, 8, 3, 3, generator=generator),
        "conv2.weight": torch.randn(24, 16, 3, 3, generator=generator),
        "conv3.weight": torch.randn(32, 24, 1, 1, generator=generator),
        "fc.weight": torch.randn(10, 96, generator=generator),
    }
    path = tmp_path_factory.mktemp("checkpoint") / "small.pt"
    torch.save(state, path)
    return path


_PACKED = ("row_perm", "col_perm", "heights", "values", "lanes", "group_offsets")


def _without_seconds(report: dict) -> dict:
    layers = [{k: v for k, v in layer.items() if "seconds" not in k} for layer in report["layers"]]
    total = {k: v for k, v in report["total"].items() if "seconds" not in k}
    return {"layers": layers, "total": total}


def test_pack_on_ray_is_bit_identical_to_jobs_1_and_2(cluster: Cluster, checkpoint: Path, tmp_path: Path):
    options = ["--method", "tight", "--group", "8", "--height", "2", "--tile", "8", "--sparsity", "0.8"]
    options += ["--iterations", "3000", "--seed", "3", "--quiet"]
    runs = {}
    for name, where in (("jobs1", ["--jobs", "1"]), ("jobs2", ["--jobs", "2"])):
        out, report = tmp_path / f"{name}.safetensors", tmp_path / f"{name}.json"
        assert (
            main(["pack", str(checkpoint), *options, *where, "--out", str(out), "--json", str(report)]) == 0
        )
        runs[name] = (out, report)
    out, report = tmp_path / "ray.safetensors", tmp_path / "ray.json"
    _ok(
        _cli(
            cluster,
            "pack",
            str(checkpoint),
            *options,
            "--ray",
            cluster.address,
            "--out",
            str(out),
            "--json",
            str(report),
        )
    )
    runs["ray"] = (out, report)
    packed = {name: load_packed(paths[0]) for name, paths in runs.items()}
    assert (
        list(packed["ray"])
        == list(packed["jobs1"])
        == ["conv1.weight", "conv2.weight", "conv3.weight", "fc.weight"]
    )
    for name in ("jobs2", "ray"):
        for layer in packed["jobs1"]:
            for array in _PACKED:
                expected, got = getattr(packed["jobs1"][layer], array), getattr(packed[name][layer], array)
                assert np.array_equal(expected, got), (name, layer, array)
        reports = [_without_seconds(json.loads(runs[n][1].read_text())) for n in ("jobs1", name)]
        assert reports[0] == reports[1]


def test_a_layer_failing_on_ray_is_one_line_naming_it(cluster: Cluster, tmp_path: Path):
    # The inputs pass the checks made before packing; "small" fails inside its Ray task, where pruning to
    # 99.9 % leaves none of its 64 weights (the 4096-weight layer keeps 4).
    path = tmp_path / "small.pt"
    torch.save({"ok.weight": torch.ones(64, 64), "small.weight": torch.ones(8, 8)}, path)
    run = _cli(
        cluster,
        "pack",
        str(path),
        "--method",
        "dense",
        "--sparsity",
        "0.999",
        "--ray",
        cluster.address,
        "--json",
        str(tmp_path / "r.json"),
    )
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[-1] == (
        "tightcompress pack: error: small.weight: sparsity 0.999 leaves no nonzero weight"
    )
    assert not (tmp_path / "r.json").exists()


def test_sweep_on_ray_equals_the_serial_sweep(cluster: Cluster, checkpoint: Path, tmp_path: Path):
    grid = ["--methods", "tight,nm,column-combining", "--groups", "4,8", "--heights", "1,2"]
    grid += ["--sparsities", "0.75", "--tile", "8", "--iterations", "2000", "--per-layer", "--quiet"]
    serial, remote = tmp_path / "serial.csv", tmp_path / "ray.csv"
    assert main(["sweep", str(checkpoint), *grid, "--jobs", "1", "--csv", str(serial)]) == 0
    _ok(_cli(cluster, "sweep", str(checkpoint), *grid, "--ray", cluster.address, "--csv", str(remote)))

    def rows(path: Path) -> list[dict]:
        with open(path, newline="") as handle:
            return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)]

    assert rows(serial) == rows(remote)
    assert len(rows(serial)) == 9 * 5  # 9 operating points, each a total row and 4 layer rows


# The example shape (`--seeds 0 --rates 8 16 --methods tight column-combining`) on a tiny budget.
FRONTIER = [
    "--seeds", "0", "--rates", "8", "16", "--widths", "8,16", "--dense-epochs", "1", "--prune-rounds", "1",
    "--prune-epochs", "0.2", "--finetune-epochs", "1", "--format-rounds", "1",
]  # fmt: skip


def _frontier_local(workdir: Path, out: Path, methods: str, *extra: str) -> dict:
    args = ["frontier", *FRONTIER, "--methods", methods, "--workdir", str(workdir), "--json", str(out)]
    assert main([*args, "--jobs", "1", "--quiet", *extra]) == 0
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def frontier_reference(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("frontier-serial")
    return _frontier_local(root / "work", root / "F.json", "tight,column-combining")


def _kill_first_task(process: subprocess.Popen, task: str, cluster: Cluster) -> int | None:
    """SIGKILL the first cluster worker seen running `task`; its pid, or None if the run ended first."""
    while process.poll() is None:
        for pid in _cluster_pids(cluster.folder):
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            except OSError:
                continue
            if title.startswith(f"ray::{task}"):
                os.kill(pid, signal.SIGKILL)
                return pid
        time.sleep(0.02)
    return None


def test_frontier_on_ray_survives_a_killed_worker_and_equals_serial(
    cluster: Cluster, frontier_reference: dict, tmp_path: Path
):
    out = tmp_path / "F.json"
    args = ["frontier", *FRONTIER, "--methods", "tight", "column-combining", "--ray", cluster.address]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tightcompress.cli.main",
            *args,
            "--workdir",
            str(tmp_path),
            "--json",
            str(out),
        ],
        env=cluster.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    killed = _kill_first_task(process, "_point_task", cluster)
    _, stderr = process.communicate(timeout=900)
    assert killed is not None, "the run ended before a point task could be killed"
    assert process.returncode == 0, stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["points"] == frontier_reference["points"]  # Ray retried the killed point: nothing lost
    assert result["dense"] == frontier_reference["dense"]
    assert len(result["points"]) == 4


def test_frontier_reports_a_point_whose_worker_died_by_name(cluster: Cluster, tmp_path: Path):
    script = (
        "import sys; import tightcompress.pipeline.frontier as f; f.RAY_MAX_RETRIES = 0; "
        "from tightcompress.cli.main import main; sys.exit(main(sys.argv[1:]))"
    )
    args = ["frontier", *FRONTIER, "--methods", "tight", "--ray", cluster.address, "--quiet"]
    process = subprocess.Popen(
        [sys.executable, "-c", script, *args, "--workdir", str(tmp_path), "--json", str(tmp_path / "F.json")],
        env=cluster.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    killed = _kill_first_task(process, "_point_task", cluster)
    _, stderr = process.communicate(timeout=900)
    assert killed is not None, "the run ended before a point task could be killed"
    assert process.returncode == 2
    line = stderr.strip().splitlines()[-1]
    assert line.startswith("tightcompress frontier: error: frontier tight at ")
    assert ", seed 0 failed: " in line and "Worker" in line
    assert not (tmp_path / "F.json").exists()


def test_frontier_resumes_across_cluster_and_local(
    cluster: Cluster, frontier_reference: dict, tmp_path: Path, monkeypatch
):
    # Local first (tight only), then the cluster with --resume: tight and the seed stages are reused.
    work = tmp_path / "local-first"
    _frontier_local(work, tmp_path / "a.json", "tight")
    both = ["--methods", "tight,column-combining", "--resume", "--ray", cluster.address]
    run = _cli(
        cluster, "frontier", *FRONTIER, *both, "--workdir", str(work), "--json", str(tmp_path / "b.json")
    )
    _ok(run)
    assert "resumed 2 finished point(s)" in run.stderr
    assert json.loads((tmp_path / "b.json").read_text())["points"] == frontier_reference["points"]
    # The cluster first (column combining only), then this machine with --resume: only tight runs here.
    work = tmp_path / "cluster-first"
    _ok(_cli(cluster, "frontier", *FRONTIER, "--methods", "column-combining", "--ray", cluster.address,
             "--workdir", str(work), "--json", str(tmp_path / "c.json"), "--quiet"))  # fmt: skip
    calls = []
    real = frontier_module.run_point
    monkeypatch.setattr(frontier_module, "run_point", lambda *a: calls.append(a[2:]) or real(*a))

    def no_seed_stages(*args, **kwargs):
        raise AssertionError("the seed stages made on the cluster were not reused")

    monkeypatch.setattr(frontier_module, "prepare_seed", no_seed_stages)
    result = _frontier_local(work, tmp_path / "d.json", "tight,column-combining", "--resume")
    assert calls == [("tight", 8.0), ("tight", 16.0)]
    assert result["points"] == frontier_reference["points"]


def test_frontier_ray_local_gives_the_points_of_the_serial_run(
    cluster: Cluster, frontier_reference: dict, tmp_path: Path
):
    """The issue's example with `--ray local`: a cluster of its own, started and stopped by the command."""
    out = tmp_path / "F.json"
    run = _cli(cluster, "frontier", *FRONTIER, "--methods", "tight", "column-combining", "--ray", "local",
               "--workdir", str(tmp_path / "work"), "--json", str(out), "--quiet")  # fmt: skip
    _ok(run)
    result = json.loads(out.read_text())
    assert (result["points"], result["dense"]) == (frontier_reference["points"], frontier_reference["dense"])
