"""Small helpers shared across the package (atomic file writes)."""

from tightcompress.utils.atomic import atomic_path, output_group, write_json_atomic

__all__ = ["atomic_path", "output_group", "write_json_atomic"]
