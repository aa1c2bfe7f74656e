"""The frontier's work folder: one JSON file per finished point and one file per seed's stages, named by a
hash of everything they depend on, so that `--resume` reuses exactly what is still valid (wherever it was
computed: a cluster run resumes on one machine and the reverse). Every file is written atomically."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import torch

from tightcompress.errors import TightCompressError
from tightcompress.pipeline.frontier.grid import FrontierConfig
from tightcompress.pipeline.frontier.kinds.base import ModelKind, Stages
from tightcompress.pipeline.iso_accuracy import POINT_FIELDS
from tightcompress.results.frontier import PointRecord, UnreachablePoint
from tightcompress.utils.atomic import atomic_path

log = logging.getLogger("tightcompress.frontier")

UNREACHABLE_FIELDS = ("method", "target_rate", "seed", "unreachable")


def _hash(payload: Any) -> str:
    return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def seed_key(config: FrontierConfig, seed: int) -> str:
    """Hash of everything a seed's stages depend on."""
    return _hash(config.model.seed_settings(seed, config.methods, config.rates))


def point_key(config: FrontierConfig, method: str, rate: float, seed: int) -> str:
    """Hash of everything one point depends on."""
    return _hash(config.model.point_settings(seed, method, rate, config.methods, config.rates))


def frontier_dir(workdir: Path) -> Path:
    """Where the frontier keeps its points and seed stages."""
    return workdir / "frontier"


def point_path(workdir: Path, config: FrontierConfig, method: str, rate: float, seed: int) -> Path:
    """The file of one finished point."""
    key = point_key(config, method, rate, seed)
    return frontier_dir(workdir) / f"point-{method}-{rate:g}x-s{seed}-{key}.json"


def seed_path(workdir: Path, config: FrontierConfig, seed: int) -> Path:
    """The file of one seed's stages."""
    return frontier_dir(workdir) / f"seed-s{seed}-{seed_key(config, seed)}.pt"


def save_seed_stages(path: Path, stages: Stages) -> None:
    """Write a seed's stages atomically (one file)."""
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(stages.payload(), str(tmp))


def load_seed_stages(path: Path, kind: ModelKind) -> Stages | None:
    """A seed's stages, or None when the file is missing or unreadable (then they are made again)."""
    if not path.is_file():
        return None
    try:
        payload = torch.load(str(path), map_location="cpu", weights_only=True)
        return kind.stages_from(payload)
    except Exception as exc:  # a damaged file is redone, not trusted
        log.warning("ignoring unreadable seed stages %s (%s)", path, type(exc).__name__)
        return None


def load_point(path: Path) -> tuple[dict[str, Any], float] | None:
    """A finished point and its seed's dense accuracy, or None when missing or unreadable (loaded through
    `results.frontier.PointRecord`: a damaged or mistyped file is redone, with a warning naming the field)."""
    if not path.is_file():
        return None
    try:
        record = PointRecord.load(path)
    except TightCompressError as exc:
        log.warning("ignoring unreadable point file %s", exc)
        return None
    fields = record.point.to_json()
    names = UNREACHABLE_FIELDS if isinstance(record.point, UnreachablePoint) else POINT_FIELDS
    return {name: fields.get(name) for name in names}, record.dense_accuracy
