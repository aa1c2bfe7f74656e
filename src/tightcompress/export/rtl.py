"""Hand-off to hardware: packed layers as `$readmemh` hex files, a JSON manifest, and test vectors.

Layout of `DIR` (one sub-folder per layer, named after the layer; `manifest.json` describes everything):

    manifest.json
    LAYER/tile000_weights.hex   H_t words of C*8 bits: the int8 slot weights of each physical row
    LAYER/tile000_lanes.hex     H_t words of C*L bits: each slot's lane index (L = max(1, ceil(log2 G)))
    LAYER/tile000_shifts.hex    H_t words of C bits: subword layers only, 1 = shift the 4-bit value left by 4
    LAYER/tile000_heights.hex   n_groups words: physical rows of each group in this tile
    LAYER/tile000_feeder.hex    K words: the input feature fed at each permuted position (`row_perm[t]`)
    LAYER/tile000_columns.hex   C words: the output column of each array column, all ones = unused
    LAYER/groups.hex            n_groups + 1 words: where each group starts in the permuted order, then K
    LAYER/x.hex                 M*K words of 8 bits: int8 test activations, row-major (m, k)
    LAYER/y.hex                 M*N words of 32 bits: int32 expected outputs, row-major (m, n)

Every word is one line of hex digits (two's complement for signed fields). In a multi-column word, array
column `c` sits at bits `[w*c + w-1 : w*c]`: column 0 is the least significant (rightmost) field.

Weights are quantized with the project's per-column int8 scheme (`tightcompress.quant`, via
`tightcompress.hw.bitexact.quantize_packed`); the expected outputs come from the bit-exact array simulation
(`tightcompress.hw.bitexact.run_packed_int8`) and are checked against an exact int64 matmul of the
quantized kept matrix before anything is written. Subword layers (`method == "tight-subword"`) already
hold signed 4-bit values; their expected outputs are the exact matmul with the recomposed int8 matrix.
A weight that quantizes to 0 keeps its lane index: its slot then multiplies by 0.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tightcompress.errors import TightCompressError
from tightcompress.format.packed import PackedMatrix
from tightcompress.prune.subword_pack import SUBWORD_METHOD
from tightcompress.quant import column_scales
from tightcompress.results import RtlManifest
from tightcompress.utils.atomic import new_dir_mode
from tightcompress.utils.paths import safe_name

RTL_FORMAT = "tightcompress.rtl"
RTL_VERSION = 1
DEFAULT_ARRAY = (32, 32)  # PE array rows x columns, as `simulate --array`
MAX_VECTORS = 65536  # test vectors per layer: enough for any testbench, bounded so x.hex stays writable


@dataclass
class RtlLayer:
    """One exported layer: the packed layer with its int8 slot values, the scales and the test vectors."""

    packed: PackedMatrix  # values are the int8 (or 4-bit) slot weights
    scales: np.ndarray  # (N,) float64 per-column scales (1.0 for subword layers)
    shifts: np.ndarray | None  # (total_rows, C) uint8 shift of each slot, subword layers only
    x: np.ndarray  # (M, K) int8
    y: np.ndarray  # (M, N) int32


# --------------------------------------------------------------------------------------------- hex words
def hex_digits(bits: int) -> int:
    """Hex digits of a `bits`-wide word."""
    return max(1, -(-bits // 4))


def pack_words(fields: np.ndarray, width: int) -> list[str]:
    """Rows of `(rows, C)` fields (two's complement, `width` bits each) -> one hex word per row, column 0
    least significant."""
    fields = np.asarray(fields, dtype=np.int64) & ((1 << width) - 1)
    digits = hex_digits(width * fields.shape[1])
    words = []
    for row in fields:
        value = 0
        for c in range(len(row) - 1, -1, -1):
            value = (value << width) | int(row[c])
        words.append(format(value, f"0{digits}x"))
    return words


def unpack_words(words: list[str], columns: int, width: int, signed: bool) -> np.ndarray:
    """Inverse of `pack_words`: `(rows, columns)` int64 fields."""
    mask = (1 << width) - 1
    out = np.zeros((len(words), columns), dtype=np.int64)
    for r, word in enumerate(words):
        value = int(word, 16)
        for c in range(columns):
            out[r, c] = (value >> (width * c)) & mask
    if signed:
        out = np.where(out >= 1 << (width - 1), out - (1 << width), out)
    return out


def _write_hex(path: Path, words: list[str]) -> None:
    path.write_text("".join(word + "\n" for word in words))


def _read_hex(path: Path) -> list[str]:
    if not path.is_file():
        raise TightCompressError(f"missing hex file {path}")
    words = []
    for line in path.read_text().splitlines():
        line = line.split("//", 1)[0].strip()
        if line:
            words.append(line)
    return words


# ----------------------------------------------------------------------------------------- quantization
def _recomposed_subword_int8(packed: PackedMatrix) -> np.ndarray:
    """Effective int8 `K/2 x N` matrix of a subword layer (`prune.subword.recompose` of the kept subwords)."""
    from tightcompress.prune.subword import recompose

    return recompose(packed.to_dense().astype(np.int8)).astype(np.int64)


def quantized_layer(packed: PackedMatrix, m: int, seed: int) -> RtlLayer:
    """Quantize a packed layer, draw `m` int8 input vectors and compute the int32 outputs bit-exactly."""
    rng = np.random.default_rng(seed)
    if packed.method == SUBWORD_METHOD:
        from tightcompress.prune.subword_pack import slot_shifts

        q_values = np.asarray(packed.values).astype(np.int8)
        shifts = slot_shifts(packed)
        scales = np.ones(packed.N)
        k_in = packed.K // 2
        x = rng.integers(-128, 128, size=(m, k_in), dtype=np.int8)
        w_int = _recomposed_subword_int8(packed)
        y = (x.astype(np.int64) @ w_int).astype(np.int32)
        q_packed = _with_values(packed, q_values)
        return RtlLayer(q_packed, scales, shifts, x, y)
    from tightcompress.hw.bitexact import quantize_packed, run_packed_int8

    q_values, scales = quantize_packed(packed)
    x = rng.integers(-128, 128, size=(m, packed.K), dtype=np.int8)
    y = run_packed_int8(packed, x, q_values)
    # Independent check: the exact integer matmul of the quantized kept matrix must agree.
    q_packed = _with_values(packed, q_values)
    reference = (x.astype(np.int64) @ q_packed.to_dense().astype(np.int64)).astype(np.int32)
    if not np.array_equal(y, reference):
        raise TightCompressError(
            f"{packed.info.get('name', 'layer')}: bit-exact simulation != integer matmul"
        )
    if not np.allclose(scales, column_scales(packed.to_dense())):
        raise TightCompressError("quantization scales disagree with tightcompress.quant")
    return RtlLayer(q_packed, scales, None, x, y)


def _with_values(packed: PackedMatrix, values: np.ndarray) -> PackedMatrix:
    return PackedMatrix(
        K=packed.K,
        N=packed.N,
        group=packed.group,
        tile=packed.tile,
        method=packed.method,
        height_cap=packed.height_cap,
        group_offsets=packed.group_offsets.copy(),
        row_perm=packed.row_perm.copy(),
        col_perm=packed.col_perm.copy(),
        heights=packed.heights.copy(),
        values=np.asarray(values),
        lanes=packed.lanes.copy(),
        info=dict(packed.info),
    )


# ----------------------------------------------------------------------------------------------- export
def _bits_for(max_value: int) -> int:
    return max(1, int(max_value).bit_length())


def write_layer(layer: RtlLayer, folder: Path) -> dict[str, Any]:
    """Write one layer's hex files into `folder`; its manifest entry."""
    packed = layer.packed
    folder.mkdir(parents=True, exist_ok=False)
    C, T = packed.tile, packed.n_tiles
    subword = layer.shifts is not None
    weight_bits = 4 if subword else 8
    lane_bits = max(1, packed.index_bits)
    height_bits = _bits_for(int(packed.heights.max(initial=0)))
    feeder_bits = _bits_for(packed.K - 1)
    column_bits = _bits_for(packed.N)  # all ones (>= N) marks an unused column
    offsets = packed.tile_row_offsets
    tiles = []
    for t in range(T):
        rows = slice(int(offsets[t]), int(offsets[t + 1]))
        files = {
            "weights": f"tile{t:03d}_weights.hex",
            "lanes": f"tile{t:03d}_lanes.hex",
            "heights": f"tile{t:03d}_heights.hex",
            "feeder": f"tile{t:03d}_feeder.hex",
            "columns": f"tile{t:03d}_columns.hex",
        }
        _write_hex(folder / files["weights"], pack_words(packed.values[rows], weight_bits))
        _write_hex(folder / files["lanes"], pack_words(packed.lanes[rows], lane_bits))
        _write_hex(folder / files["heights"], pack_words(packed.heights[:, t : t + 1], height_bits))
        _write_hex(folder / files["feeder"], pack_words(packed.row_perm[t][:, None], feeder_bits))
        cols = packed.col_perm[t * C : (t + 1) * C]
        _write_hex(folder / files["columns"], pack_words(cols[:, None], column_bits))
        if subword:
            files["shifts"] = f"tile{t:03d}_shifts.hex"
            _write_hex(folder / files["shifts"], pack_words((layer.shifts[rows] > 0).astype(np.int64), 1))
        tiles.append({"tile": t, "rows": int(offsets[t + 1] - offsets[t]), "files": files})
    _write_hex(folder / "groups.hex", pack_words(packed.group_offsets[:, None], _bits_for(packed.K)))
    _write_hex(folder / "x.hex", pack_words(layer.x.reshape(-1, 1), 8))
    _write_hex(folder / "y.hex", pack_words(layer.y.reshape(-1, 1), 32))
    return {
        "name": packed.info.get("name", folder.name),
        "folder": folder.name,
        "method": packed.method,
        "K": packed.K,
        "N": packed.N,
        "input_features": int(layer.x.shape[1]),
        "group": packed.group,
        "tile": C,
        "n_tiles": T,
        "n_groups": packed.n_groups,
        "height_cap": packed.height_cap,
        "group_offsets": [int(v) for v in packed.group_offsets],
        "groups": "groups.hex",
        "fields": {
            "weight_bits": weight_bits,
            "weight_signed": True,
            "lane_bits": lane_bits,
            "shift_bits": 1 if subword else 0,
            "height_bits": height_bits,
            "feeder_bits": feeder_bits,
            "column_bits": column_bits,
            "group_bits": _bits_for(packed.K),
            "unused_column": format((1 << column_bits) - 1, "x"),
        },
        "scales": [float(s) for s in layer.scales],
        "vectors": {
            "m": int(layer.x.shape[0]),
            "x": "x.hex",
            "x_bits": 8,
            "y": "y.hex",
            "y_bits": 32,
            "order": "row-major",
        },
        "tiles": tiles,
    }


def export_rtl(
    layers: Mapping[str, PackedMatrix],
    out_dir: str | os.PathLike[str],
    *,
    m: int = 4,
    seed: int = 0,
    array: tuple[int, int] | str = DEFAULT_ARRAY,
    hdl: bool = False,
) -> dict[str, Any]:
    """Export packed layers to `out_dir`; returns the manifest.

    `array` (`R x C`) is the PE array the layers are meant for; the manifest records it, and with `hdl`
    the Verilog modules (`tightcompress.export.hdl`) and one testbench per layer for that array are
    written too.

    `out_dir` must not exist (it is then created whole or not at all), be empty, or be a previous export
    (it holds this format's `manifest.json`). Into a previous export only the files that export wrote (its
    manifest lists them) are replaced or removed; any other file there is left as it is, and a new file
    that would overwrite one is refused before the folder is touched. Folders get the user's umask.
    """
    if not 1 <= m <= MAX_VECTORS:
        raise TightCompressError(f"test vectors per layer must be in [1, {MAX_VECTORS}], got {m}")
    if seed < 0:
        raise TightCompressError(f"the seed must be >= 0, got {seed}")
    from tightcompress.hw.cycles import parse_array

    rows, cols = parse_array(array)
    out_dir = Path(out_dir)
    previous = _previous_export_files(out_dir)
    quantized = {
        name: quantized_layer(packed, m, seed + i) for i, (name, packed) in enumerate(layers.items())
    }
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        os.chmod(staging, new_dir_mode())
        entries, used = [], {MANIFEST}
        for name, layer in quantized.items():
            folder = safe_name(name)
            while folder in used:
                folder += "_"
            used.add(folder)
            layer.packed.info["name"] = name
            entries.append(write_layer(layer, staging / folder))
        extra: dict[str, Any] = {}
        if hdl:
            from tightcompress.export import hdl as verilog

            extra["hdl"] = {"modules": verilog.write_modules(staging), "testbench": verilog.TESTBENCH}
            for entry in entries:
                text = verilog.testbench(entry, (rows, cols))
                (staging / entry["folder"] / verilog.TESTBENCH).write_text(text)
                entry["testbench"] = verilog.TESTBENCH
        written = sorted(str(path.relative_to(staging)) for path in staging.rglob("*") if path.is_file())
        manifest = {
            "format": RTL_FORMAT,
            "format_version": RTL_VERSION,
            "word_layout": "one word per line, hex; column c of a multi-column word at bits [w*c+w-1 : w*c]",
            "array": {"rows": rows, "cols": cols},
            **extra,
            "layers": entries,
            "files": written,
        }
        (staging / MANIFEST).write_text(json.dumps(RtlManifest.dump(manifest), indent=2) + "\n")
        if previous is None:
            os.replace(staging, out_dir)
        else:
            _merge_into(staging, out_dir, written, previous)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


MANIFEST = "manifest.json"


def _previous_export_files(folder: Path) -> set[str] | None:
    """None when `folder` does not exist; else the files a previous export wrote there (empty for an empty
    folder). A folder that is neither is refused."""
    if not folder.exists() and not folder.is_symlink():
        return None
    if not folder.is_dir():
        raise TightCompressError(f"{folder} exists and is not a folder; choose a new folder")
    if not any(folder.iterdir()):
        return set()
    try:
        manifest = read_manifest(folder)
        if "files" in manifest:
            files = {str(f) for f in manifest["files"]}
        else:  # an export from before the manifest listed its files
            files = set()
            for entry in manifest["layers"]:
                names = [entry["vectors"]["x"], entry["vectors"]["y"]]
                names += [f for tile in entry["tiles"] for f in tile["files"].values()]
                files.update(f"{entry['folder']}/{f}" for f in names)
    except (TightCompressError, KeyError, TypeError, AttributeError):
        raise TightCompressError(
            f"{folder} exists and is not a previous RTL export; choose a new folder"
        ) from None
    # Only plain relative names inside the folder: a damaged manifest must not point elsewhere.
    return {f for f in files if f and not Path(f).is_absolute() and ".." not in Path(f).parts} | {MANIFEST}


def _through_link(out_dir: Path, rel: str) -> Path | None:
    """The first path from `out_dir` down to `out_dir / rel` (itself included) that is a symlink, else
    None: a link there would make a write or a removal land outside the export folder."""
    path = out_dir
    for part in Path(rel).parts:
        path = path / part
        if path.is_symlink():
            return path
    return None


def _merge_into(staging: Path, out_dir: Path, written: list[str], previous: set[str]) -> None:
    """Move the new export's files into a previous export, replacing or removing only what it wrote.

    Nothing is written or removed through a symlink (a link the previous export's manifest lists, or a link
    standing for one of its folders): such a file is refused before anything moves, a stale one is left."""
    for rel in written:
        target = out_dir / rel
        link = _through_link(out_dir, rel)
        if link is not None:
            raise TightCompressError(
                f"{link} is a symbolic link in the previous export; not followed (remove it or choose a new "
                "folder)"
            )
        parts = Path(rel).parts
        for depth in range(1, len(parts)):
            folder = out_dir.joinpath(*parts[:depth])
            if folder.exists() and not folder.is_dir():
                raise TightCompressError(f"{folder} is a file the previous export did not write")
        if (target.exists() or target.is_symlink()) and rel not in previous:
            raise TightCompressError(f"{target} was not written by the previous export; not replaced")
    for rel in written:
        target = out_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / rel, target)
    for rel in sorted(previous - set(written) - {MANIFEST}):
        stale = out_dir / rel
        if _through_link(out_dir, rel) is None and stale.is_file():
            stale.unlink()
            if stale.parent != out_dir:
                with contextlib.suppress(OSError):  # remove the layer folder too once nothing else is in it
                    stale.parent.rmdir()
    os.replace(staging / MANIFEST, out_dir / MANIFEST)


# ------------------------------------------------------------------------------------------------ parse
def read_manifest(out_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest.json of an export, checked: readable, this export format and version, and every field
    of the right type (through `results.RtlManifest`: a wrong one is one line naming it)."""
    path = Path(out_dir) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except RecursionError:
        raise TightCompressError(f"{out_dir}: manifest.json is nested too deeply to read") from None
    except (OSError, ValueError) as exc:
        raise TightCompressError(f"{out_dir}: no readable manifest.json ({exc})") from None
    if not isinstance(manifest, dict):
        raise TightCompressError(f"{path}: expected a JSON object, got {type(manifest).__name__}")
    if manifest.get("format") != RTL_FORMAT or manifest.get("format_version") != RTL_VERSION:
        raise TightCompressError(
            f"{out_dir}: RTL export version {manifest.get('format_version')}, this reads {RTL_VERSION}"
        )
    RtlManifest.from_data(manifest, path)
    return manifest


def load_rtl(out_dir: str | os.PathLike[str]) -> dict[str, RtlLayer]:
    """Parse an export back: every layer's packed arrays, int8 slot values, scales and test vectors."""
    out_dir = Path(out_dir)
    manifest = read_manifest(out_dir)
    layers = {}
    for entry in manifest["layers"]:
        folder = out_dir / entry["folder"]
        f = entry["fields"]
        C, T, K, N = entry["tile"], entry["n_tiles"], entry["K"], entry["N"]
        if len(entry["tiles"]) != T:
            raise TightCompressError(
                f"{out_dir}: layer {entry['name']} lists {len(entry['tiles'])} of {T} tiles"
            )
        values, lanes, shifts, heights, row_perm, col_perm = [], [], [], [], [], []
        for tile in entry["tiles"]:
            files = tile["files"]
            values.append(unpack_words(_read_hex(folder / files["weights"]), C, f["weight_bits"], True))
            lanes.append(unpack_words(_read_hex(folder / files["lanes"]), C, f["lane_bits"], False))
            if "shifts" in files:
                shifts.append(unpack_words(_read_hex(folder / files["shifts"]), C, 1, False) * 4)
            heights.append(
                unpack_words(_read_hex(folder / files["heights"]), 1, f["height_bits"], False)[:, 0]
            )
            row_perm.append(
                unpack_words(_read_hex(folder / files["feeder"]), 1, f["feeder_bits"], False)[:, 0]
            )
            cols = unpack_words(_read_hex(folder / files["columns"]), 1, f["column_bits"], False)[:, 0]
            col_perm.append(np.where(cols == (1 << f["column_bits"]) - 1, -1, cols))
        packed = PackedMatrix(
            K=K,
            N=N,
            group=entry["group"],
            tile=C,
            method=entry["method"],
            height_cap=entry["height_cap"],
            group_offsets=np.asarray(entry["group_offsets"], dtype=np.int64),
            row_perm=np.stack(row_perm),
            col_perm=np.concatenate(col_perm),
            heights=np.stack(heights, axis=1),
            values=np.concatenate(values).astype(np.int8),
            lanes=np.concatenate(lanes),
            info={"name": entry["name"]},
        )
        vec = entry["vectors"]
        m, k_in = vec["m"], entry["input_features"]
        x = unpack_words(_read_hex(folder / vec["x"]), 1, 8, True).reshape(m, k_in).astype(np.int8)
        y = unpack_words(_read_hex(folder / vec["y"]), 1, 32, True).reshape(m, N).astype(np.int32)
        layers[entry["name"]] = RtlLayer(
            packed,
            np.asarray(entry["scales"], dtype=np.float64),
            np.concatenate(shifts).astype(np.uint8) if shifts else None,
            x,
            y,
        )
    return layers
