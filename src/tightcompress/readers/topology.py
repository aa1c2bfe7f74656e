"""SCALE-Sim topology CSVs: read them, write them, and build them from the zoo's layer shapes.

A SCALE-Sim v3 convolution topology has a header row, then one row per layer:

    Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,

The trailing comma matters to SCALE-Sim (its parser drops the last cell of every row), so rows are written
with it; the reader accepts rows with or without it. The IFMAP size is the *padded* input: SCALE-Sim does
not pad, a side of the output is `ceil((H - F + S) / S)`. PyTorch instead rounds down (`floor((H_pad -
F) / S) + 1`) and never reads the last `(H_pad - F) mod S` rows, so rows written here give the IFMAP the
convolution actually reads, `(out - 1) * S + F` (229 for ResNet's 7 x 7 / 2 stem on 224 + 2 * 3), for
which both formulas give the same output. The layer's GEMM is then `M = out_h * out_w`
input vectors (output pixels of one image), `K = F_h * F_w * Channels` and `N = Num Filter`, the reshape
convention of `tightcompress.readers.matrices.weight_to_matrix`. A linear layer is a 1 x 1 IFMAP with a 1 x 1
filter, `Channels` inputs and `Num Filter` outputs (M = 1).

SCALE-Sim's GEMM form (header `Layer, M, N, K,`, its `-i gemm` mode) is read too. A GEMM of `M` vectors
that has no convolution shape (a conv of unknown geometry, a batch of several images) is written in the
convolution form the way SCALE-Sim converts its GEMM inputs: IFMAP `M x K`, filter `1 x K`, one channel,
`N` filters, stride 1, which SCALE-Sim runs as exactly that `M x K @ K x N` GEMM.

Rows are matched to layers by name: the layer's name, or the same name without a trailing `.weight` (the
state-dict key `layer1.0.conv1.weight` matches a row `layer1.0.conv1`). SCALE-Sim treats a name containing
`DP` as a depthwise layer (one single-channel layer per channel): such rows are read as `depthwise` and
are not dense GEMMs; the writer refuses a dense layer whose name contains `DP`.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tightcompress.errors import TightCompressError, missing_file
from tightcompress.utils.atomic import atomic_path

HEADER = (
    "Layer name",
    "IFMAP Height",
    "IFMAP Width",
    "Filter Height",
    "Filter Width",
    "Channels",
    "Num Filter",
    "Strides",
)
MAX_SIZE = 2**31 - 1  # a size SCALE-Sim (and any array) can index; 1e29 channels is a typo
_FIELDS = ("ifmap_height", "ifmap_width", "filter_height", "filter_width", "channels", "filters", "stride")


@dataclass(frozen=True)
class TopologyLayer:
    """One row of a SCALE-Sim convolution topology (sizes in pixels, IFMAP padded)."""

    name: str
    ifmap_height: int
    ifmap_width: int
    filter_height: int
    filter_width: int
    channels: int
    filters: int
    stride: int = 1

    def __post_init__(self) -> None:
        if not self.name or "," in self.name or self.name != self.name.strip():
            raise TightCompressError(f"topology layer name {self.name!r} must be non-empty, without commas")
        for key in _FIELDS:
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_SIZE:
                raise TightCompressError(
                    f"topology layer {self.name}: {key} must be an integer >= 1 and <= 2**31 - 1, got {value}"
                )
        if self.filter_height > self.ifmap_height or self.filter_width > self.ifmap_width:
            raise TightCompressError(
                f"topology layer {self.name}: filter {self.filter_height}x{self.filter_width} is larger "
                f"than the IFMAP {self.ifmap_height}x{self.ifmap_width}"
            )

    @classmethod
    def from_gemm(cls, name: str, m: int, k: int, n: int) -> TopologyLayer:
        """The convolution row SCALE-Sim makes of a GEMM `(M x K) @ (K x N)`: IFMAP M x K, filter 1 x K."""
        return cls(name, m, k, 1, k, 1, n, 1)

    @property
    def ofmap_height(self) -> int:
        """Output rows, as SCALE-Sim computes them: `ceil((H - F + S) / S)`."""
        return math.ceil((self.ifmap_height - self.filter_height + self.stride) / self.stride)

    @property
    def ofmap_width(self) -> int:
        """Output columns: `ceil((W - F + S) / S)`."""
        return math.ceil((self.ifmap_width - self.filter_width + self.stride) / self.stride)

    @property
    def m(self) -> int:
        """Input vectors of the GEMM: output pixels of one image."""
        return self.ofmap_height * self.ofmap_width

    @property
    def k(self) -> int:
        """Rows of the `K x N` weight matrix: `F_h * F_w * Channels`."""
        return self.filter_height * self.filter_width * self.channels

    @property
    def n(self) -> int:
        """Columns of the weight matrix: the filters (output channels)."""
        return self.filters

    @property
    def depthwise(self) -> bool:
        """SCALE-Sim runs a row whose name contains `DP` as a depthwise convolution."""
        return "DP" in self.name

    def row(self) -> list[str]:
        """The CSV cells of this row (without the trailing empty cell)."""
        return [self.name, *(str(getattr(self, key)) for key in _FIELDS)]


def conv_layer(
    name: str, ofmap: tuple[int, int], kernel: tuple[int, int], channels: int, filters: int, stride: int
) -> TopologyLayer:
    """The row of a convolution with output `ofmap` (height, width): IFMAP = the padded pixels it reads."""
    (out_h, out_w), (kh, kw) = ofmap, kernel
    return TopologyLayer(
        name, (out_h - 1) * stride + kh, (out_w - 1) * stride + kw, kh, kw, channels, filters, stride
    )


def topology_name(layer_name: str) -> str:
    """The row name of a layer: its name without `.weight` (`conv1.weight` -> `conv1`, a grouped conv's
    `conv2.weight[1]` -> `conv2[1]`)."""
    stem, bracket, group = layer_name.partition("[")
    stem = stem[: -len(".weight")] if stem.endswith(".weight") else stem
    return f"{stem}{bracket}{group}"


def read_topology(path: str | os.PathLike[str]) -> list[TopologyLayer]:
    """The rows of a SCALE-Sim topology CSV (convolution or GEMM form), in file order."""
    path = Path(path)
    if not path.is_file():
        raise missing_file("topology file", path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise TightCompressError(f"{path}: not a readable topology CSV ({exc})") from None
    rows = []
    for line, cells in enumerate(csv.reader(io.StringIO(text)), start=1):
        cells = [cell.strip() for cell in cells]
        while cells and cells[-1] == "":
            cells.pop()
        if cells:
            rows.append((line, cells))
    if not rows:
        raise TightCompressError(f"{path}: empty topology")
    (_, header), body = rows[0], rows[1:]
    if len(header) > 1 and all(_is_int(cell) for cell in header[1:]):
        raise TightCompressError(f"{path}: the first row must be the header (SCALE-Sim skips it)")
    gemm = [cell.lower() for cell in header[1:4]] == ["m", "n", "k"]
    layers: list[TopologyLayer] = []
    for line, cells in body:
        layers.append(_parse_row(path, line, cells, gemm))
    if not layers:
        raise TightCompressError(f"{path}: no layer rows after the header")
    seen: set[str] = set()
    for layer in layers:
        if layer.name in seen:
            raise TightCompressError(f"{path}: layer name {layer.name!r} appears twice")
        seen.add(layer.name)
    return layers


def _parse_row(path: Path, line: int, cells: list[str], gemm: bool) -> TopologyLayer:
    where = f"{path}:{line}"
    numbers = 3 if gemm else 7
    extra = cells[1 + numbers :]
    if len(cells) < 1 + numbers or len(extra) > 1:
        form = "name, M, N, K" if gemm else ", ".join(HEADER)
        raise TightCompressError(f"{where}: expected {form} (got {len(cells)} cells)")
    if extra and extra[0].replace(" ", "") != "1:1":
        raise TightCompressError(
            f"{where}: SCALE-Sim N:M sparsity ratio {extra[0]!r} is not supported (only 1:1, dense)"
        )
    values = []
    for cell in cells[1 : 1 + numbers]:
        if not _is_int(cell):
            raise TightCompressError(f"{where}: {cell!r} is not an integer")
        values.append(int(cell))
    try:
        if gemm:
            m, n, k = values
            return TopologyLayer.from_gemm(cells[0], m, k, n)
        return TopologyLayer(cells[0], *values)
    except TightCompressError as exc:
        raise TightCompressError(f"{where}: {exc}") from None


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def format_topology(layers: Iterable[TopologyLayer]) -> str:
    """The CSV text of a topology, in the form SCALE-Sim parses (a trailing comma on every row)."""
    lines = [", ".join(HEADER) + ","]
    for layer in layers:
        if layer.depthwise:
            raise TightCompressError(
                f"layer name {layer.name!r} contains 'DP', which SCALE-Sim runs as a depthwise layer"
            )
        lines.append(", ".join(layer.row()) + ",")
    return "\n".join(lines) + "\n"


def write_topology(path: str | os.PathLike[str], layers: Iterable[TopologyLayer]) -> None:
    """Write a SCALE-Sim convolution topology CSV atomically."""
    text = format_topology(layers)
    with atomic_path(path, suffix=".csv") as tmp:
        tmp.write_text(text)


def match_topology(
    shapes: Mapping[str, tuple[int, int]], topology: Sequence[TopologyLayer], source: str = "topology"
) -> dict[str, TopologyLayer]:
    """The row of each layer of `{name: (K, N)}`, matched by name; one-line errors for missing/misfit rows."""
    by_name = {layer.name: layer for layer in topology}
    matched: dict[str, TopologyLayer] = {}
    missing = []
    for name in shapes:
        row = by_name.get(name) or by_name.get(topology_name(name))
        if row is None:
            missing.append(name)
        else:
            matched[name] = row
    if missing:
        raise TightCompressError(
            f"{source}: no row for {len(missing)} layer(s) (matched by name, '.weight' optional): "
            + ", ".join(missing)
        )
    for name, (k, n) in shapes.items():
        row = matched[name]
        if (row.k, row.n) != (int(k), int(n)):
            raise TightCompressError(
                f"{source}: row {row.name} is a {row.k} x {row.n} GEMM (K x N), layer {name} is {k} x {n}"
            )
    return matched


def zoo_topology(model: str, kinds: str = "all") -> list[TopologyLayer]:
    """The topology of a zoo model's packable layers at its input size (224 x 224; 28 x 28 for the demo)."""
    from tightcompress.zoo import zoo_layers

    rows = []
    for layer in zoo_layers(model, kinds):
        if not layer.packable:
            continue
        name = topology_name(layer.name)
        if layer.kind == "linear":
            rows.append(TopologyLayer(name, 1, 1, 1, 1, layer.shape[1], layer.shape[0], 1))
            continue
        _, c_in, kh, kw = layer.shape
        side = math.isqrt(layer.out_pixels)
        rows.append(conv_layer(name, (side, side), (kh, kw), c_in, layer.shape[0], layer.stride))
    return rows
