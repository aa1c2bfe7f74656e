"""`CompressConfig`: every setting of the compression pipeline, for either granularity, validated once."""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tightcompress.api import METHODS, PackConfig
from tightcompress.errors import TightCompressError
from tightcompress.prune.subword_pack import SUBWORD_METHOD
from tightcompress.zoo import DEMO_CNN_WIDTHS

if TYPE_CHECKING:
    from tightcompress.pipeline.data import Dataset
    from tightcompress.pipeline.models import DemoCNN

# N:M with one searched input-channel permutation per layer (`PackConfig(method="nm", permute=True)`)
PERMUTED_NM = "nm-permuted"
PIPELINE_METHODS = (*(m for m in METHODS if m != "dense"), PERMUTED_NM)
GRANULARITIES = ("word", "subword")


@dataclass(frozen=True)
class CompressConfig:
    """Everything the pipeline does, validated on construction.

    `granularity` is what one slot holds: `word` (an int8 weight; every method) or `subword` (a signed
    4-bit half of an int8 weight; tight only, `rate` is then the bit rate `8*K*N / (4*slots)`).
    Give `rate` (per-layer options chosen to reach it) or, at word level, explicit `group`/`height` (one
    option for every layer; `alpha`/`gamma` for column combining). `sparsity` is the step-1 target over the
    granularity's units (weights or subwords); by default `1 - 1/rate` (or `1 - height/group`), the densest
    the format can hold.
    """

    method: str = "tight"
    rate: float | None = 16.0
    group: int | None = None
    height: int | None = None
    tile: int = 32
    alpha: int = 8
    gamma: float = 0.5
    sparsity: float | None = None
    prune_rounds: int = 4
    prune_epochs: float = 2.0
    finetune_epochs: float = 6.0
    lr: float = 3e-3
    batch_size: int = 128
    seed: int = 0
    plan_iterations: int | None = 30_000
    final_iterations: int | None = 300_000
    max_fit_rounds: int = 3
    format_rounds: int = 2
    prune_normalized: bool = False
    format_start_rate: float = 4.0
    distill: float = 0.5  # weight of distillation from the dense model in every training step (0: off)
    distill_temperature: float = 4.0
    granularity: str = "word"

    def __post_init__(self) -> None:
        if self.method not in PIPELINE_METHODS:
            raise TightCompressError(
                f"unknown method {self.method!r}; choose one of {', '.join(PIPELINE_METHODS)}"
            )
        if self.granularity not in GRANULARITIES:
            raise TightCompressError(
                f"unknown granularity {self.granularity!r}; choose one of {', '.join(GRANULARITIES)}"
            )
        explicit = self.group is not None or self.height is not None
        if self.granularity == "subword":
            if self.method != "tight":
                raise TightCompressError("granularity subword packs with tight only")
            if explicit or self.rate is None:
                raise TightCompressError("granularity subword chooses G and h per layer: give a (bit) rate")
        if self.rate is not None and explicit:
            raise TightCompressError("give either a rate or explicit --group/--height, not both")
        if self.rate is None:
            if self.method != "column-combining" and (self.group is None or self.height is None):
                raise TightCompressError("without a rate, give both --group and --height")
        elif not self.rate >= 1.0:
            raise TightCompressError(f"rate must be >= 1, got {self.rate}")
        if self.sparsity is not None and not 0.0 <= self.sparsity < 1.0:
            raise TightCompressError(f"sparsity must be in [0, 1), got {self.sparsity}")
        for name in ("prune_epochs", "finetune_epochs"):
            if not 0 <= getattr(self, name) < math.inf:  # NaN and inf too
                raise TightCompressError(f"{name} must be a finite number >= 0, got {getattr(self, name)}")
        if not 0 < self.lr < math.inf:
            raise TightCompressError(f"lr must be a finite number > 0, got {self.lr}")
        seed_ok = isinstance(self.seed, numbers.Integral) and not isinstance(self.seed, bool)
        if not (seed_ok and 0 <= self.seed < 2**32):
            raise TightCompressError(f"seed must be an integer in [0, 2**32 - 1], got {self.seed!r}")
        if not 0.0 <= self.distill <= 1.0 or self.distill_temperature <= 0:
            raise TightCompressError("distill must be in [0, 1] and its temperature > 0")
        if min(self.prune_rounds, self.max_fit_rounds, self.format_rounds, self.batch_size, self.tile) < 1:
            raise TightCompressError("prune, format and fit rounds, batch_size and tile must be >= 1")
        if not self.format_start_rate >= 1.0:
            raise TightCompressError("format_start_rate must be >= 1")
        if self.rate is None:
            self.explicit_pack_config()  # validates group/height/tile/alpha/gamma

    def explicit_pack_config(self) -> PackConfig:
        """The one PackConfig used for every layer when no rate is given."""
        permute = self.method == PERMUTED_NM
        return PackConfig(
            method="nm" if permute else self.method,  # type: ignore[arg-type]
            permute=permute,
            group=self.group or 8,
            height=self.height if self.height is not None else "auto",
            tile=self.tile,
            alpha=self.alpha,
            gamma=self.gamma,
            seed=self.seed,
        )

    def target_sparsity(self) -> float:
        """Step-1 sparsity (of weights at word level, of subwords at subword level)."""
        if self.sparsity is not None:
            return self.sparsity
        if self.rate is not None:
            return 1.0 - 1.0 / self.rate
        if self.method == "column-combining":
            return 1.0 - 1.0 / self.alpha
        return 1.0 - float(self.height) / float(self.group)

    def prune_key(self) -> str:
        """Hash of the settings step 1 depends on (stage files of other settings are never resumed)."""
        fields = [
            self.target_sparsity(),
            self.prune_rounds,
            self.prune_epochs,
            self.lr,
            self.batch_size,
            self.seed,
            self.prune_normalized,
            self.distill,
            self.distill_temperature,
        ]
        if self.granularity != "word":  # word-level stage files keep the names they had before
            fields.append(self.granularity)
        return hashlib.sha1(json.dumps(fields).encode()).hexdigest()[:10]

    def fit_key(self) -> str:
        """Hash of everything the format-aware step depends on."""
        fields = asdict(self)
        if self.granularity == "word":  # word-level stage files keep the names they had before
            del fields["granularity"]
        return hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:10]


# ------------------------------------------------------------------ the demo's and the frontier's settings
# Kept here, free of torch, so the command line can show their defaults without loading it.
DEMO_METHODS = ("tight", "column-combining", "nm", PERMUTED_NM)
# Every method the pipeline packs (one list: a method added there joins the frontier by name), then subwords.
FRONTIER_METHODS: tuple[str, ...] = (*PIPELINE_METHODS, SUBWORD_METHOD)
# The frontier's one-shot methods on an outside model (`pipeline.oneshot`): the word-level methods,
# per-layer unstructured magnitude/saliency as the reference, and 4-bit subwords (rate in bits)
ONESHOT_METHODS: tuple[str, ...] = (*PIPELINE_METHODS, "unstructured", SUBWORD_METHOD)
DEFAULT_RATES: tuple[float, ...] = (4.0, 8.0, 12.0, 16.0, 24.0, 32.0, 48.0)
DEFAULT_SEEDS: tuple[int, ...] = (0, 1, 2)


@dataclass(frozen=True)
class DemoConfig:
    """Demo settings: dense training budget, the rate, and the pipeline settings shared by all methods."""

    rate: float = 16.0
    methods: tuple[str, ...] = DEMO_METHODS
    widths: tuple[int, ...] = DEMO_CNN_WIDTHS  # conv channels of the demo CNN
    dense_epochs: float = 8.0
    dense_lr: float = 3e-3
    test_fraction: float = 0.2
    seed: int = 0
    compress: CompressConfig = field(default_factory=CompressConfig)
    subword_bit_rate: float | None = 24.0  # the tight-subword row (None: skip it)

    def __post_init__(self) -> None:
        if not self.widths or any(int(w) != w or w < 1 for w in self.widths):
            raise TightCompressError(f"widths must be positive integers, got {self.widths!r}")
        if not 1.0 <= self.rate < math.inf:
            raise TightCompressError(f"rate must be a finite number >= 1, got {self.rate}")
        if not 0 <= self.dense_epochs < math.inf:
            raise TightCompressError(f"dense_epochs must be a finite number >= 0, got {self.dense_epochs}")

    def model(self, data: Dataset) -> DemoCNN:
        """A fresh (untrained) demo CNN of these widths for `data`."""
        from tightcompress.pipeline.models import DemoCNN

        return DemoCNN(in_channels=1, n_classes=data.n_classes, widths=tuple(int(w) for w in self.widths))


def default_workdir() -> Path:
    """`$TIGHTCOMPRESS_CACHE`, else `$XDG_CACHE_HOME/tightcompress`, else `~/.cache/tightcompress`."""
    if os.environ.get("TIGHTCOMPRESS_CACHE"):
        return Path(os.environ["TIGHTCOMPRESS_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "tightcompress"
