"""`tightcompress sweep --csv`: one row per operating point (and per layer)."""

from __future__ import annotations

import os
from typing import Any

from pydantic import ValidationError

from tightcompress.errors import TightCompressError
from tightcompress.results.base import Result, describe, field, optional


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
    alpha: int | None = optional("rows", "column combining: --alpha (empty for the other methods)")
    gamma: float | None = optional("conflicts per column", "column combining: --gamma")
    merge: str | None = optional("-", "column combining: the merge rule, `authors` or `least-overlap`")
    section: int | None = optional("rows", "column combining: rows per section combined apart (empty: off)")

    @classmethod
    def from_csv(cls, cells: dict[str, Any], source: str | os.PathLike[str], index: int) -> SweepRow:
        """One CSV row read back: text cells parsed to their types (empty = none); bad is one line."""
        values = {key: (None if value == "" else value) for key, value in cells.items() if key is not None}
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise TightCompressError(f"{source}: row {index + 1}: {describe(exc, cls)}") from None
