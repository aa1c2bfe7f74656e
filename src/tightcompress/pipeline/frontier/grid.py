"""The frontier's grid: which methods at which rates over which seeds, on which model (`FrontierConfig`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from tightcompress.errors import TightCompressError
from tightcompress.pipeline.config import DEFAULT_RATES, DEFAULT_SEEDS, FRONTIER_METHODS
from tightcompress.pipeline.frontier.kinds.base import ModelKind
from tightcompress.pipeline.frontier.kinds.demo import DemoKind
from tightcompress.pipeline.iso_accuracy import TOLERANCES

PointKey = tuple[str, float, int]  # (method, target rate, seed)


def parse_methods(values: Sequence[str], allowed: Sequence[str] = FRONTIER_METHODS) -> tuple[str, ...]:
    """Method names given with spaces and/or commas (`tight,nm cc`), checked, duplicates dropped."""
    names = [part.strip() for value in values for part in value.split(",") if part.strip()]
    if not names:
        raise TightCompressError("give at least one method")
    for name in names:
        if name not in allowed:
            raise TightCompressError(f"unknown method {name!r}; choose from {', '.join(allowed)}")
    return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class FrontierConfig:
    """The grid (methods x rates x seeds), the model every point measures, and the allowed accuracy drops
    of the iso-accuracy summary. `methods` defaults to every method the model's kind can measure."""

    methods: tuple[str, ...] | None = None
    rates: tuple[float, ...] = DEFAULT_RATES
    seeds: tuple[int, ...] = DEFAULT_SEEDS
    model: ModelKind = field(default_factory=DemoKind)
    tolerances: tuple[float, ...] = TOLERANCES

    def __post_init__(self) -> None:
        methods = self.model.methods if self.methods is None else self.methods
        object.__setattr__(self, "methods", parse_methods(methods, allowed=self.model.methods))
        rates = tuple(float(r) for r in self.rates)
        if not rates or any(not (math.isfinite(r) and r >= 1.0) for r in rates):
            raise TightCompressError(f"rates must be finite numbers >= 1, got {self.rates!r}")
        if len(set(rates)) != len(rates):
            raise TightCompressError(f"rates must be distinct, got {self.rates!r}")
        object.__setattr__(self, "rates", rates)
        if not self.seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in self.seeds):
            raise TightCompressError(f"seeds must be integers >= 0, got {self.seeds!r}")
        if len(set(self.seeds)) != len(self.seeds):
            raise TightCompressError(f"seeds must be distinct, got {self.seeds!r}")
        if not self.tolerances or any(not t >= 0 for t in self.tolerances):
            raise TightCompressError(f"tolerances must be >= 0, got {self.tolerances!r}")

    def grid(self) -> list[PointKey]:
        """Every point, in output order: by method, then rate, then seed."""
        return [(m, r, s) for m in self.methods for r in self.rates for s in self.seeds]


def label(key: PointKey) -> str:
    """A point as people read it: `tight at 8x, seed 0`."""
    method, rate, seed = key
    return f"{method} at {rate:g}x, seed {seed}"
