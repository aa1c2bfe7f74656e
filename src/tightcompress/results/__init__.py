"""Typed results: one class per output of tightcompress, one line per field (type, unit, meaning).

The writers pass their dicts through these classes (`PackReport.dump(report)`), the readers load files
through them (`PackReport.load(path)`: a wrong field is one line naming it), and `scripts/gen_output_docs.py`
writes the shipped JSON Schemas (`tightcompress/schemas/*.schema.json`) and `docs/outputs.md` from them.
This package imports nothing of tightcompress but `errors`: every layer may use it.

Adding a field to an output: add one line to its class (`name: type = optional(unit, meaning)`, or
`field(...)` when every writer emits it), write it in the writer's dict, and run
`python scripts/gen_output_docs.py`.
"""

from __future__ import annotations

from tightcompress.results.arch import ArchFile, ArchitectureReport
from tightcompress.results.area import AreaReport
from tightcompress.results.base import Result, Versioned, describe, field, json_schema, optional, read_json
from tightcompress.results.compress import CompressLayer, CompressReport, DenseLayer
from tightcompress.results.demo import DemoReport, DemoRow
from tightcompress.results.frontier import FrontierPoint, FrontierReport
from tightcompress.results.pack import Notes, PackConfig, PackLayer, PackReport, PackTotal
from tightcompress.results.rtl import RtlManifest
from tightcompress.results.simulate import SimulateLayer, SimulateReport, SimulateTotal
from tightcompress.results.sweep import SweepRow

# Every output with a shipped schema, in the order docs/outputs.md shows them.
OUTPUTS: dict[str, type[Result]] = {
    cls.schema_name: cls  # type: ignore[misc]
    for cls in (
        PackReport, SimulateReport, CompressReport, DemoReport, FrontierReport, SweepRow, RtlManifest,
        ArchFile, AreaReport,
    )
}  # fmt: skip

__all__ = [
    "OUTPUTS", "ArchFile", "ArchitectureReport", "AreaReport", "CompressLayer", "CompressReport",
    "DemoReport", "DemoRow", "DenseLayer", "FrontierPoint", "FrontierReport", "Notes", "PackConfig",
    "PackLayer", "PackReport", "PackTotal", "Result", "RtlManifest", "SimulateLayer", "SimulateReport",
    "SimulateTotal", "SweepRow", "Versioned", "describe", "field", "json_schema", "optional", "read_json",
]  # fmt: skip
