"""Pruning: which weights are zero before packing."""

from tightcompress.prune.magnitude import magnitude_prune

__all__ = ["magnitude_prune"]
