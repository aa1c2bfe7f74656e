"""tightcompress: pack fine-grained pruned CNN weights tightly for weight-stationary systolic arrays.

Data flows one way: model -> matrices -> packed -> simulated -> report.
"""

from tightcompress.api import METHODS, PackConfig, check_matrix, pack
from tightcompress.errors import TightCompressError
from tightcompress.format import PackedMatrix, load_packed, save_packed

__version__ = "0.1.0"


def __getattr__(name: str):
    """`prepare_` and `fit_` (the user-loop API, `pipeline.user_loop`) import torch only when used."""
    if name in ("prepare_", "fit_"):
        from tightcompress.pipeline import user_loop

        return getattr(user_loop, name)
    raise AttributeError(f"module 'tightcompress' has no attribute {name!r}")


__all__ = [
    "METHODS",
    "PackConfig",
    "PackedMatrix",
    "TightCompressError",
    "__version__",
    "check_matrix",
    "fit_",
    "load_packed",
    "pack",
    "prepare_",
    "save_packed",
]
