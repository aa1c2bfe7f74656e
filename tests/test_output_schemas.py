"""Every JSON (and CSV row) the tool writes validates against its shipped JSON Schema; the reference page
`docs/outputs.md` is generated from those schemas and up to date."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch

from test_pipeline_cli import TINY
from test_pipeline_data import make_folder
from tightcompress.cli.main import main
from tightcompress.schemas import SCHEMAS, load_schema
from tightcompress.sweep import read_sweep_csv

ROOT = Path(__file__).resolve().parents[1]


def _generator():
    spec = importlib.util.spec_from_file_location("gen_output_docs", ROOT / "scripts" / "gen_output_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def validate(name: str, data: dict) -> None:
    jsonschema.Draft202012Validator(load_schema(name)).validate(data)


def test_schemas_are_valid_and_shipped():
    for name in SCHEMAS:
        schema = load_schema(name)
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["title"] == name
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"schemas/*.schema.json"' in pyproject  # package-data: installed with the package


def test_schemas_and_reference_page_are_up_to_date(capsys):
    assert _generator().main(["--check"]) == 0, capsys.readouterr().err
    page = (ROOT / "docs" / "outputs.md").read_text()
    assert "lower_bound_slots` can exceed `packed_slots`" in page


def test_every_field_has_a_meaning_and_a_unit():
    def walk(node, path):
        for name, child in node.get("properties", {}).items():
            assert child.get("description"), f"{path}.{name} has no meaning"
            assert "x-unit" in child or child.get("type") in ("object", ["object", "null"]), f"{path}.{name}"
            walk(child, f"{path}.{name}")
            if isinstance(child.get("items"), dict):
                walk(child["items"], f"{path}.{name}[]")

    for name in SCHEMAS:
        walk(load_schema(name), name)


def test_a_wrong_field_is_rejected(tmp_path):
    """The schemas can fail: a report with a string rate or without its totals does not validate."""
    np.save(tmp_path / "w.npy", np.random.default_rng(0).standard_normal((24, 16)).astype(np.float32))
    assert main(["pack", str(tmp_path / "w.npy"), "--quiet", "--json", str(tmp_path / "p.json")]) == 0
    report = json.loads((tmp_path / "p.json").read_text())
    validate("pack", report)
    report["layers"][0]["compression_rate"] = "fast"
    with pytest.raises(jsonschema.ValidationError, match=r"compression_rate|fast"):
        validate("pack", report)
    del report["total"]
    with pytest.raises(jsonschema.ValidationError):
        validate("pack", report)


def test_pack_simulate_sweep_export_outputs_validate(tmp_path):
    state = {"conv1.weight": torch.randn(16, 4, 3, 3), "fc.weight": torch.randn(10, 16)}
    torch.save(state, tmp_path / "net.pt")
    common = ["--sparsity", "0.8", "--group", "8", "--iterations", "500", "--quiet"]
    for height in ("auto", "2"):
        argv = [
            "pack",
            str(tmp_path / "net.pt"),
            *common,
            "--height",
            height,
            "--json",
            str(tmp_path / "p.json"),
        ]
        assert main([*argv, "--out", str(tmp_path / "p.safetensors")]) == 0
        validate("pack", json.loads((tmp_path / "p.json").read_text()))
    assert main(["pack", "--zoo", "mobilenetv2", "--zoo-layers", "conv", "--method", "dense", "--quiet",
                 "--json", str(tmp_path / "zoo.json")]) == 0  # fmt: skip
    zoo = json.loads((tmp_path / "zoo.json").read_text())
    assert zoo["notes"]["skipped_layers"]  # depthwise layers: the notes block is exercised
    validate("pack", zoo)
    for method in ("tight", "column-combining"):
        argv = ["simulate", str(tmp_path / "net.pt"), *common, "--method", method, "--check-bitexact"]
        assert main([*argv, "--vectors", "2", "--json", str(tmp_path / "s.json")]) == 0
        validate("simulate", json.loads((tmp_path / "s.json").read_text()))
    argv = [
        "sweep",
        str(tmp_path / "net.pt"),
        "--methods",
        "tight,nm,dense,column-combining",
        "--groups",
        "4",
    ]
    argv += ["--heights", "2,auto", "--sparsities", "none,0.8", "--per-layer", "--iterations", "300"]
    assert main([*argv, "--csv", str(tmp_path / "s.csv"), "--quiet", "--jobs", "1"]) == 0
    rows = read_sweep_csv(tmp_path / "s.csv")
    assert len(rows) > 4
    for row in rows:
        validate("sweep-row", {key: _typed(value) for key, value in row.items()})
    assert (
        main(["export", str(tmp_path / "p.safetensors"), "--out-dir", str(tmp_path / "rtl"), "--quiet"]) == 0
    )
    validate("rtl-manifest", json.loads((tmp_path / "rtl" / "manifest.json").read_text()))


def _typed(cell: str):
    """A CSV cell as the JSON value it stands for: empty -> null, numbers -> numbers, else text."""
    if cell == "":
        return None
    if re.fullmatch(r"-?\d+", cell):
        return int(cell)
    try:
        return float(cell)
    except ValueError:
        return cell


@pytest.mark.slow
@pytest.mark.parametrize("granularity", ["word", "subword"])
def test_compress_report_validates(tmp_path, granularity):
    (tmp_path / "tiny_model.py").write_text(TINY)
    namespace: dict = {}
    exec(TINY, namespace)
    torch.manual_seed(0)
    torch.save(namespace["Tiny"]().state_dict(), tmp_path / "tiny.pt")
    argv = [
        "compress",
        "--checkpoint",
        str(tmp_path / "tiny.pt"),
        "--model",
        f"{tmp_path / 'tiny_model.py'}:Tiny",
    ]
    argv += ["--data", str(make_folder(tmp_path / "imgs")), "--out-dir", str(tmp_path / "out"), "--tile", "8"]
    argv += ["--prune-rounds", "1", "--prune-epochs", "1", "--finetune-epochs", "1", "--quiet"]
    argv += ["--rate", "3"] if granularity == "word" else ["--granularity", "subword", "--bit-rate", "4"]
    assert main(argv) == 0
    validate("compress", json.loads((tmp_path / "out" / "report.json").read_text()))


@pytest.mark.slow
def test_demo_json_validates(tmp_path):
    argv = ["demo", "--workdir", str(tmp_path / "cache"), "--json", str(tmp_path / "demo.json"), "--quiet"]
    argv += ["--dense-epochs", "0.3", "--widths", "8,16,32,32", "--methods", "tight,column-combining"]
    argv += ["--prune-rounds", "1", "--prune-epochs", "0.1", "--finetune-epochs", "0.1"]
    assert main(argv) == 0
    demo = json.loads((tmp_path / "demo.json").read_text())
    assert demo["tight_vs_column_combining"] is not None
    assert [r["method"] for r in demo["rows"]] == ["dense", "tight", "column-combining", "tight-subword"]
    validate("demo", demo)


def test_measured_frontier_and_a_tiny_run_validate(tmp_path):
    """The default-grid frontier the README quotes (docs/frontier.json) and a tiny real run both validate."""
    measured = Path(__file__).resolve().parents[1] / "docs" / "frontier.json"
    validate("frontier", json.loads(measured.read_text()))
    out = tmp_path / "F.json"
    tiny = ["--widths", "8,16", "--dense-epochs", "0.3", "--prune-rounds", "1", "--prune-epochs", "0.1",
            "--finetune-epochs", "0.1", "--format-rounds", "1", "--rates", "4", "--seeds", "0"]  # fmt: skip
    argv = ["frontier", *tiny, "--methods", "tight", "column-combining", "--jobs", "1", "--quiet"]
    assert main([*argv, "--workdir", str(tmp_path / "W"), "--json", str(out)]) == 0
    validate("frontier", json.loads(out.read_text()))


def test_frontier_spec_example_validates():
    """The issue-10 shape validates, a malformed point does not."""
    points = [
        {"method": m, "target_rate": t, "seed": s, "compression_rate": t * 1.02, "accuracy": 97.0,
         "speedup": 3.0, "energy_gain": 2.5}
        for m in ("tight", "column-combining") for t in (8, 16) for s in (0, 1)
    ]  # fmt: skip
    frontier = {
        "dense": {"accuracy_mean": 98.4, "accuracy_std": 0.1, "per_seed": [98.3, 98.5]},
        "points": points,
        "iso_accuracy": {"0.5": {"tight": 16, "column-combining": 8}, "1.0": {"tight": 16, "nm": None}},
        "ratios": {"0.5": {"rate_tight_over_cc": 2.0, "throughput_tight_over_cc": 1.8,
                           "energy_tight_over_cc": 1.5}, "1.0": None},
    }  # fmt: skip
    validate("frontier", frontier)
    del points[0]["accuracy"]
    with pytest.raises(jsonschema.ValidationError, match="accuracy"):
        validate("frontier", frontier)
