"""Pieces of the packed file's metadata shared by its writer (`format.io`) and the reader of release
0.1.0's files (`format.legacy_model`), kept apart so that neither imports the other."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

# Tensors of the model that are not packed layers (biases, normalisation, depthwise weights) are stored
# under this prefix in a packed file.
STATE_PREFIX = "@state/"


def jsonable(value: Any) -> Any:
    """Plain-JSON copy of a metadata dict (NumPy scalars become Python numbers), for safetensors metadata."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
