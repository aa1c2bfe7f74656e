"""tightcompress: pack fine-grained pruned CNN weights tightly for weight-stationary systolic arrays.

Data flows one way: model -> matrices -> packed -> simulated -> report.
"""

from tightcompress.api import METHODS, PackConfig, check_matrix, pack
from tightcompress.errors import TightCompressError
from tightcompress.format import PackedMatrix, load_packed, save_packed

__version__ = "0.1.0"

# The PyTorch side is imported on first use, so `import tightcompress` (and the CLI) does not load torch.
_TORCH_API = ("load_model_", "pack_weight", "save_model", "sparsify_")


def __getattr__(name: str):
    if name in _TORCH_API:
        from tightcompress import nn

        return getattr(nn, name)
    raise AttributeError(f"module 'tightcompress' has no attribute {name!r}")


__all__ = [
    "METHODS",
    "PackConfig",
    "PackedMatrix",
    "TightCompressError",
    "__version__",
    "check_matrix",
    "load_model_",
    "load_packed",
    "pack",
    "pack_weight",
    "save_model",
    "save_packed",
    "sparsify_",
]
