"""PyTorch in, PyTorch out: packed layers that run (`PackedLinear`, `PackedConv2d`) and the model-level API
(`sparsify_`, `save_model`, `load_model_`, `pack_weight`, `unpack_`), also exported as
`tightcompress.<name>`."""

from tightcompress.nn.api import pack_weight, sparsify_
from tightcompress.nn.model_file import load_model_, save_model
from tightcompress.nn.modules import PackedConv2d, PackedLinear, PackedWeight
from tightcompress.nn.unpack import unpack_

__all__ = [
    "PackedConv2d",
    "PackedLinear",
    "PackedWeight",
    "load_model_",
    "pack_weight",
    "save_model",
    "sparsify_",
    "unpack_",
]
