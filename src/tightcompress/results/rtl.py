"""`tightcompress export --out-dir DIR`: DIR/manifest.json, every hex file of an RTL testbench."""

from __future__ import annotations

from typing import Literal

from tightcompress.results.base import Result, field, optional


class ManifestArray(Result):
    """The PE array the export is for (`export --array`, default 32x32)."""

    rows: int = field("PEs", "array rows R")
    cols: int = field("PEs", "array columns C")


class ManifestHdl(Result):
    """Present with `export --hdl`: the Verilog written (export/hdl.py)."""

    modules: list[str] = field("file", "the shared Verilog modules, one per file")
    testbench: str = field("file", "each layer folder's testbench")


class HexFields(Result):
    """Bit widths of the hex fields."""

    weight_bits: int = optional("bits", "weight value bits (8, or 4 for subwords)")
    weight_signed: bool = optional("-", "weights are two's complement")
    lane_bits: int = optional("bits", "lane index bits L")
    shift_bits: int = optional("bits", "subword shift bit (0 or 1)")
    height_bits: int = optional("bits", "bits of a group height word")
    feeder_bits: int = optional("bits", "bits of a feeder word")
    column_bits: int = optional("bits", "bits of a column word")
    group_bits: int = optional("bits", "bits of a groups.hex word")
    unused_column: str = optional("hex", "the column word marking an unused column")


class ManifestVectors(Result):
    """The test vectors."""

    m: int = optional("vectors", "test input vectors")
    x: str = optional("file", "int8 activations, M*K words")
    x_bits: int = optional("bits", "activation word bits")
    y: str = optional("file", "int32 expected outputs, M*N words")
    y_bits: int = optional("bits", "output word bits")
    order: str = optional("-", "element order: row-major")


class TileFiles(Result):
    """The tile's hex files."""

    weights: str = optional("file", "H_t words of C*w bits: the slot weights of each physical row")
    lanes: str = optional("file", "H_t words of C*L bits: each slot's lane index")
    heights: str = optional("file", "n_groups words: physical rows of each group in this tile")
    feeder: str = optional("file", "K words: the input feature fed at each permuted position")
    columns: str = optional("file", "C words: the output column of each array column (all ones = unused)")
    shifts: str = optional("file", "subword layers: H_t words of C bits, 1 = shift the 4-bit value left by 4")


class ManifestTile(Result):
    """One tile."""

    tile: int = optional("-", "tile index")
    rows: int = optional("rows", "physical rows H_t")
    files: TileFiles = optional("-", "the tile's hex files")


class ManifestLayer(Result):
    """One layer."""

    name: str = field("-", "layer name")
    folder: str = field("-", "sub-folder of DIR holding its files")
    method: str = field("-", "packing method")
    K: int = field("rows", "reduction size")
    N: int = field("columns", "output channels")
    input_features: int = optional("features", "inputs per test vector (= K)")
    group: int = field("rows", "lane width G")
    tile: int = field("columns", "array columns C")
    n_tiles: int = field("tiles", "tiles")
    n_groups: int = optional("groups", "row groups")
    height_cap: int | None = optional("slots", "height cap (null: lossless)")
    group_offsets: list[int] = optional("rows", "start row of each group, then K")
    groups: str = optional("file", "group_offsets as n_groups + 1 hex words")
    testbench: str = optional("file", "with --hdl: the layer's Verilog testbench")
    scales: list[float] = optional("w per LSB", "per-output-column int8 dequantization scales")
    fields: HexFields = field("-", "bit widths of the hex fields")
    vectors: ManifestVectors = optional("-", "the test vectors")
    tiles: list[ManifestTile] = field("-", "one entry per tile")


class RtlManifest(Result):
    """`tightcompress export --out-dir DIR`: DIR/manifest.json, the description of every hex file written
    for an RTL testbench (layout in export/rtl.py)."""

    schema_name = "rtl-manifest"

    format: Literal["tightcompress.rtl"] = field("-", "always `tightcompress.rtl`")
    format_version: Literal[1] = field("-", "export format version; readers refuse others")
    word_layout: str = optional("-", "how words and multi-column fields are laid out in the hex files")
    files: list[str] = optional("file", "every file this export wrote, relative to DIR")
    array: ManifestArray = field("-", "the PE array the export is for (`export --array`, default 32x32)")
    hdl: ManifestHdl = optional("-", "present with `export --hdl`: the Verilog written (export/hdl.py)")
    layers: list[ManifestLayer] = field("-", "one entry per exported layer")
