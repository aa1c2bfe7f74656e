"""`tightcompress sweep --csv`: one row per operating point (and per layer)."""

from __future__ import annotations

from tightcompress.results.base import Result, field, optional


class SweepRow(Result):
    """`tightcompress sweep --csv`: one CSV row per operating point (layer `TOTAL`) and, with --per-layer,
    per layer. Columns in this order; CSV cells are text, shown here with the type they parse to (empty =
    none)."""

    schema_name = "sweep-row"

    method: str = field("-", "packing method")
    group: int | None = optional("rows", "lane width G")
    height: int | str | None = optional("slots", "height cap, or auto")
    tile: int = optional("columns", "array columns C per tile")
    sparsity: float | None = optional(
        "fraction 0-1", "smallest-magnitude fraction zeroed first (empty: as given)"
    )
    layer: str = field("-", "`TOTAL` for the whole model, else the layer name")
    K: int | None = optional("rows", "reduction size (per-layer rows; empty on TOTAL)")
    N: int | None = optional("columns", "output channels (per-layer rows; empty on TOTAL)")
    dense_slots: int = optional("slots", "K*N (summed on TOTAL)")
    packed_slots: int = optional("slots", "packed slots")
    nnz: int = optional("weights", "input nonzeros")
    kept_nnz: int = optional("weights", "kept nonzeros")
    dropped_nnz: int = optional("weights", "dropped nonzeros")
    compression_rate: float = field("x", "dense_slots / packed_slots")
    utilization: float = optional("fraction 0-1", "kept_nnz / packed_slots")
    storage_rate_bits: float = optional("x", "dense bits / (value + index bits)")
    dropped_magnitude_fraction: float = field("fraction 0-1", "dropped |w| / input |w|")
    seconds: float = optional("s", "packing time")
