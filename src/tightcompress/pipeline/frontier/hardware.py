"""The hardware figures of a measured point: the packed model's speed-up and energy gain over dense on
the project's reference array (`pipeline.hardware.HW_ARRAY`, 32x32), per input sample.

The demo kind takes them from the pipeline's report (`compress_model` simulates every packed layer). A
one-shot kind simulates the packed matrices its pruning returns (`report["packed"]`), each layer streaming
its own number of input vectors per sample (`vectors`: output positions of a conv, 1 for a linear layer).
When a method has no packed word-level format to simulate (the unstructured reference, subwords: their
array is `hw.subword_sim`'s, not this one) or a layer's vectors are unknown, the figures are None rather
than a guess.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tightcompress.format.packed import PackedMatrix
from tightcompress.pipeline.hardware import HW_ARRAY, simulate_model

WORD_METHODS = ("tight", "nm", "nm-permuted", "column-combining")  # simulated on the word-level array


def packed_gains(
    method: str, packed: Mapping[str, Any] | None, vectors: Mapping[str, int] | None
) -> dict[str, float | None]:
    """`{"speedup", "energy_gain"}` of the packed layers over dense, or None each when not simulable."""
    unknown: dict[str, float | None] = {"speedup": None, "energy_gain": None}
    if method not in WORD_METHODS or not packed or vectors is None:
        return unknown
    if not all(isinstance(p, PackedMatrix) and name in vectors for name, p in packed.items()):
        return unknown
    _, total = simulate_model(dict(packed), dict(vectors), array=HW_ARRAY)
    return {"speedup": float(total["speedup"]), "energy_gain": float(total["energy_gain"])}
