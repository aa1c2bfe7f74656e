"""`report --html`: runs compared with distinct labels, every input drawn, a page that loads in a browser.

The browser test runs wherever Chromium is installed and always in CI (`.ci/run` installs Debian's
`chromium`; with `CI` set a missing browser is a failure, not a skip).
"""

from __future__ import annotations

import base64
import json
import os
import re

import numpy as np
import pytest
import torch

from headless_chromium import CHROMIUM, load_page
from tightcompress.cli.main import main
from tightcompress.report import REPORT_VERSION
from tightcompress.sweep import CSV_FIELDS, rows_to_csv
from tightcompress.viz.report_html import accuracy_series, hardware_runs, workload_label
from tightcompress.viz.runs import layer_name, runs_from_files

_IMG = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')
# accuracy, gains, per-layer hardware, per-layer rate, sweep, heat map, the runs table, and one
# iso-accuracy figure per frontier JSON (the inputs hold one)
FIGURES = 8


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Real pack and simulate (32x32, 128x128) reports of a two-layer checkpoint, plus a compress-shaped
    report (the simulate report with an accuracy block), a demo table, a frontier JSON and a sweep CSV."""
    tmp = tmp_path_factory.mktemp("report")
    rng = np.random.default_rng(3)
    state = {
        "conv1.weight": torch.from_numpy(rng.standard_normal((40, 8, 3, 3)).astype(np.float32)),
        "conv1.bias": torch.zeros(40),
        "fc.weight": torch.from_numpy(rng.standard_normal((10, 40)).astype(np.float32)),
    }
    torch.save(state, tmp / "net.pt")
    common = ["--sparsity", "0.8", "--group", "8", "--iterations", "2000", "--quiet"]
    pack = ["pack", tmp / "net.pt", *common, "--tile", "16", "--jobs", "1", "--json", tmp / "pack.json"]
    assert main([str(a) for a in [*pack, "--out", tmp / "p.safetensors"]]) == 0
    for array in ("32x32", "128x128"):
        sim = ["simulate", tmp / "net.pt", *common, "--array", array, "--json", tmp / f"sim{array}.json"]
        assert main([str(a) for a in sim]) == 0
    compress = json.loads((tmp / "sim32x32.json").read_text())
    compress["config"] |= {"workflow": "compress", "rate": 4.0, "height": None}  # compress: a cap or none
    compress["accuracy"] = {
        "dense": 98.0,
        "unstructured": 97.5,
        "prune_to_fit": 97.0,
        "packed_finetuned": 97.4,
    }
    compress["hardware"] = {"array": "32x32", "per": "image", **compress["total"]}
    compress["compression_rate"] = compress["total"]["compression_rate"]
    compress["choices"] = {layer["name"]: "tight G=8 h=auto" for layer in compress["layers"]}
    for layer in compress["layers"]:  # compress names layers by module path
        layer["name"] = layer["name"].removesuffix(".weight")
    (tmp / "compress.json").write_text(json.dumps(compress))
    points = [("tight", 4.0, 98.0), ("tight", 8.0, 96.0), ("nm", 2.0, 98.5), ("nm", 4.0, 95.0)]
    rows = [
        {"method": m, "compression_rate": r, "accuracy": a, "accuracy_drop": 99 - a} for m, r, a in points
    ]
    (tmp / "demo.json").write_text(json.dumps({"rows": rows}))
    frontier_points = [
        {"method": m, "target_rate": t, "seed": s, "compression_rate": t * 1.01, "accuracy": a - s * 0.3,
         "speedup": t / 2, "energy_gain": t / 3}
        for m, t, a in [("tight", 8, 98.1), ("tight", 16, 97.2), ("column-combining", 8, 97.0)]
        for s in (0, 1)
    ]  # fmt: skip
    dense = {"accuracy_mean": 98.6, "accuracy_std": 0.1, "per_seed": [98.5, 98.7]}
    frontier = {"dense": dense, "points": frontier_points, "iso_accuracy": {}, "ratios": {}}
    (tmp / "frontier.json").write_text(json.dumps(frontier))
    sweep = [
        dict.fromkeys(CSV_FIELDS, 1)
        | {"method": m, "layer": "TOTAL", "compression_rate": r, "dropped_magnitude_fraction": d}
        | {"height": "auto", "merge": "authors"}
        for m, r, d in [("tight", 4.0, 0.01), ("nm", 4.0, 0.05)]
    ]
    (tmp / "sweep.csv").write_text(rows_to_csv(sweep))
    return tmp


REPORTS = ["pack.json", "sim32x32.json", "sim128x128.json", "compress.json"]


def _pngs(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in _IMG.findall(page)]


def _full_report(inputs, out) -> str:
    argv = ["report", *(inputs / name for name in [*REPORTS, "demo.json", "frontier.json"]), "--html", out]
    argv += ["--sweep", inputs / "sweep.csv", "--packed", inputs / "p.safetensors"]
    assert main([str(a) for a in argv]) == 0
    return out.read_text()


def test_every_run_once_with_a_distinct_label(inputs):
    runs, frontiers = runs_from_files([inputs / name for name in REPORTS])
    labels = [run.label for run in runs]
    assert len(labels) == 4 and len(set(labels)) == 4
    assert [run.kind for run in runs] == ["pack", "simulate", "simulate", "compress"]
    assert "32x32 array" in labels[1] and "128x128 array" in labels[2] and "G=8" in labels[0]
    assert labels[3].startswith("compress.json: compress, tight rate 4x") and labels[3].endswith("word")
    assert frontiers == []
    # one layer naming: the pack report's `conv1.weight` is `conv1`, as in the compress report
    names = [[layer["name"] for layer in run.layers] for run in runs]
    assert names == [["conv1", "fc"]] * 4
    assert layer_name("layer1.0.conv1.weight") == "layer1.0.conv1" and layer_name("weight") == "weight"
    assert layer_name("conv1.weight[3]") == "conv1[3]" and layer_name("conv1[3]") == "conv1[3]"
    assert layer_name("a.weightless") == "a.weightless"


def test_both_arrays_and_every_accuracy_source_are_drawn(inputs):
    runs, frontiers = runs_from_files([inputs / n for n in [*REPORTS, "demo.json", "frontier.json"]])
    arrays = hardware_runs(runs)
    assert list(arrays) == ["32x32", "128x128"]
    assert [len(group) for group in arrays.values()] == [2, 1]  # simulate 32x32 and compress share a panel
    series = accuracy_series(runs, frontiers)
    labels = [s["label"] for s in series]
    assert labels[0].startswith("compress.json") and series[0]["rates"][0] == 1.0
    assert series[0]["accuracy"] == [98.0, 97.4]
    assert sum("demo" in label for label in labels) == 4
    tight = next(s for s in series if s["label"] == "frontier.json: frontier, tight (2 seeds)")
    assert tight["accuracy"] == pytest.approx([97.95, 97.05]) and tight["low"] == pytest.approx([97.8, 96.9])


def test_full_report_embeds_every_plot(tmp_path, inputs):
    page = _full_report(inputs, tmp_path / "r.html")
    pngs = _pngs(page)
    assert len(pngs) == FIGURES - 1
    assert all(p.startswith(b"\x89PNG\r\n\x1a\n") and len(p) > 2000 for p in pngs)
    assert "Not shown" not in page
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing fetched from a network
    table = page[page.index("<table>") : page.index("</table>")]
    assert table.count("<tr>") == 1 + 4 + 4  # header, four reports, four demo rows
    for heading in ["Compression rate (×)", "Slot utilization (%)", "Dropped |w| (%)", "Accuracy (%)"]:
        assert f">{heading}<" in table
    assert "dropped_magnitude_fraction" not in table and "compression_rate" not in table
    assert "97.40%" in table  # the compress run's accuracy in percent
    for array in ("32x32", "128x128"):
        assert f">{array}<" in table  # the cycles column of each simulate run is filled
    compress_row = next(row for row in table.split("<tr>") if "compress.json" in row)
    cycles = compress_row.split("</td>")[6]  # compress: the cycles cell is filled from its hardware block
    assert re.fullmatch(r'<td class="num">\d[\d,]*', cycles)


def test_dense_legend_says_what_m_is(inputs):
    """The dense bars' legend names M (input vectors per layer) from the layers, never `M=?`."""
    runs, _ = runs_from_files([inputs / name for name in REPORTS])
    labels = [workload_label(run) for run in runs if run.kind != "pack"]
    assert labels == ["M=1 input vectors per layer", "M=1 input vectors per layer", "one image"]
    simulate = runs[1]
    simulate.layers = [{**layer, "m": m} for layer, m in zip(simulate.layers, (64, 1), strict=True)]
    assert workload_label(simulate) == "M=1–64 input vectors per layer"
    simulate.layers = [{k: v for k, v in layer.items() if k != "m"} for layer in simulate.layers]
    assert "?" not in workload_label(simulate) and "M=" not in workload_label(simulate)


def test_heat_map_layer_by_module_path(tmp_path, inputs):
    argv = [
        "report",
        inputs / "pack.json",
        "--packed",
        inputs / "p.safetensors",
        "--html",
        tmp_path / "r.html",
    ]
    assert main([str(a) for a in [*argv, "--layer", "fc"]]) == 0  # the file's key is `fc.weight`
    assert len(_pngs((tmp_path / "r.html").read_text())) == 2


def test_figures_fit_the_page(tmp_path, inputs):
    import io

    from PIL import Image

    for png in _pngs(_full_report(inputs, tmp_path / "r.html")):
        width, height = Image.open(io.BytesIO(png)).size
        assert width <= 1150 and height <= 1300, (width, height)


def test_absent_data_is_skipped_with_a_note(tmp_path, inputs):
    out = tmp_path / "r.html"
    assert main(["report", str(inputs / "pack.json"), "--html", str(out)]) == 0
    page = out.read_text()
    assert len(_pngs(page)) == 1 and page.count("Not shown") == 5
    assert "run `tightcompress simulate`" in page


def test_bad_inputs_write_nothing(tmp_path, inputs, capsys):
    out = tmp_path / "r.html"
    old = json.loads((inputs / "pack.json").read_text()) | {"report_version": REPORT_VERSION + 1}
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert main(["report", str(tmp_path / "old.json"), "--html", str(out)]) == 2
    assert f"report_version {REPORT_VERSION + 1}" in capsys.readouterr().err
    (tmp_path / "junk.json").write_text("{not json")
    assert main(["report", str(tmp_path / "junk.json"), "--html", str(out)]) == 2
    assert "not a readable JSON" in capsys.readouterr().err
    (tmp_path / "other.json").write_text('{"a": 1}')
    assert main(["report", str(tmp_path / "other.json"), "--html", str(out)]) == 2
    assert "not a tightcompress output" in capsys.readouterr().err
    argv = ["report", str(inputs / "pack.json"), "--packed", str(inputs / "p.safetensors"), "--layer", "zz"]
    assert main([*argv, "--html", str(out)]) == 2
    assert "no layer 'zz'" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.json", "old.json", "other.json"]


IN_CI = bool(os.environ.get("CI"))


@pytest.mark.slow
@pytest.mark.skipif(
    CHROMIUM is None and not IN_CI, reason="headless Chromium is not installed (CI installs it)"
)
def test_renders_in_headless_chromium(tmp_path, inputs):
    if CHROMIUM is None:
        pytest.fail("CI is set but chromium is not on PATH: .ci/run should have installed it")
    page = load_page(_full_report_uri(inputs, tmp_path), width=1100, height=2400)
    assert page.errors == []
    assert page.image_count == FIGURES - 1 and page.broken_images == []
    import io

    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(page.screenshot)).convert("RGB"), dtype=float) / 255
    assert pixels.shape[:2] == (2400, 1100)
    dark = (pixels.mean(axis=2) < 0.5).mean()  # text, bars and heat-map ink on a white page
    assert 0.005 < dark < 0.9
    assert len(np.unique(pixels.reshape(-1, 3).round(2), axis=0)) > 20  # coloured plots, not a blank page


def test_browser_check_catches_a_broken_page(tmp_path):
    """The browser check can fail: a console error, a script error and a missing image are all reported."""
    if CHROMIUM is None:
        pytest.skip("headless Chromium is not installed")
    bad = tmp_path / "bad.html"
    bad.write_text('<img alt="gone" src="missing.png"><script>console.error("boom"); notDefined();</script>')
    page = load_page(bad.as_uri())
    assert page.broken_images == ["gone"]
    assert any("boom" in e for e in page.errors) and any("notDefined" in e for e in page.errors)


def _full_report_uri(inputs, tmp_path) -> str:
    _full_report(inputs, tmp_path / "r.html")
    return (tmp_path / "r.html").as_uri()
