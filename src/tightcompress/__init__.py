"""tightcompress: pack fine-grained pruned CNN weights tightly for weight-stationary systolic arrays.

Data flows one way: model -> matrices -> packed -> simulated -> report.
"""

from tightcompress.api import METHODS, PackConfig, check_matrix, pack
from tightcompress.errors import TightCompressError
from tightcompress.format import PackedMatrix, load_packed, save_packed

__version__ = "0.1.0"

__all__ = [
    "METHODS",
    "PackConfig",
    "PackedMatrix",
    "TightCompressError",
    "__version__",
    "check_matrix",
    "load_packed",
    "pack",
    "save_packed",
]
