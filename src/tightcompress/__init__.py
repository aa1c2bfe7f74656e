"""tightcompress: pack fine-grained pruned CNN weights tightly for weight-stationary systolic arrays.

Data flows one way: model -> matrices -> packed -> simulated -> report.

The public names are imported on first use (PEP 562), so `import tightcompress` (and the command line's
start-up) does not load numba or torch until something needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tightcompress.utils.lazy import lazy_getattr
from tightcompress.utils.numba_cache import ensure_numba_cache_dir

__version__ = "0.1.0"

ensure_numba_cache_dir()  # before anything imports numba: a read-only cache location must not break import

_LAZY = {
    "METHODS": "tightcompress.api",
    "PackConfig": "tightcompress.api",
    "check_matrix": "tightcompress.api",
    "pack": "tightcompress.api",
    "TightCompressError": "tightcompress.errors",
    "PackedMatrix": "tightcompress.format",
    "load_packed": "tightcompress.format",
    "save_packed": "tightcompress.format",
    # The PyTorch side: loaded on first use, so `import tightcompress` (and the CLI) does not load torch.
    "load_model_": "tightcompress.nn",
    "pack_weight": "tightcompress.nn",
    "save_model": "tightcompress.nn",
    "sparsify_": "tightcompress.nn",
    "unpack_": "tightcompress.nn",
    # The user-loop API (NVIDIA ASP style): prepare_ before training, fit_ before fine-tuning.
    "prepare_": "tightcompress.pipeline.user_loop",
    "fit_": "tightcompress.pipeline.user_loop",
}

__all__ = [
    "METHODS",
    "PackConfig",
    "PackedMatrix",
    "TightCompressError",
    "__version__",
    "check_matrix",
    "fit_",
    "load_model_",
    "load_packed",
    "pack",
    "pack_weight",
    "prepare_",
    "save_model",
    "save_packed",
    "sparsify_",
    "unpack_",
]

if TYPE_CHECKING:
    from tightcompress.api import METHODS, PackConfig, check_matrix, pack
    from tightcompress.errors import TightCompressError
    from tightcompress.format import PackedMatrix, load_packed, save_packed
    from tightcompress.nn import load_model_, pack_weight, save_model, sparsify_, unpack_
    from tightcompress.pipeline.user_loop import fit_, prepare_


__getattr__ = lazy_getattr(__name__, _LAZY, globals())
