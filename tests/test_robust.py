"""Hostile input, round three (issue 25): one table per cause. Every case ends with one stderr line and its
documented exit code (or succeeds where the input is valid), leaves every file that was there byte-identical
and no temporary file or staging folder behind.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cli_cases import sparse_matrix
from tightcompress.cli.main import main
from tightcompress.format.io import save_packed

SRC = Path(__file__).resolve().parents[1] / "src"


# ------------------------------------------------------------------------------------------------ helpers
def snapshot(folder: Path) -> dict[str, bytes]:
    """Every entry under `folder`: files with their bytes, links with their target, special files by kind
    (a temporary file or staging folder left behind shows up as a new entry)."""
    found: dict[str, bytes] = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if path.is_symlink():
            found[rel] = b"link:" + os.readlink(path).encode()
        elif path.is_dir():
            found[rel] = b"dir"
        elif path.is_file() and path.stat().st_size > 2**24:  # a sparse 3.6 GB test file: not read
            found[rel] = b"large:%d:%d" % (path.stat().st_size, path.stat().st_mtime_ns)
        elif path.is_file():
            found[rel] = path.read_bytes()
        else:
            found[rel] = b"special:%o" % os.lstat(path).st_mode
    return found


def run_cli(capsys, *argv) -> tuple[int, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


def assert_one_line_error(code: int, err: str, *words: str, exit_code: int = 2) -> None:
    lines = error_lines(err)
    assert code == exit_code, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "internal error" not in lines[0], lines[0]
    for word in words:
        assert word in lines[0], lines[0]


# ------------------------------------------------------ 1. SIGTERM and SIGHUP end the run like SIGINT
def _raise_signal_in(monkeypatch, module, attribute: str, signum: int) -> None:
    """Replace `module.attribute` by a function that first does the real work, then receives `signum` (as
    if a scheduler sent it while the command was writing)."""
    real = getattr(module, attribute)

    def wrapped(*args, **kwargs):
        real(*args, **kwargs)
        os.kill(os.getpid(), signum)
        time.sleep(1)  # the handler runs here
        raise AssertionError("the signal did not stop the command")

    monkeypatch.setattr(module, attribute, wrapped)


SIGNAL_CASES = [
    (signal.SIGTERM, 143, "terminated (SIGTERM)"),
    (signal.SIGHUP, 129, "hung up (SIGHUP)"),
    (signal.SIGINT, 130, "interrupted"),
]


@pytest.mark.parametrize(("signum", "code", "line"), SIGNAL_CASES, ids=lambda v: str(v))
def test_a_signal_while_pack_writes_leaves_nothing(work, capsys, monkeypatch, signum, code, line):
    import tightcompress.cli.pack as pack_cmd

    _raise_signal_in(monkeypatch, pack_cmd, "save_packed", signum)  # the .safetensors temporary exists
    before = snapshot(work)
    got, err = run_cli(capsys, "pack", "m.npy", "--iterations", "500", "--json", "o.json", "--out", "o.st")
    assert (got, error_lines(err)) == (code, [f"tightcompress pack: {line}"])
    assert snapshot(work) == before
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # main put the handlers back


@pytest.mark.parametrize(("signum", "code", "line"), SIGNAL_CASES[:2], ids=lambda v: str(v))
def test_a_signal_while_export_stages_leaves_nothing(work, capsys, monkeypatch, signum, code, line):
    import tightcompress.export.rtl as rtl

    _raise_signal_in(monkeypatch, rtl, "write_layer", signum)  # inside the `.rtl.XXXX.tmp` staging folder
    before = snapshot(work)
    got, err = run_cli(capsys, "export", "p.safetensors", "--out-dir", "rtl")
    assert (got, error_lines(err)) == (code, [f"tightcompress export: {line}"])
    assert snapshot(work) == before


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize(("signum", "code", "line"), SIGNAL_CASES[:2], ids=["SIGTERM", "SIGHUP"])
def test_a_signal_to_a_parallel_pack_stops_every_worker(tmp_path, signum, code, line):
    """As `timeout` does: the signal goes to the command's process only, not to its workers; the caller
    reads stdout and stderr to the end (which hangs while any worker holds the pipes)."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    layers = {}
    for i in range(3):
        W = rng.standard_normal((1152, 128)).astype(np.float32)
        W[np.abs(W) < 1.6] = 0
        layers[f"layer{i}.weight"] = W
    save_file(layers, str(tmp_path / "m.safetensors"))
    env = dict(os.environ, PYTHONPATH=str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    command = [sys.executable, "-m", "tightcompress.cli.main", "pack", "m.safetensors", "--jobs", "2"]
    command += ["--group", "32", "--height", "2", "--tile", "16", "--iterations", "2000000000", "--quiet"]
    command += ["--json", "r.json", "--out", "p.safetensors"]
    process = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300  # imports and a cold kernel cache on a loaded machine
        while len(_children(process.pid)) < 2 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
        workers = _children(process.pid)
        assert len(workers) >= 2 and process.poll() is None, process.communicate()
        time.sleep(1.0)  # the workers are inside the hours-long search
        sent = time.monotonic()
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=30)  # returns only once no process holds the pipes
        seconds = time.monotonic() - sent
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == code, stderr
    assert stderr == f"tightcompress pack: {line}\n"
    assert seconds < 2.0
    with pytest.raises(ProcessLookupError):
        os.killpg(process.pid, 0)  # no worker left in the session
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


# ---------------------------------------------------------- 6. export cleanup never follows a symbolic link
def _export_with_link(work: Path, capsys, kind: str) -> Path:
    """A previous export of two layers, then a link planted where the next export cleans up or writes;
    returns the outside file that must survive."""
    from tightcompress.format.io import load_packed

    m = load_packed("p.safetensors")["m"]
    save_packed(work / "two.safetensors", {"a": m, "b": m})
    assert run_cli(capsys, "export", "two.safetensors", "--out-dir", "rtl")[0] == 0
    outside = work / "outside"
    outside.mkdir()
    victim = outside / "tile000_weights.hex"
    victim.write_text("precious\n")
    rtl = work / "rtl"
    if kind == "stale file is a link":
        (rtl / "b" / "tile000_weights.hex").unlink()
        os.symlink(victim, rtl / "b" / "tile000_weights.hex")
    elif kind == "stale folder is a link":
        import shutil

        shutil.rmtree(rtl / "b")
        os.symlink(outside, rtl / "b")
    elif kind == "written folder is a link":
        import shutil

        shutil.rmtree(rtl / "a")
        os.symlink(outside, rtl / "a")
    elif kind == "written file is a link":
        (rtl / "a" / "tile000_weights.hex").unlink()
        os.symlink(victim, rtl / "a" / "tile000_weights.hex")
    return victim


@pytest.mark.parametrize(
    "kind",
    ["stale file is a link", "stale folder is a link", "written folder is a link", "written file is a link"],
)
def test_export_cleanup_never_follows_a_link(work, capsys, kind):
    victim = _export_with_link(work, capsys, kind)
    before = snapshot(work)
    code, err = run_cli(capsys, "export", "two.safetensors", "--layer", "a", "--out-dir", "rtl")
    if kind.startswith("written"):  # the new export would write through the link: refused, nothing moved
        assert_one_line_error(code, err, "symbolic link")
        assert snapshot(work) == before
    else:  # the stale layer's files are removed, but not through the link
        assert code == 0, err
    assert victim.read_text() == "precious\n"
    assert sorted(p.name for p in work.iterdir() if p.name.startswith(".")) == []  # no staging folder left


# ------------------------------------------------- 2. tensors that are not packable weights: never fatal
def _weight() -> torch.Tensor:  # noqa: F821
    import torch

    return torch.from_numpy(sparse_matrix(24, 16).T.copy())


def _odd_checkpoints() -> dict[str, tuple[dict, dict[str, str]]]:
    """name -> (state_dict, {tensor: what `pack` does with it}); every file also holds a good `fc2.weight`."""
    import torch

    w = _weight()
    with _quiet():  # torch warns while making some of these
        cases = {
            "fp8 scale": ({"fc.weight": w, "fc.scale": torch.ones(16).to(torch.float8_e4m3fn)}, {}),
            "fp8 weight": ({"fc.weight": w.to(torch.float8_e4m3fn)}, {"fc.weight": "packed"}),
            "fp8 e5m2 weight": ({"fc.weight": w.to(torch.float8_e5m2)}, {"fc.weight": "packed"}),
            "complex64 weight": ({"fc.weight": w.to(torch.complex64)}, {"fc.weight": "complex64"}),
            "complex32 weight": ({"fc.weight": w.to(torch.complex32)}, {"fc.weight": "complex32"}),
            "sparse weight": ({"fc.weight": w.to_sparse()}, {"fc.weight": "packed"}),
            "sparse csr weight": ({"fc.weight": w.to_sparse_csr()}, {"fc.weight": "packed"}),
            "qint8 weight": (
                {"fc.weight": torch.quantize_per_tensor(w, 0.1, 0, torch.qint8)},
                {"fc.weight": "quantized"},
            ),
            "empty weight": ({"fc.weight": torch.empty(0, 5)}, {"fc.weight": "empty"}),
            "empty conv weight": ({"conv.weight": torch.empty(8, 0, 3, 3)}, {"conv.weight": "empty"}),
        }
    for state, _ in cases.values():
        state["fc2.weight"] = w.clone()
    return cases


class _quiet:
    def __enter__(self):
        import warnings

        self._catch = warnings.catch_warnings()
        self._catch.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc):
        return self._catch.__exit__(*exc)


@pytest.mark.parametrize("case", sorted(_odd_checkpoints()))
@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_odd_tensors_are_packed_carried_or_skipped_never_fatal(work, capsys, case, suffix):
    import torch

    state, expected = _odd_checkpoints()[case]
    path = work / f"odd{suffix}"
    if suffix == ".pt":
        torch.save(state, path)
    else:
        from safetensors.torch import save_file

        if any(
            t.is_quantized or t.layout != torch.strided or t.dtype == torch.complex32 for t in state.values()
        ):
            pytest.skip("safetensors stores none of these")
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    code, err = run_cli(capsys, "pack", path.name, "--iterations", "500", "--json", "o.json", "--out", "o.st")
    assert code == 0 and "Warning" not in err, err
    report = json.loads((work / "o.json").read_text())
    packed_names = {layer["name"] for layer in report["layers"]}
    skipped = {e["name"]: e["reason"] for e in report.get("notes", {}).get("skipped_layers", [])}
    assert "fc2.weight" in packed_names
    for name, what in expected.items():
        if what == "packed":
            assert name in packed_names
        else:
            assert what in skipped[name], skipped
    # every tensor comes back from `unpack` exactly, in its own dtype (a quantized one is listed as not kept)
    assert run_cli(capsys, "unpack", "o.st", "back.pt")[0] == 0
    back = torch.load(work / "back.pt")
    for name, tensor in state.items():
        if tensor.is_quantized:
            assert name not in back and "not carried" in skipped[name]
            continue
        dense = tensor.to_dense() if tensor.layout != torch.strided else tensor
        assert back[name].dtype == dense.dtype, name
        wide = torch.complex64 if dense.is_complex() else torch.float64  # fp8 and complex32 compare widened
        assert torch.equal(back[name].to(wide), dense.to(wide)), name


NPY_ODD = {
    "big-endian float32": (lambda W: W.astype(">f4"), None),
    "big-endian float64": (lambda W: W.astype(">f8"), None),
    "big-endian int16": (lambda W: (W * 10).astype(">i2"), None),
    "float128": (lambda W: W.astype(np.longdouble), "float128"),
    "complex64": (lambda W: W.astype(np.complex64), "dtype"),
    "0 x 5": (lambda W: np.zeros((0, 5), np.float32), "empty"),
    "5 x 0": (lambda W: np.zeros((5, 0), np.float32), "empty"),
}


@pytest.mark.parametrize("case", sorted(NPY_ODD))
def test_npy_byte_order_is_normalised_and_odd_dtypes_are_one_line(work, capsys, case):
    make, error = NPY_ODD[case]
    W = make(sparse_matrix())
    np.save(work / "odd.npy", W)
    before = snapshot(work)
    code, err = run_cli(capsys, "pack", "odd.npy", "--iterations", "500", "--json", "o.json", "--out", "o.st")
    if error is not None:
        assert_one_line_error(code, err, error)
        assert snapshot(work) == before
        return
    assert code == 0, err
    assert run_cli(capsys, "unpack", "o.st", "back.npy")[0] == 0
    back = np.load(work / "back.npy")
    assert back.dtype == W.dtype.newbyteorder("=") and np.array_equal(back, W)


@pytest.mark.parametrize("case", ["torchscript", "plain pickle", "pickle of a dict"])
def test_other_pickles_are_one_line_without_torch_warnings(work, capsys, case):
    import pickle

    import torch

    path = work / "x.pt"
    if case == "torchscript":
        with _quiet():
            torch.jit.script(torch.nn.Linear(4, 3)).save(str(path))
    else:
        path.write_bytes(pickle.dumps([1, 2] if case == "plain pickle" else {"fc.weight": 1}))
    before = snapshot(work)
    code, err = run_cli(capsys, "pack", "x.pt", "--json", "o.json")
    assert_one_line_error(code, err, "x.pt")
    assert snapshot(work) == before


# ------------------------------------------- 3. non-finite results are refused before anything is written
NON_FINITE_CASES = {
    "1e308 weights, --height 1": (
        lambda w: np.sign(w).astype(np.float64) * 1e308,
        ["--height", "1"],
        "overflows",
    ),
    "1e200 weights, squared objective": (
        lambda w: np.sign(w).astype(np.float64) * 1e200,
        ["--height", "1", "--objective", "squared"],
        "w^2",
    ),
    "float64 max, lossless": (lambda w: np.sign(w) * np.finfo(np.float64).max, [], "overflows"),
}


@pytest.mark.parametrize("case", sorted(NON_FINITE_CASES))
@pytest.mark.parametrize("command", ["pack", "simulate"])
def test_non_finite_results_are_refused_before_writing(work, capfd, case, command):
    make, flags, word = NON_FINITE_CASES[case]
    np.save(work / "huge.npy", make(sparse_matrix()))
    before = snapshot(work)
    extra = ["--out", "o.st"] if command == "pack" else []
    try:
        code = main([command, "huge.npy", "--iterations", "500", *flags, "--json", "o.json", *extra])
    except SystemExit as exc:
        code = exc.code
    err = capfd.readouterr().err  # file descriptors: a NumPy warning printed from C would show too
    assert_one_line_error(code, err, word)
    assert snapshot(work) == before


def test_an_energy_table_that_overflows_is_refused(work, capsys):
    (work / "e.json").write_text('{"dram_pj_per_bit": 1e308}')
    before = snapshot(work)
    assert_one_line_error(
        *run_cli(capsys, "simulate", "m.npy", "--energy-table", "e.json", "--json", "o.json"), "1e+09"
    )
    assert snapshot(work) == before


def test_json_is_strict_and_names_the_non_finite_field(tmp_path):
    from tightcompress.errors import TightCompressError
    from tightcompress.utils.atomic import write_json_atomic

    for value in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(TightCompressError, match=r"layers\[1\]\.energy_pj"):
            write_json_atomic(tmp_path / "o.json", {"layers": [{"energy_pj": 1.0}, {"energy_pj": value}]})
    assert list(tmp_path.iterdir()) == []
    write_json_atomic(tmp_path / "o.json", {"x": 1e308})
    assert json.loads((tmp_path / "o.json").read_text()) == {"x": 1e308}


# ------------------------------------------------------------------- 4. the user's code in `compress`
TINY_MODEL = """
import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


class Broken(nn.Module):
    def __init__(self):
        raise RuntimeError("constructor broke")


class Exits(nn.Module):
    def __init__(self):
        raise SystemExit(0)
"""

TRANSFORMS = """
import itertools
import numpy as np
import torch

_count = itertools.count()


def raises(train):
    def tf(pic):
        raise ValueError("bad pixel")
    return tf


def not_a_tensor(train):
    return lambda pic: np.asarray(pic)


def varying(train):
    return lambda pic: torch.zeros(1, 8, 8 + next(_count) % 2)


def factory_raises(train):
    raise KeyError("no such augmentation")


def factory_exits(train):
    raise SystemExit(0)


def good(train):
    return lambda pic: torch.from_numpy(np.asarray(pic, dtype=np.float32)[None] / 255)
"""

USER_CODE_CASES = {
    "transform raises": ("tf:raises", "Tiny", "ValueError: bad pixel"),
    "transform returns an array": ("tf:not_a_tensor", "Tiny", "returned a ndarray"),
    "transform sizes vary": ("tf:varying", "Tiny", "same size"),
    "transforms factory raises": ("tf:factory_raises", "Tiny", "KeyError"),
    "transforms factory exits": ("tf:factory_exits", "Tiny", "sys.exit(0)"),
    "model constructor raises": ("tf:good", "Broken", "constructor broke"),
    "model constructor exits": ("tf:good", "Exits", "sys.exit(0)"),
    "model module exits at import": ("tf:good", "exits", "sys.exit(0)"),
}


@pytest.mark.parametrize("case", sorted(USER_CODE_CASES))
def test_the_users_code_failing_in_compress_is_one_line(work, capsys, monkeypatch, case):
    import torch

    from test_pipeline_data import make_folder

    transforms, model, word = USER_CODE_CASES[case]
    for name in ("tf", "tiny_model", "exiting_model"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    (work / "tf.py").write_text(TRANSFORMS)
    (work / "tiny_model.py").write_text(TINY_MODEL)
    (work / "exiting_model.py").write_text("import sys\nsys.exit(0)\n")
    namespace: dict = {}
    exec(TINY_MODEL, namespace)
    torch.save(namespace["Tiny"]().state_dict(), work / "tiny.pt")
    make_folder(work / "imgs")
    spec = "exiting_model:Tiny" if model == "exits" else f"tiny_model:{model}"
    before = snapshot(work)
    code, err = run_cli(
        capsys, "compress", "--checkpoint", "tiny.pt", "--model", spec, "--data", "imgs",
        "--transforms", transforms, "--out-dir", "out", "--quiet", "--prune-rounds", "1",
    )  # fmt: skip
    assert_one_line_error(code, err, word)
    assert snapshot(work) == before


# ---------------------------------------------------------------------------------- 5. special files
def _special(work: Path, kind: str) -> str:
    """Make a special file of `kind` in `work`; its name (or an absolute path)."""
    if kind == "fifo":
        os.mkfifo(work / "fifo")
        return "fifo"
    if kind == "device node":  # the issue's `mknod fakenull c 1 3`: /dev/null's numbers, another node
        if os.geteuid() != 0:
            pytest.skip("mknod needs root")
        os.mknod(work / "fakenull", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        return "fakenull"
    if kind == "symlink loop":
        os.symlink("loop2", work / "loop1")
        os.symlink("loop1", work / "loop2")
        return "loop1"
    if kind == "/dev/zero":
        return "/dev/zero"
    if kind == "socket":
        import socket

        server = socket.socket(socket.AF_UNIX)
        server.bind(str(work / "sock"))
        return "sock"
    raise AssertionError(kind)


SPECIAL_INPUT_COMMANDS = [
    "report {} --html o.html",
    "report r.json --sweep {} --html o.html",
    "report r.json --packed {} --html o.html",
    "pack {} --json o.json",
    "simulate {} --json o.json",
    "sweep {} --csv o.csv",
    "unpack {} o.npy",
    "export {} --out-dir rtl",
    "simulate m.npy --energy-table {} --json o.json",
]
SPECIAL_KINDS = ["fifo", "device node", "symlink loop", "/dev/zero", "socket"]


@pytest.mark.parametrize("kind", SPECIAL_KINDS)
@pytest.mark.parametrize("command", SPECIAL_INPUT_COMMANDS)
def test_special_files_are_refused_as_inputs(work, capsys, command, kind):
    name = _special(work, kind)
    before = snapshot(work)
    code, err = run_cli(capsys, *command.format(name).split())  # a FIFO would hang here: refused first
    assert_one_line_error(code, err, name, "not a regular file")
    assert snapshot(work) == before


SPECIAL_OUTPUT_COMMANDS = [
    "pack m.npy --json {}",
    "pack m.npy --json o.json --out {}",
    "simulate m.npy --json {}",
    "report r.json --html {}",
    "unpack p.safetensors {}",
    "sweep m.npy --csv {}",
]


@pytest.mark.parametrize("kind", ["fifo", "device node", "symlink loop", "socket"])
@pytest.mark.parametrize("command", SPECIAL_OUTPUT_COMMANDS)
def test_special_files_are_refused_as_outputs_and_never_replaced(work, capsys, command, kind):
    name = _special(work, kind)
    before = snapshot(work)
    code, err = run_cli(capsys, *command.format(name).split())
    assert_one_line_error(code, err, name)
    assert snapshot(work) == before  # still a FIFO / device node / link: not replaced by a regular file


def test_dev_null_as_output_is_written_through(work, capsys):
    import tempfile

    before = snapshot(work)
    leftovers = set(Path(tempfile.gettempdir()).glob(".tightcompress-null.*"))
    code, err = run_cli(capsys, "pack", "m.npy", "--iterations", "300", "--json", "/dev/null", "--quiet")
    assert code == 0, err
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert snapshot(work) == before
    assert set(Path(tempfile.gettempdir()).glob(".tightcompress-null.*")) == leftovers


def test_a_symlinked_output_is_written_through_and_stays_a_link(work, capsys):
    (work / "real.json").write_text("{}\n")
    os.symlink("real.json", work / "link.json")
    code, err = run_cli(capsys, "pack", "m.npy", "--iterations", "300", "--json", "link.json", "--quiet")
    assert code == 0, err
    assert (work / "link.json").is_symlink() and os.readlink(work / "link.json") == "real.json"
    assert json.loads((work / "real.json").read_text())["layers"]


# ------------------------------------------------------------------------ 7. hangs and resources
MEMORY_CASES = {
    "30000 x 30000 .npy": ("npy", "30000x30000 float32", "GiB"),
    "a checkpoint larger than memory": ("ckpt", "reading", "MiB"),
    "layers that fit alone but not on 2 workers": ("jobs", "--jobs", "MiB"),
}


@pytest.mark.parametrize("case", sorted(MEMORY_CASES))
def test_memory_is_estimated_before_loading_or_packing(work, capsys, monkeypatch, case):
    import tightcompress.utils.memory as memory

    kind, word, unit = MEMORY_CASES[case]
    if kind == "npy":  # a sparse file: 3.6 GB long, nothing on disk; never read
        with open(work / "big.npy", "wb") as handle:
            np.lib.format.write_array_header_1_0(
                handle, {"descr": "<f4", "fortran_order": False, "shape": (30000, 30000)}
            )
            handle.truncate(handle.tell() + 30000 * 30000 * 4)
        monkeypatch.setattr(memory, "available_memory", lambda: 16 * 2**30)
        argv = ["pack", "big.npy", "--json", "o.json"]
    elif kind == "ckpt":
        from safetensors.numpy import save_file

        save_file({"a.weight": sparse_matrix(512, 512)}, str(work / "c.safetensors"))
        monkeypatch.setattr(memory, "available_memory", lambda: 100_000)
        argv = ["pack", "c.safetensors", "--json", "o.json"]
    else:
        from safetensors.numpy import save_file

        save_file(
            {f"l{i}.weight": sparse_matrix(300, 300, seed=i) for i in range(2)}, str(work / "c.safetensors")
        )
        need_one = memory.PACK_BYTES_PER_WEIGHT * 300 * 300
        monkeypatch.setattr(memory, "available_memory", lambda: int(1.5 * need_one))
        monkeypatch.setattr("tightcompress.cli.common.usable_cores", lambda: 2)
        monkeypatch.setattr("tightcompress.parallel.default_jobs", lambda: 2)
        argv = ["pack", "c.safetensors", "--jobs", "2", "--json", "o.json"]
    before = snapshot(work)
    code, err = run_cli(capsys, *argv)
    assert_one_line_error(code, err, word, unit, "available")
    assert snapshot(work) == before
    if kind == "jobs":  # one worker fits
        monkeypatch.setattr(memory, "available_memory", lambda: int(1.5 * need_one))
        assert run_cli(capsys, *argv[:2], "--jobs", "1", "--iterations", "300", "--json", "o.json")[0] == 0


def test_available_memory_is_read_from_the_system():
    from tightcompress.utils.memory import available_memory

    available = available_memory()
    if sys.platform.startswith("linux"):
        assert available is not None and 0 < available < 2**50


def test_jobs_above_the_cores_are_capped_in_one_line(work, capsys, monkeypatch):
    monkeypatch.setattr("tightcompress.cli.common.usable_cores", lambda: 2)
    code, err = run_cli(capsys, "pack", "m.npy", "--iterations", "300", "--jobs", "1024", "--json", "o.json")
    assert code == 0
    assert error_lines(err) == [
        "tightcompress pack: --jobs 1024 is more than the 2 core(s) this process may use; using 2"
    ]
    code, err = run_cli(
        capsys, "pack", "m.npy", "--iterations", "300", "--jobs", "1024", "--json", "o.json", "--quiet"
    )
    assert code == 0 and err == ""


@pytest.mark.parametrize("value", ["two", "0", "-1", "1.5"])
def test_a_bad_world_size_is_one_line(work, capsys, monkeypatch, value):
    monkeypatch.setenv("WORLD_SIZE", value)
    before = snapshot(work)
    assert_one_line_error(*run_cli(capsys, "pack", "m.npy", "--json", "o.json"), "WORLD_SIZE", repr(value))
    assert snapshot(work) == before


class _SilentServer:
    """A TCP port on loopback that accepts connections and never says anything (or says `answer`)."""

    def __init__(self, answer: bytes = b"") -> None:
        import socket
        import threading

        self.answer = answer
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(8)
        self.port = self.server.getsockname()[1]
        self.connections: list = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            self.connections.append(connection)
            if self.answer:
                connection.sendall(self.answer)

    def close(self) -> None:
        for connection in self.connections:
            connection.close()
        self.server.close()


@pytest.mark.parametrize(
    ("answer", "word"), [(b"", "did not answer"), (b"HTTP/1.0 400 Bad Request\r\n\r\n", "not a Ray cluster")]
)
@pytest.mark.parametrize("command", ["pack m.npy --json o.json", "sweep m.npy --csv o.csv"])
def test_a_ray_address_that_is_not_ray_is_one_line_within_seconds(work, capfd, command, answer, word):
    pytest.importorskip("ray")
    server = _SilentServer(answer)
    try:
        before = snapshot(work)
        start = time.monotonic()
        try:
            code = main([*command.split(), "--ray", f"127.0.0.1:{server.port}", "--quiet"])
        except SystemExit as exc:
            code = exc.code
        seconds = time.monotonic() - start
    finally:
        server.close()
    err = capfd.readouterr().err  # file descriptors: Ray's C++ warnings would show here
    assert_one_line_error(code, err, f"127.0.0.1:{server.port}", word)
    assert seconds < 15
    assert snapshot(work) == before


_RANK = """
import sys
from tightcompress.cli.main import main
sys.exit(main(["compress", "--out-dir", "out", "--quiet"]))
"""

_PAIR = """
import torch, torch.distributed as dist
from tightcompress.pipeline import distributed
distributed.init_from_env("cpu")
t = torch.ones(1) * (dist.get_rank() + 1)
dist.all_reduce(t)
print(int(t.item()), dist.get_world_size(), flush=True)
distributed.shutdown()
"""


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_env(rank: int, port: int, **extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("TORCHELASTIC_USE_AGENT_STORE", None)
    env.update(WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1")
    env.update({"MASTER_PORT": str(port), "TIGHTCOMPRESS_RENDEZVOUS_TIMEOUT": "3", **extra})
    return env


@pytest.mark.slow
@pytest.mark.parametrize("rank", [0, 1])
def test_a_rank_without_its_peer_stops_in_one_line_naming_the_address(tmp_path, rank):
    port = _free_port()
    done = subprocess.run(
        [sys.executable, "-c", _RANK], cwd=tmp_path, env=_rank_env(rank, port), capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert error_lines(done.stderr) == [line for line in done.stderr.splitlines() if "127.0.0.1" in line]
    assert len(error_lines(done.stderr)) == 1 and f"127.0.0.1:{port}" in done.stderr
    assert "waited 3 s" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.slow
def test_two_ranks_started_by_hand_meet_without_torchrun(tmp_path):
    port = _free_port()
    env = {rank: _rank_env(rank, port, TIGHTCOMPRESS_RENDEZVOUS_TIMEOUT="120") for rank in (0, 1)}
    ranks = [
        subprocess.Popen(
            [sys.executable, "-c", _PAIR],
            env=env[rank],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in (0, 1)
    ]
    outputs = [process.communicate(timeout=300) for process in ranks]
    assert [process.returncode for process in ranks] == [0, 0], outputs
    assert [out.split() for out, _ in outputs] == [["3", "2"], ["3", "2"]]


# ------------------------------------------------------------------------------------------- 8. report
MATHTEXT_NAMES = ["w$\\nocommand{$", "a$x^$b", "$$", "cost $5 and $6", "$\\alpha$_{x}"]


@pytest.mark.parametrize("name", MATHTEXT_NAMES)
def test_names_with_dollar_signs_are_drawn_as_plain_text(work, capsys, name):
    from safetensors.numpy import save_file

    save_file({f"{name}.weight": sparse_matrix().T.copy()}, str(work / "c.safetensors"))
    # the layer and the report's file name (the run's label) both carry the name
    argv = [
        "pack",
        "c.safetensors",
        "--iterations",
        "300",
        "--json",
        f"{name}.json",
        "--out",
        "p2.st",
        "--quiet",
    ]
    assert run_cli(capsys, *argv)[0] == 0
    code, err = run_cli(capsys, "report", f"{name}.json", "--packed", "p2.st", "--html", "o.html", "--quiet")
    assert code == 0, err
    assert "<img" in (work / "o.html").read_text()


def test_frontier_png_draws_dollar_signs_as_text(tmp_path):
    import matplotlib

    from tightcompress.viz.text import plain_text

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with plain_text():
        fig, ax = plt.subplots()
        ax.set_title("w$\\nocommand{$")
        fig.savefig(tmp_path / "x.png")
        plt.close(fig)
    assert matplotlib.rcParams["text.parse_math"] is True  # the user's settings are left as they were


DEEP_JSON = {
    "array": "[" * 100_000 + "]" * 100_000,
    "object": '{"a":' * 100_000 + "1" + "}" * 100_000,
    "layers": '{"layers": ' + "[" * 100_000 + "]" * 100_000 + "}",
}


@pytest.mark.parametrize("case", sorted(DEEP_JSON))
@pytest.mark.parametrize(
    "command",
    ["report {} --html o.html", "simulate m.npy --energy-table {} --json o.json"],
)
def test_deeply_nested_json_is_one_line(work, capsys, case, command):
    (work / "deep.json").write_text(DEEP_JSON[case])
    before = snapshot(work)
    assert_one_line_error(
        *run_cli(capsys, *command.format("deep.json").split()), "deep.json", "nested too deeply"
    )
    assert snapshot(work) == before


# ------------------------------------------------------------------------------ 9. the other exit-1s
TOPOLOGY_ROWS = {
    "channels 1e29": "conv1,3,3,3,3,100000000000000000000000000000,64,1,",
    "filters 2**31": f"conv1,3,3,3,3,8,{2**31},1,",
    "K x N beyond memory": "conv1,3,3,3,3,2000000000,2000000000,1,",
    "channels 1e29 (float)": "conv1,3,3,3,3,1e29,64,1,",
}


@pytest.mark.parametrize("case", sorted(TOPOLOGY_ROWS))
def test_absurd_topology_sizes_are_one_line(work, capsys, case):
    from tightcompress.readers.topology import HEADER

    (work / "net.csv").write_text(",".join(HEADER) + ",\n" + TOPOLOGY_ROWS[case] + "\n")
    before = snapshot(work)
    code, err = run_cli(capsys, "simulate", "net.csv", "--json", "o.json")
    assert_one_line_error(code, err)
    assert snapshot(work) == before


@pytest.mark.parametrize("cut", [1, 7, 8, 100])
def test_an_onnx_initializer_with_truncated_raw_data_is_one_line(work, capsys, cut):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    init = numpy_helper.from_array(sparse_matrix(), "W")
    init.raw_data = init.raw_data[:-cut]
    node = helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 48])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 40])], [init],
    )  # fmt: skip
    onnx.save(helper.make_model(graph), str(work / "t.onnx"))
    before = snapshot(work)
    assert_one_line_error(*run_cli(capsys, "pack", "t.onnx", "--json", "o.json"), "t.onnx", "'W'")
    assert snapshot(work) == before


def _resign_info(path: Path, edit) -> None:
    from safetensors import safe_open
    from safetensors.numpy import load_file

    from tightcompress.format.io import write_signed

    tensors = dict(load_file(str(path)))
    with safe_open(str(path), framework="numpy") as handle:
        layers = json.loads(handle.metadata()["layers"])
        state = handle.metadata().get("state")
    edit(next(iter(layers.values()))["info"])
    write_signed(path, tensors, json.dumps(layers), state)


INFO_CASES = {
    "dtype Tensor": lambda info: info.update(dtype="Tensor"),
    "dtype object": lambda info: info.update(dtype="object"),
    "dtype a number": lambda info: info.update(dtype=5),
    "source shape wrong": lambda info: info["source"].update(shape=[3, 7]),
    "source shape not a list": lambda info: info["source"].update(shape="40x48"),
    "source groups 0": lambda info: info["source"].update(groups=0),
    "source group_index out of range": lambda info: info["source"].update(groups=2, group_index=5),
    "source not an object": lambda info: info.update(source=[1]),
}


@pytest.mark.parametrize("case", sorted(INFO_CASES))
@pytest.mark.parametrize("output", ["o.pt", "o.safetensors", "o.npy"])
def test_a_resigned_packed_file_with_a_wrong_info_is_one_line(work, capsys, case, output):
    from safetensors.numpy import save_file

    state = {"fc.weight": sparse_matrix().T.copy(), "fc.bias": np.zeros(40, np.float32)}
    save_file(state, str(work / "c.safetensors"))
    argv = [
        "pack",
        "c.safetensors",
        "--iterations",
        "300",
        "--json",
        "r2.json",
        "--out",
        "p2.safetensors",
        "--quiet",
    ]
    got = run_cli(capsys, *argv)
    assert got == (0, ""), got[1]
    _resign_info(work / "p2.safetensors", INFO_CASES[case])
    before = snapshot(work)
    assert_one_line_error(*run_cli(capsys, "unpack", "p2.safetensors", output), "p2.safetensors", "info")
    assert snapshot(work) == before


@pytest.mark.slow
def test_an_ascii_terminal_and_a_non_ascii_output_name_succeed(tmp_path):
    np.save(tmp_path / "m.npy", sparse_matrix())
    env = dict(os.environ, PYTHONIOENCODING="ascii", PYTHONPATH=str(SRC))
    done = subprocess.run(
        [sys.executable, "-m", "tightcompress.cli.main", "pack", "m.npy", "--iterations", "300", "--json",
         "ü-名前.json", "--quiet"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert "\\xfc" in done.stdout and json.loads((tmp_path / "ü-名前.json").read_text())["layers"]
