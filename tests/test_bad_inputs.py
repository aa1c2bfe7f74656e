"""Hostile input, one table per cause (issue 12): every case is a one-line error with a non-zero exit (or
succeeds, where the input is valid), leaves every file that was there byte-identical and no temporary file.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tightcompress as tc
from cli_cases import sparse_matrix
from tightcompress.cli.main import main
from tightcompress.errors import TightCompressError
from tightcompress.format.io import _ARRAYS, load_packed, save_packed, tensor_sha256, write_signed

SRC = Path(__file__).resolve().parents[1] / "src"


# ------------------------------------------------------------------------------------------------ helpers
def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under `folder` with its bytes and mode (temporary files would show up as new entries)."""
    return {
        str(p.relative_to(folder)): (p.read_bytes(), stat.S_IMODE(p.stat().st_mode))
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def run_cli(capsys, *argv) -> tuple[int, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # a usage error, caught by argparse at the door (the process exits 2 alike)
        code = exc.code
    return code, capsys.readouterr().err


def assert_one_line_error(code: int, err: str, *words: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and "error:" in lines[0] and "Traceback" not in err, err
    for word in words:
        assert word in lines[0], lines[0]


# ---------------------------------------------------------------- 1. an output that is an input or output
def _links(work: Path) -> None:
    os.symlink(work / "m.npy", work / "sym.npy")
    os.link(work / "m.npy", work / "hard.npy")
    os.symlink(work / "r.json", work / "sym.json")
    (work / "sub").mkdir()


SAME_PATH_CASES = [
    ("pack m.npy --json r2.json --out m.npy", "m.npy"),
    ("pack m.npy --json X.safetensors --out X.safetensors", "another output"),
    ("pack m.npy --json sym.npy", "the input"),
    ("pack m.npy --json hard.npy", "the input"),
    ("pack m.npy --json sub/../m.npy", "the input"),
    ("pack sym.npy --json x.json --out hard.npy", "the input"),
    ("pack m.npy --json a.json --out ./a.json", "another output"),
    ("simulate m.npy --json m.npy", "the input"),
    ("sweep m.npy --csv hard.npy", "the input"),
    ("report r.json --html r.json", "the input"),
    ("report r.json --html sym.json", "the input"),
    ("report r.json --packed p.safetensors --html p.safetensors", "the input"),
    ("unpack p.safetensors p.safetensors", "the input"),
    ("export p.safetensors --out-dir p.safetensors", "the input"),
    ("export sub/../p.safetensors --out-dir .", "inside the output folder"),
]


@pytest.mark.parametrize(("command", "expected"), SAME_PATH_CASES)
def test_an_output_that_is_an_input_or_another_output_is_refused_before_any_work(
    work, capsys, command, expected
):
    _links(work)
    before = snapshot(work)
    code, err = run_cli(capsys, *command.split())
    assert_one_line_error(code, err, expected)
    assert snapshot(work) == before


# ------------------------------------------------------------ 2. RTL re-export deletes only its own files
def test_rtl_reexport_keeps_files_it_did_not_write(work, capsys):
    assert run_cli(capsys, "export", "p.safetensors", "--out-dir", "rtl")[0] == 0
    (work / "rtl" / "tb_top.sv").write_text("module tb; endmodule\n")
    (work / "rtl" / "m" / "notes.txt").write_text("mine\n")
    assert run_cli(capsys, "export", "p.safetensors", "--out-dir", "rtl", "--seed", "3")[0] == 0
    assert (work / "rtl" / "tb_top.sv").read_text() == "module tb; endmodule\n"
    assert (work / "rtl" / "m" / "notes.txt").read_text() == "mine\n"
    manifest = json.loads((work / "rtl" / "manifest.json").read_text())
    assert all((work / "rtl" / f).is_file() for f in manifest["files"])
    assert "tb_top.sv" not in manifest["files"]


def test_rtl_reexport_removes_only_stale_files_it_wrote(work, capsys):
    two = {"a": load_packed("p.safetensors")["m"], "b": load_packed("p.safetensors")["m"]}
    save_packed(work / "two.safetensors", two)
    assert run_cli(capsys, "export", "two.safetensors", "--out-dir", "rtl")[0] == 0
    (work / "rtl" / "b" / "keep.v").write_text("x\n")
    assert run_cli(capsys, "export", "two.safetensors", "--layer", "a", "--out-dir", "rtl")[0] == 0
    assert sorted(p.name for p in (work / "rtl" / "b").iterdir()) == ["keep.v"]
    assert (work / "rtl" / "a" / "tile000_weights.hex").is_file()


def test_rtl_export_refuses_to_overwrite_a_file_it_did_not_write(work, capsys):
    save_packed(
        work / "two.safetensors", {"m": load_packed("p.safetensors")["m"], "z": tc.pack(sparse_matrix())}
    )
    assert run_cli(capsys, "export", "p.safetensors", "--out-dir", "rtl")[0] == 0
    (work / "rtl" / "z").write_text("a user file where the new export wants a folder\n")
    before = snapshot(work)
    code, err = run_cli(capsys, "export", "two.safetensors", "--out-dir", "rtl")
    assert_one_line_error(code, err, "did not write")
    assert snapshot(work) == before


# ------------------------------------------------- 3. damaged packed files: exact matrix or one-line error
def _header(data: bytes) -> tuple[dict, int]:
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8 : 8 + n]), n


def _with_header(data: bytes, header: dict) -> bytes:
    _, n = _header(data)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + data[8 + n :]


def _mutate(data: bytes, kind: str, draw) -> bytes:
    if kind == "flip":
        i = draw(st.integers(0, len(data) - 1))
        return data[:i] + bytes([data[i] ^ draw(st.integers(1, 255))]) + data[i + 1 :]
    if kind == "truncate":
        return data[: draw(st.integers(0, len(data) - 1))]
    header, _ = _header(data)
    meta = header["__metadata__"]
    if kind == "metadata":
        key = draw(st.sampled_from(sorted(meta)))
        layers = json.loads(meta["layers"])
        if key == "layers":
            layer = layers[draw(st.sampled_from(sorted(layers)))]
            field = draw(st.sampled_from(["K", "N", "group", "tile", "method", "height_cap"]))
            layer[field] = draw(st.sampled_from([0, 1, -1, 7, 10**12, "tight", None, [1]]))
            meta["layers"] = json.dumps(layers)
        else:
            meta[key] = draw(st.sampled_from(["", "2", "{}", "[]", "x", meta[key][::-1]]))
    elif kind == "drop-tensor":
        del header[draw(st.sampled_from(sorted(k for k in header if k != "__metadata__")))]
    elif kind == "extra-tensor":
        header["extra/values"] = dict(header[next(k for k in header if k.endswith("/values"))])
    return _with_header(data, header)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_damage_to_a_packed_file_gives_the_exact_matrix_or_a_one_line_error(tmp_path, data):
    path = tmp_path / "p.safetensors"
    if not path.exists():
        W = sparse_matrix(40, 24, seed=1)
        save_packed(
            path, {"a": tc.pack(W, group=8, tile=8, iterations=2000), "b": tc.pack(W, method="dense")}
        )
    original = path.read_bytes()
    expected = {name: p.to_dense() for name, p in load_packed(path).items()}
    kind = data.draw(st.sampled_from(["flip", "truncate", "metadata", "drop-tensor", "extra-tensor"]))
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(_mutate(original, kind, data.draw))
    try:
        loaded = load_packed(damaged)
    except TightCompressError as exc:
        assert "\n" not in str(exc)
        return
    assert set(loaded) == set(expected)
    for name, packed in loaded.items():
        assert np.array_equal(packed.to_dense(), expected[name])


def test_unpack_of_a_bit_flipped_file_is_a_one_line_error(work, capsys):
    data = bytearray((work / "p.safetensors").read_bytes())
    data[-5] ^= 0x40  # a weight's bits
    (work / "bad.safetensors").write_bytes(bytes(data))
    before = snapshot(work)
    code, err = run_cli(capsys, "unpack", "bad.safetensors", "out.npy")
    assert_one_line_error(code, err, "checksum")
    assert snapshot(work) == before


# ------------------------------------------- 4. broken structure (re-signed, so the checksums pass): one line
def _signed_variant(path: Path, edit) -> None:
    """Rewrite a packed file with `edit(tensors, layers)` applied and fresh checksums."""
    from safetensors import safe_open
    from safetensors.numpy import load_file

    tensors = dict(load_file(str(path)))
    with safe_open(str(path), framework="numpy") as handle:
        layers = json.loads(handle.metadata()["layers"])
    layers_json = edit(tensors, layers)
    write_signed(path, tensors, layers_json if isinstance(layers_json, str) else json.dumps(layers))


def _drop(mapping, key):
    del mapping[key]


def _set(tensors, key, fn):
    tensors[key] = fn(tensors[key].copy())


STRUCTURE_CASES = {
    "layers not JSON": lambda t, ly: "{not json",
    "layers a list": lambda t, ly: json.dumps([1, 2]),
    "layer not an object": lambda t, ly: json.dumps({"m": 3}),
    "K missing": lambda t, ly: _drop(ly["m"], "K"),
    "K changed": lambda t, ly: ly["m"].update(K=ly["m"]["K"] + 1),
    "K huge": lambda t, ly: ly["m"].update(K=10**15),
    "N a string": lambda t, ly: ly["m"].update(N="40"),
    "group 0": lambda t, ly: ly["m"].update(group=0),
    "tile 0": lambda t, ly: ly["m"].update(tile=0),
    "method not a string": lambda t, ly: ly["m"].update(method=5),
    "info a list": lambda t, ly: ly["m"].update(info=[1]),
    "tensor missing": lambda t, ly: _drop(t, "m/lanes"),
    "tensor extra": lambda t, ly: t.update({"m/extra": np.zeros(3)}),
    "row permutation out of range": lambda t, ly: _set(t, "m/row_perm", lambda a: a + 1),
    "row permutation repeats": lambda t, ly: _set(t, "m/row_perm", lambda a: np.zeros_like(a)),
    "column out of range": lambda t, ly: _set(t, "m/col_perm", lambda a: a * 1000),
    "heights edited": lambda t, ly: _set(t, "m/heights", lambda a: a + 1),
    "heights negative": lambda t, ly: _set(t, "m/heights", lambda a: -a),
    "lane out of range": lambda t, ly: _set(t, "m/lanes", lambda a: a + 100),
    "values NaN": lambda t, ly: _set(t, "m/values", lambda a: np.where(a != 0, np.nan, a).astype(a.dtype)),
    "values 1-D": lambda t, ly: _set(t, "m/values", lambda a: a.ravel()),
    "group offsets not a partition": lambda t, ly: _set(t, "m/group_offsets", lambda a: a[::-1].copy()),
    "lanes float": lambda t, ly: _set(t, "m/lanes", lambda a: a.astype(np.float32)),
}


@pytest.mark.parametrize("case", sorted(STRUCTURE_CASES))
def test_broken_structure_is_a_one_line_error(work, capsys, case):
    _signed_variant(work / "p.safetensors", STRUCTURE_CASES[case])
    before = snapshot(work)
    for command in (["unpack", "p.safetensors", "o.npy"], ["export", "p.safetensors", "--out-dir", "rtl"]):
        code, err = run_cli(capsys, *command)
        assert_one_line_error(code, err, "p.safetensors")
        assert snapshot(work) == before


def test_missing_layers_metadata_and_other_files_are_one_line_errors(work, capsys):
    from safetensors.numpy import save_file

    save_file(
        {"x": np.zeros(2)}, str(work / "nometa.safetensors"), metadata={"format": "tightcompress.packed"}
    )
    (work / "empty.safetensors").write_bytes(b"")
    (work / "text.safetensors").write_text("hello")
    (work / "huge.safetensors").write_bytes(struct.pack("<Q", 2**62) + b"{}")
    for name in ("nometa", "empty", "text", "huge"):
        code, err = run_cli(capsys, "unpack", f"{name}.safetensors", "o.npy")
        assert_one_line_error(code, err, name)
    assert not (work / "o.npy").exists()


def test_old_format_version_is_named(work, capsys):
    from safetensors.numpy import load_file, save_file

    meta = {"format": "tightcompress.packed", "format_version": "1", "layers": "{}"}
    save_file(load_file(str(work / "p.safetensors")), str(work / "old.safetensors"), metadata=meta)
    assert_one_line_error(*run_cli(capsys, "unpack", "old.safetensors", "o.npy"), "version 1")


# ---------------------------------------------------------------- 6. .npy sizes checked before reading
def _npy_with_header(path: Path, shape: tuple, dtype: str = "<f4", payload: bytes = b"") -> None:
    import io

    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": dtype, "fortran_order": False, "shape": shape})
    path.write_bytes(buffer.getvalue() + payload)


NPY_CASES = {
    "empty": lambda p: p.write_bytes(b""),
    "not npy": lambda p: p.write_text("K,N\n1,2\n"),
    "magic only": lambda p: p.write_bytes(b"\x93NUMPY"),
    "huge shape": lambda p: _npy_with_header(p, (10**9, 10**9)),
    "huge shape, some data": lambda p: _npy_with_header(p, (2**40, 2), payload=b"\0" * 64),
    "truncated": lambda p: p.write_bytes(
        (lambda b: b[: len(b) - 7])(open(p.with_name("m.npy"), "rb").read())
    ),
    "object dtype": lambda p: np.save(p, np.array([[1, None]], dtype=object), allow_pickle=True),
    "bad header": lambda p: p.write_bytes(b"\x93NUMPY\x01\x00\x10\x00{'descr': 5}    \n"),
}


@pytest.mark.parametrize("case", sorted(NPY_CASES))
@pytest.mark.parametrize("command", ["pack", "simulate", "sweep"])
def test_bad_npy_is_a_one_line_error_without_allocating(work, capsys, case, command):
    NPY_CASES[case](work / "bad.npy")
    before = snapshot(work)
    out = {"pack": "--json", "simulate": "--json", "sweep": "--csv"}[command]
    code, err = run_cli(capsys, command, "bad.npy", out, "o.out")
    assert_one_line_error(code, err, "bad.npy")
    assert snapshot(work) == before


# -------------------------------------------------------- 7. extreme options and wrong-typed API options
CLI_OPTION_CASES = [
    (["--gamma", "inf", "--method", "column-combining"], "gamma"),
    (["--gamma", "nan", "--method", "column-combining"], "gamma"),
    (["--seed", "1180591620717411303424"], "seed"),
    (["--seed", "-1"], "seed"),
    (["--iterations", "99999999999999999999"], "iterations"),
    (["--sparsity", "nan"], "sparsity"),
    (["--tile", "99999999999999999999"], "tile"),
    (["--group", "0"], "group"),
]


@pytest.mark.parametrize(("options", "word"), CLI_OPTION_CASES)
@pytest.mark.parametrize("command", ["pack", "simulate"])
def test_extreme_cli_options_are_one_line_errors(work, capsys, options, word, command):
    before = snapshot(work)
    code, err = run_cli(capsys, command, "m.npy", *options, "--json", "o.json")
    assert_one_line_error(code, err, word)
    assert snapshot(work) == before


API_OPTION_CASES = [
    ({"sparsity": "0.5"}, "sparsity"),
    ({"seed": "a"}, "seed"),
    ({"seed": 1.5}, "seed"),
    ({"seed": 2**70}, "seed"),
    ({"group": True}, "group"),
    ({"gamma": float("inf")}, "gamma"),
    ({"gamma": "0.5"}, "gamma"),
    ({"iterations": 10**20}, "iterations"),
    ({"iterations": 2.0}, "iterations"),
    ({"method": 3}, "method"),
    ({"height": "2"}, "height"),
    ({"objective": None}, "objective"),
    ({"unknown_option": 1}, "unknown_option"),
    ({"Group": 8}, "Group"),
]


@pytest.mark.parametrize(("options", "word"), API_OPTION_CASES)
def test_wrong_typed_api_options_are_the_projects_error(options, word):
    with pytest.raises(TightCompressError, match=word):
        tc.pack(sparse_matrix(), **options)


def test_config_of_the_wrong_type_is_refused():
    with pytest.raises(TightCompressError, match="PackConfig"):
        tc.pack(sparse_matrix(), {"method": "dense"})


def test_torch_tensors_with_grad_and_3d_matmul_input():
    import torch

    W = torch.tensor(sparse_matrix(), requires_grad=True)
    # pack() takes NumPy K x N: a tensor (PyTorch layout, maybe with grad) is refused in one line naming the
    # function that takes it, and pack_weight packs the (out, in) weight of the same layer
    with pytest.raises(TightCompressError, match="pack_weight"):
        tc.pack(W, method="dense", tile=8)
    packed = tc.pack_weight(W.T, method="dense", tile=8)
    assert np.array_equal(packed.to_dense(), sparse_matrix())
    x = torch.ones(2, 48, requires_grad=True)
    assert np.allclose(packed.matmul(x), np.ones((2, 48), np.float32) @ sparse_matrix(), atol=1e-4)
    with pytest.raises(TightCompressError, match="shape"):
        packed.matmul(np.ones((2, 3, 48)))
    with pytest.raises(TightCompressError, match="features"):
        packed.matmul(np.ones((2, 47)))


# ------------------------------------------------------------------ 8. malformed report JSON: one line
REPORT_CASES = {
    "layers of numbers": {"report_version": 1, "layers": [1, 2]},
    "layer without fields": {"report_version": 1, "layers": [{}]},
    "rate a string": {"report_version": 1, "layers": [{"name": "a", "compression_rate": "x"}]},
    "rate a bool": {"report_version": 1, "layers": [{"name": "a", "compression_rate": True}]},
    "name a number": {"report_version": 1, "layers": [{"name": 3, "compression_rate": 2.0}]},
    "cycles null": {"report_version": 1, "layers": [{"name": "a", "compression_rate": 2, "cycles": None}]},
    "config a list": {"report_version": 1, "layers": [], "config": []},
    "total a string": {"report_version": 1, "layers": [], "total": "x"},
    "rows mixed": {"rows": [1, "a"]},
    "row accuracy text": {"rows": [{"method": "tight", "compression_rate": 2, "accuracy": "high"}]},
    "not an object": [1, 2],
    "neither": {"foo": 1},
    "layers not a list": {"report_version": 1, "layers": {"a": 1}},
}


@pytest.mark.parametrize("case", sorted(REPORT_CASES))
def test_malformed_report_json_is_a_one_line_error(work, capsys, case):
    (work / "bad.json").write_text(json.dumps(REPORT_CASES[case]))
    before = snapshot(work)
    code, err = run_cli(capsys, "report", "bad.json", "--html", "o.html")
    assert_one_line_error(code, err, "bad.json")
    assert snapshot(work) == before


@pytest.mark.parametrize(
    "text", ["", "\0\0", "method,compression_rate\n", "method,compression_rate\ntight,abc\n", "a\n1\n"]
)
def test_malformed_sweep_csv_is_a_one_line_error(work, capsys, text):
    (work / "bad.csv").write_text(text)
    code, err = run_cli(capsys, "report", "r.json", "--sweep", "bad.csv", "--html", "o.html")
    if text == "method,compression_rate\n":  # a header with no rows is an empty sweep: a page without it
        assert code == 0
        return
    assert_one_line_error(code, err, "bad.csv")


# ------------------------------------------------------------------ 9. a tile wider than the layer
@pytest.mark.parametrize("method", ["tight", "dense", "nm", "column-combining"])
def test_a_tile_wider_than_the_layer_is_narrowed_and_reported(work, capsys, method):
    np.save(work / "w.npy", sparse_matrix(288, 64))
    extra = ["--height", "2"] if method == "nm" else []
    args = ["pack", "w.npy", "--method", method, "--tile", "100000", *extra, "--iterations", "2000"]
    code, err = run_cli(capsys, *args, "--json", "t.json", "--out", "t.safetensors", "--quiet")
    assert code == 0, err
    layer = json.loads((work / "t.json").read_text())["layers"][0]
    assert layer["tile"] == 64 and layer["tile_narrowed_from"] == 100000
    assert layer["compression_rate"] > 0.5
    assert (work / "t.safetensors").stat().st_size < 1_000_000


# -------------------------------------------------------------- 10. Ctrl-C during start-up, fast start-up
def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(SRC)}


def test_sigint_during_startup_prints_one_line_and_exits_130(tmp_path):
    # `compress` imports torch while its parser is built: a window of seconds in which Ctrl-C lands.
    code = (
        "import sys; from tightcompress.cli.main import main; print('go', flush=True); "
        "sys.exit(main(['compress', '--checkpoint', 'x.pt', '--model', 'demo', '--out', 'o']))"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout.readline().strip() == b"go"
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.decode().strip() == "tightcompress compress: interrupted"
    assert list(tmp_path.iterdir()) == []


def test_version_imports_neither_torch_nor_numba():
    code = (
        "import sys; from tightcompress.cli.main import main\n"
        "try: main(['--version'])\nexcept SystemExit: pass\n"
        "print(sorted(m for m in ('torch', 'numba') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("[]"), out.stdout


@pytest.mark.parametrize(
    "command",
    ["", "pack", "unpack", "report", "export", "sweep", "simulate", "compress", "demo", "frontier"],
)
def test_help_does_not_import_torch(command):
    """Start-up and every `--help` (top level included) are fast: torch and numba are loaded only to train,
    pack or run."""
    argv = [command, "--help"] if command else ["--help"]
    code = (
        "import sys; from tightcompress.cli.main import main\n"
        f"try: main({argv!r})\nexcept SystemExit: pass\n"
        "print(sorted(m for m in ('torch', 'numba') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("[]"), out.stdout[-300:]


# ---------------------------------------------------- 11. unwritable outputs: checked first, all or none
UNWRITABLE_CASES = [
    ["pack", "m.npy", "--json", "/proc/tc-test/r.json"],
    ["pack", "m.npy", "--json", "ok.json", "--out", "/proc/tc-test.safetensors"],
    ["pack", "m.npy", "--out", "ok.safetensors", "--json", "/proc/r.json"],
    ["pack", "m.npy", "--json", "sub"],  # a folder
    ["pack", "m.npy", "--json", "m.npy/r.json"],  # below a file
    ["simulate", "m.npy", "--json", "/proc/r.json"],
    ["sweep", "m.npy", "--csv", "/proc/r.csv"],
    ["unpack", "p.safetensors", "/proc/o.npy"],
    ["report", "r.json", "--html", "/proc/o.html"],
    ["export", "p.safetensors", "--out-dir", "/proc/rtl"],
    ["export", "p.safetensors", "--out-dir", "m.npy"],
]


@pytest.mark.parametrize("command", UNWRITABLE_CASES, ids=lambda c: " ".join(c))
def test_unwritable_outputs_are_refused_before_the_work(work, capsys, command):
    (work / "sub").mkdir()
    before = snapshot(work)
    start = time.perf_counter()
    code, err = (
        run_cli(capsys, *command, "--iterations", "10000000")
        if command[0]
        in (
            "pack",
            "simulate",
        )
        else run_cli(capsys, *command)
    )
    assert_one_line_error(code, err)
    assert time.perf_counter() - start < 30  # refused before 10M annealing moves
    assert snapshot(work) == before


def test_output_group_writes_all_or_none(tmp_path):
    from tightcompress.utils.atomic import output_group

    (tmp_path / "a.txt").write_text("old a")
    with pytest.raises(OSError):
        with output_group() as stage:
            stage(tmp_path / "a.txt").write_text("new a")
            stage(tmp_path / "b.txt").write_text("new b")
            (tmp_path / "b.txt").mkdir()  # the second rename fails: a folder is in the way
    assert (tmp_path / "a.txt").read_text() == "old a"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]
    assert (tmp_path / "b.txt").is_dir()


# ------------------------------------------------------------------------- 12. modes follow the umask
@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_outputs_follow_the_umask_and_replaced_files_keep_their_mode(work, capsys, umask):
    old = os.umask(umask)
    try:
        (work / "keep.json").write_text("{}")
        os.chmod(work / "keep.json", 0o640)
        args = ["pack", "m.npy", "--iterations", "1000", "--quiet", "--out", "n.safetensors"]
        assert run_cli(capsys, *args, "--json", "keep.json")[0] == 0
        assert run_cli(capsys, "unpack", "n.safetensors", "n.npy")[0] == 0
        assert run_cli(capsys, "export", "n.safetensors", "--out-dir", "rtl")[0] == 0
    finally:
        os.umask(old)
    mode = lambda p: stat.S_IMODE((work / p).stat().st_mode)  # noqa: E731
    assert mode("keep.json") == 0o640
    assert mode("n.safetensors") == mode("n.npy") == 0o666 & ~umask
    assert mode("rtl") == mode("rtl/m") == 0o777 & ~umask
    assert mode("rtl/manifest.json") == mode("rtl/m/x.hex") == 0o666 & ~umask


# ------------------------------------------------- 13. numba cache folder unwritable: still imports and runs
def _unwritable_package_copy(source: Path, root: Path) -> Path:
    """A copy of the package where numba cannot cache beside the source: every `__pycache__` is a file
    (works for root too, who ignores permission bits)."""
    import shutil

    pkg = root / "tightcompress"
    shutil.copytree(source, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    for folder in [pkg, *(p for p in pkg.rglob("*") if p.is_dir())]:
        (folder / "__pycache__").write_text("not a folder\n")
    return root


@pytest.mark.slow  # compiles the column-combining kernels afresh in a child process (about 15 s)
@pytest.mark.parametrize("temp_writable", [True, False])
def test_unwritable_numba_cache_falls_back(tmp_path, temp_writable):
    root = _unwritable_package_copy(SRC / "tightcompress", tmp_path / "ro")
    (tmp_path / "file").write_text("x")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(root),
        "HOME": str(tmp_path / "file" / "home"),  # below a file: the user cache folder cannot be made
        "TMPDIR": str(tmp_path / "tmp"),
    }
    (tmp_path / "tmp").mkdir()
    no_temp = (
        "" if temp_writable else f"import tempfile; tempfile.tempdir = {str(tmp_path / 'file' / 't')!r}\n"
    )
    code = no_temp + (
        "import numpy as np, tightcompress as tc\n"
        "W = np.eye(16, dtype=np.float32)\n"
        "p = tc.pack(W, method='column-combining', tile=8)\n"
        "print('ok', np.array_equal(p.to_dense(), W))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ok True"
    notes = [line for line in out.stderr.splitlines() if line.strip()]
    if temp_writable:
        assert notes == [], notes
        assert any((tmp_path / "tmp" / f"tightcompress-numba-cache-{os.getuid()}").rglob("*.nbi"))
    else:
        assert len(notes) == 1 and "numba cache" in notes[0], notes


# -------------------------------------------------------------- 14. names that become paths are sanitised
ODD_NAMES = ["..", ".", "", ".hidden", "a b\\c", "x" * 300, "manifest.json", "ü-名前", "-"]


def test_layer_names_that_would_escape_or_break_a_path_are_sanitised(work, capsys):
    base = load_packed("p.safetensors")["m"]
    save_packed(work / "odd.safetensors", {name: base for name in ODD_NAMES})
    assert run_cli(capsys, "export", "odd.safetensors", "--out-dir", "rtl")[0] == 0
    from tightcompress.export.rtl import load_rtl

    layers = load_rtl(work / "rtl")
    assert sorted(layers) == sorted(ODD_NAMES)
    folders = [p for p in (work / "rtl").iterdir() if p.is_dir()]
    assert len(folders) == len(ODD_NAMES)
    assert all(len(p.name) <= 120 and not p.name.startswith(".") for p in folders)
    assert sorted(p.name for p in work.iterdir() if p.is_dir()) == ["rtl"]  # nothing written outside


def test_safe_name_table():
    from tightcompress.utils.paths import safe_name

    for name in [*ODD_NAMES, "/", "/etc/passwd", "../../x", "\0"]:
        safe = safe_name(name)
        assert safe and "/" not in safe and not safe.startswith(".") and len(safe.encode()) <= 120
    assert safe_name("conv1.weight") == "conv1.weight"


# ----------------------------------------------------- 15. all-zero / NaN layers and --skip-bad-layers
def _checkpoint(path: Path) -> None:
    from safetensors.numpy import save_file

    good = sparse_matrix(40, 24).T.copy()
    save_file(
        {
            "a.weight": good,
            "zero.weight": np.zeros((24, 40), np.float32),
            "nan.weight": np.where(good != 0, np.nan, 0).astype(np.float32),
            "inf.weight": np.where(good != 0, np.inf, 0).astype(np.float32),
            "b.weight": good * 2,
        },
        str(path),
    )


@pytest.mark.parametrize("command", ["pack", "simulate"])
def test_bad_layers_fail_by_default_and_are_skipped_on_request(work, capsys, command):
    _checkpoint(work / "ck.safetensors")
    before = snapshot(work)
    base = [command, "ck.safetensors", "--iterations", "2000", "--json", "o.json", "--quiet"]
    code, err = run_cli(capsys, *base)
    assert_one_line_error(code, err, "inf.weight", "--skip-bad-layers")  # safetensors sorts the names
    assert snapshot(work) == before
    assert run_cli(capsys, *base, "--skip-bad-layers")[0] == 0
    report = json.loads((work / "o.json").read_text())
    assert [layer["name"] for layer in report["layers"]] == ["a.weight", "b.weight"]
    skipped = {entry["name"]: entry["reason"] for entry in report["notes"]["skipped_layers"]}
    assert set(skipped) == {"zero.weight", "nan.weight", "inf.weight"}
    assert "all zeros" in skipped["zero.weight"] and "NaN" in skipped["nan.weight"]


def test_skip_bad_layers_with_nothing_left_is_an_error(work, capsys):
    np.save(work / "z.npy", np.zeros((8, 8), np.float32))
    code, err = run_cli(capsys, "pack", "z.npy", "--skip-bad-layers", "--json", "o.json")
    assert_one_line_error(code, err, "all zeros")
    assert not (work / "o.json").exists()


def test_checksums_cover_dtype_and_shape():
    a = np.arange(6, dtype=np.int32)
    assert tensor_sha256(a) != tensor_sha256(a.reshape(2, 3))
    assert tensor_sha256(a) != tensor_sha256(a.view(np.float32))
    assert set(_ARRAYS) >= {"values", "lanes"}


# ------------------------------------------------------ other options and failures of the machine: one line
OTHER_CASES = [
    (["export", "p.safetensors", "--out-dir", "rtl", "--vectors", "99999999999999"], "vectors"),
    (["export", "p.safetensors", "--out-dir", "rtl", "--vectors", "0"], "vectors"),
    (["export", "p.safetensors", "--out-dir", "rtl", "--seed", "-5"], "seed"),
    (["simulate", "m.npy", "--energy-table", "m.npy", "--json", "o.json"], "energy table"),
    (["simulate", "m.npy", "--energy-table", "p.safetensors", "--json", "o.json"], "energy table"),
]


@pytest.mark.parametrize(
    ("command", "word"), OTHER_CASES, ids=lambda c: " ".join(c) if isinstance(c, list) else c
)
def test_other_bad_options_are_one_line_errors(work, capsys, command, word):
    before = snapshot(work)
    code, err = run_cli(capsys, *command)
    assert_one_line_error(code, err, word)
    assert snapshot(work) == before


@pytest.mark.parametrize(
    "failure", [OSError(28, "No space left on device", "r2.json"), MemoryError()], ids=["disk-full", "memory"]
)
def test_a_failing_machine_is_one_line_and_leaves_nothing(work, capsys, monkeypatch, failure):
    import tightcompress.cli.pack as pack_cmd

    def fail(*_args, **_kwargs):
        raise failure

    monkeypatch.setattr(pack_cmd, "write_json_atomic", fail)
    before = snapshot(work)
    code, err = run_cli(capsys, "pack", "m.npy", "--iterations", "500", "--json", "r2.json", "--out", "o.st")
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and "error:" in lines[0], err
    assert snapshot(work) == before
