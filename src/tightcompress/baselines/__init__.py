"""Baselines the tight format is measured against: dense, N:M, and column combining."""

from tightcompress.baselines.column_combining import column_combining_groups, pack_column_combining
from tightcompress.baselines.structured import pack_dense, pack_nm

__all__ = ["column_combining_groups", "pack_column_combining", "pack_dense", "pack_nm"]
