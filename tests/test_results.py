"""The typed results (`tightcompress.results`): their schemas, their one-line errors, and their place low in
the layer order."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from tightcompress.errors import TightCompressError
from tightcompress.export.rtl import read_manifest
from tightcompress.pipeline.frontier import store
from tightcompress.pipeline.frontier.store import load_point
from tightcompress.results import OUTPUTS, PackLayer, PackReport, SweepRow, json_schema
from tightcompress.results.frontier import PointRecord
from tightcompress.schemas import SCHEMAS

V0 = Path(__file__).resolve().parent / "data" / "outputs_v0"
RESULTS = Path(__file__).resolve().parents[1] / "src" / "tightcompress" / "results"


def test_every_shipped_schema_has_its_class():
    assert tuple(OUTPUTS) == SCHEMAS


def test_results_import_nothing_of_tightcompress_but_errors():
    """Low in the layer order: `format`, `api`, `hw` and the pipeline may all use the classes."""
    for path in RESULTS.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tightcompress"):
                assert node.module == "tightcompress.errors" or node.module.startswith(
                    "tightcompress.results"
                ), f"{path.name} imports {node.module}"


def test_the_schemas_are_self_contained_and_nullable_types_are_lists():
    for name, cls in OUTPUTS.items():
        text = json.dumps(json_schema(cls))
        assert "$ref" not in text and "$defs" not in text, name
    layer = json_schema(PackReport)["properties"]["layers"]["items"]
    assert layer["properties"]["group"]["type"] == ["integer", "null"]
    assert "group" in layer["required"] and "alpha" not in layer["required"]
    assert layer["properties"]["K"]["x-unit"] == "rows"


def _layer(**changes):
    layer = json.loads((V0 / "pack.json").read_text())["layers"][0]
    return {**layer, **changes}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"packed_slots": "x"}, "layers[0].packed_slots: expected an integer, got 'x'"),
        ({"packed_slots": "12"}, "layers[0].packed_slots: expected an integer, got '12'"),  # strict on load
        ({"search_improved": 1}, "layers[0].search_improved: expected true or false, got 1"),
        ({"height": 2.5}, "layers[0].height: expected an integer, a string or null, got 2.5"),
        ({"group": "G"}, "layers[0].group: expected an integer or null, got 'G'"),
        ({"name": None}, "layers[0].name: expected a string, got None"),
        ({"K": [1]}, "layers[0].K: expected an integer, got a list"),
    ],
)
def test_a_wrong_field_on_load_is_one_line_naming_it(changes, message):
    report = json.loads((V0 / "pack.json").read_text())
    report["layers"][0] = _layer(**changes)
    with pytest.raises(TightCompressError) as info:
        PackReport.from_data(report, "p.json")
    assert str(info.value) == f"p.json: {message}"


def test_a_missing_field_and_a_wrong_version_are_named():
    report = json.loads((V0 / "pack.json").read_text())
    del report["total"]["packed_slots"]
    missing = r"^p.json: total.packed_slots: missing \(a required field\)$"
    with pytest.raises(TightCompressError, match=missing):
        PackReport.from_data(report, "p.json")
    report = json.loads((V0 / "pack.json").read_text()) | {"report_version": 2}
    with pytest.raises(TightCompressError, match=r"report_version: expected 1, got 2"):
        PackReport.from_data(report, "p.json")


def test_writers_convert_numpy_and_refuse_a_wrong_type():
    """`dump` is lax on what Python code hands it (numpy scalars) and strict on nonsense (a writer bug)."""
    layer = _layer(K=np.int64(36), compression_rate=np.float32(2.5), search_improved=np.bool_(True))
    out = PackLayer.dump(layer)
    assert (out["K"], out["compression_rate"], out["search_improved"]) == (36, 2.5, True)
    assert type(out["K"]) is int and json.dumps(out)
    with pytest.raises(ValidationError):
        PackLayer.dump(_layer(K="many"))


def test_unknown_fields_are_kept_and_listed():
    report = json.loads((V0 / "pack.json").read_text())
    report["layers"][1]["future_field"] = 1
    loaded = PackReport.from_data(report, "p.json")
    assert loaded.to_json()["layers"][1]["future_field"] == 1
    assert loaded.undeclared() == ["layers[1].future_field"]


def test_a_sweep_row_is_parsed_from_text_and_a_bad_cell_named():
    row = SweepRow.from_csv({"method": "tight", "layer": "TOTAL", "K": "", "compression_rate": "2.5",
                             "dropped_magnitude_fraction": "0", "height": "auto"}, "s.csv", 0)  # fmt: skip
    assert (row.K, row.compression_rate, row.height) == (None, 2.5, "auto")
    with pytest.raises(TightCompressError, match=r"^s.csv: row 3: compression_rate: expected a number"):
        SweepRow.from_csv({"method": "tight", "layer": "TOTAL", "compression_rate": "fast",
                           "dropped_magnitude_fraction": "0"}, "s.csv", 2)  # fmt: skip


def test_a_damaged_manifest_is_one_line_naming_the_field(tmp_path):
    shutil.copy(V0 / "manifest.json", tmp_path / "manifest.json")
    assert read_manifest(tmp_path)["format"] == "tightcompress.rtl"
    manifest = json.loads((V0 / "manifest.json").read_text())
    manifest["layers"][0]["tiles"][0]["rows"] = "four"
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    wrong = r"manifest.json: layers\[0\].tiles\[0\].rows: expected an integer, got 'four'"
    with pytest.raises(TightCompressError, match=wrong):
        read_manifest(tmp_path)


def test_a_mistyped_frontier_point_is_redone_with_a_warning_naming_the_field(tmp_path, monkeypatch):
    point = {"method": "tight", "target_rate": 4.0, "seed": 0, "compression_rate": 4.1, "accuracy": 97.0,
             "speedup": 2.0, "energy_gain": 1.5}  # fmt: skip
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"point": point, "dense_accuracy": 98.0, "key": "k", "seconds": 1.0}))
    assert load_point(good) == (point, 98.0)
    unreachable = {"method": "nm", "target_rate": 64.0, "seed": 0, "unreachable": "no option reaches 64x"}
    (tmp_path / "far.json").write_text(json.dumps({"point": unreachable, "dense_accuracy": 98.0, "key": "k"}))
    assert load_point(tmp_path / "far.json") == (unreachable, 98.0)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"point": point, "dense_accuracy": "high", "key": "k"}))
    warnings: list[str] = []  # earlier tests' CLI logging set-up may stop propagation: record directly
    monkeypatch.setattr(store.log, "warning", lambda text, *args: warnings.append(text % args))
    assert load_point(bad) is None
    assert "bad.json: dense_accuracy: expected a number, got 'high'" in warnings[0]
    assert PointRecord.load(good).point.accuracy == 97.0
