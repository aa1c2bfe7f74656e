"""The subword packer: `pack_subwords` runs the ordinary tight search and packing (`api.pack`) over the
subword contributions of an int8 layer and returns the subword format of `prune.subword_pack`.

It lives above `api` (layers point down: `format`, then `prune`, then `api`, then this), because it calls
`pack`; `prune.subword_pack` keeps the format itself (`SubwordPacked`, the shift bits, the rates).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from tightcompress.api import pack
from tightcompress.errors import TightCompressError
from tightcompress.prune.subword import SubwordMasks, subword_contributions, subword_effective_int8
from tightcompress.prune.subword_pack import SubwordPacked, slot_shifts, store_kept_values


def pack_subwords(
    q: np.ndarray,
    masks: SubwordMasks | None = None,
    *,
    group: int = 8,
    height: int | Literal["auto"] = "auto",
    tile: int = 32,
    seed: int = 0,
    iterations: int | None = None,
    objective: Literal["magnitude", "squared"] = "magnitude",
    word_level: bool = False,
    name: str = "matrix",
) -> SubwordPacked:
    """Pack the kept subwords of int8 `q` (`K x N`, values in [-119, 119]) with the tight search.

    `group` counts subword rows (the G:1 multiplexer's inputs), `height` is `'auto'` (lossless) or a cap.
    `word_level=True` also packs the recomposed int8 matrix word by word with the same G, h, C for the
    word-level rates in the report.
    """
    q = np.asarray(q)
    if q.ndim != 2 or not np.issubdtype(q.dtype, np.integer):
        raise TightCompressError(f"{name}: expected a 2-D integer K x N matrix, got {q.dtype} {q.shape}")
    contributions = subword_contributions(q, masks)
    if not np.any(contributions):
        raise TightCompressError(f"{name}: every subword is pruned; there is nothing to pack")
    options = dict(method="tight", group=group, height=height, tile=tile, seed=seed, iterations=iterations)
    packed = pack(contributions.astype(np.float32), name=name, objective=objective, **options)
    shifts = slot_shifts(packed)
    store_kept_values(packed, q if masks is None else subword_effective_int8(q, masks))
    word_packed = None
    if word_level:
        effective = subword_effective_int8(q, masks) if masks is not None else q.astype(np.int8)
        word_packed = pack(effective.astype(np.float32), name=name, objective=objective, **options)
    return SubwordPacked(packed=packed, shifts=shifts, word_packed=word_packed)
