"""Pruning: which weights (or 4-bit subwords of int8 weights) are zero before packing, and the subword
format (`subword_pack`; its packer, `tightcompress.subword_packer.pack_subwords`, lives above `api`)."""

from tightcompress.prune.magnitude import magnitude_prune
from tightcompress.prune.subword import (
    SUBWORD_QMAX,
    SubwordMasks,
    kept_value,
    merge_subwords,
    prune_subwords,
    quantize_for_subwords,
    split_int8,
)
from tightcompress.prune.subword_pack import SubwordPacked, word_bit_rates

__all__ = [
    "SUBWORD_QMAX",
    "SubwordMasks",
    "SubwordPacked",
    "kept_value",
    "magnitude_prune",
    "merge_subwords",
    "prune_subwords",
    "quantize_for_subwords",
    "split_int8",
    "word_bit_rates",
]
