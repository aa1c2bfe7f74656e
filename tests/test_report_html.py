"""`report --html`: a self-contained page with embedded PNGs; absent data skipped; bad input refused."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from tightcompress.cli.main import main
from tightcompress.report import REPORT_VERSION
from tightcompress.sweep import CSV_FIELDS, rows_to_csv

_IMG = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    W = np.random.default_rng(3).standard_normal((72, 40)).astype(np.float32)
    np.save(tmp / "w.npy", W)
    common = ["--sparsity", "0.8", "--tile", "16", "--quiet", "--jobs", "1"]
    tight = [
        "pack",
        tmp / "w.npy",
        "--method",
        "tight",
        "--group",
        "8",
        "--height",
        "2",
        "--iterations",
        "2000",
    ]
    assert (
        main(
            [str(a) for a in [*tight, *common, "--json", tmp / "tight.json", "--out", tmp / "p.safetensors"]]
        )
        == 0
    )
    assert (
        main(
            [str(a) for a in ["pack", tmp / "w.npy", "--method", "dense", *common, "--json", tmp / "d.json"]]
        )
        == 0
    )
    report = json.loads((tmp / "tight.json").read_text())
    for layer in report["layers"]:  # the fields `simulate` adds (values are plot input, not results)
        layer.update(cycles=100, dense_cycles=400, energy_pj=2.0e3, dense_energy_pj=9.0e3)
    (tmp / "sim.json").write_text(json.dumps(report))
    points = [("tight", 4.0, 0.98), ("tight", 8.0, 0.96), ("nm", 2.0, 0.985), ("nm", 4.0, 0.95)]
    rows = [
        {"method": m, "compression_rate": r, "accuracy": a, "accuracy_drop": 0.99 - a} for m, r, a in points
    ]
    (tmp / "demo.json").write_text(json.dumps({"rows": rows}))
    sweep = [
        dict.fromkeys(CSV_FIELDS, 1)
        | {"method": m, "layer": "TOTAL", "compression_rate": r, "dropped_magnitude_fraction": d}
        for m, r, d in [("tight", 4.0, 0.01), ("nm", 4.0, 0.05)]
    ]
    (tmp / "sweep.csv").write_text(rows_to_csv(sweep))
    return tmp


def _pngs(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in _IMG.findall(page)]


def test_full_report_embeds_every_plot(tmp_path, inputs):
    out = tmp_path / "r.html"
    argv = ["report", inputs / "sim.json", inputs / "d.json", inputs / "demo.json", "--html", out]
    argv += ["--sweep", inputs / "sweep.csv", "--packed", inputs / "p.safetensors"]
    assert main([str(a) for a in argv]) == 0
    page = out.read_text()
    pngs = _pngs(page)
    assert len(pngs) == 5 and all(p.startswith(b"\x89PNG\r\n\x1a\n") and len(p) > 2000 for p in pngs)
    assert "Not shown" not in page
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing fetched from a network


def test_absent_data_is_skipped_with_a_note(tmp_path, inputs):
    out = tmp_path / "r.html"
    assert main(["report", str(inputs / "tight.json"), "--html", str(out)]) == 0
    page = out.read_text()
    assert len(_pngs(page)) == 1 and page.count("Not shown") == 4
    assert "run `tightcompress simulate`" in page


def test_bad_inputs_write_nothing(tmp_path, inputs, capsys):
    out = tmp_path / "r.html"
    old = json.loads((inputs / "tight.json").read_text()) | {"report_version": REPORT_VERSION + 1}
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert main(["report", str(tmp_path / "old.json"), "--html", str(out)]) == 2
    assert f"report_version {REPORT_VERSION + 1}" in capsys.readouterr().err
    (tmp_path / "junk.json").write_text("{not json")
    assert main(["report", str(tmp_path / "junk.json"), "--html", str(out)]) == 2
    assert "not a readable JSON" in capsys.readouterr().err
    argv = ["report", str(inputs / "tight.json"), "--packed", str(inputs / "p.safetensors"), "--layer", "zz"]
    assert main([*argv, "--html", str(out)]) == 2
    assert "no layer 'zz'" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.json", "old.json"]


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed")
def test_renders_in_headless_chromium(tmp_path, inputs):
    out = tmp_path / "r.html"
    argv = [
        "report",
        inputs / "sim.json",
        inputs / "demo.json",
        "--html",
        out,
        "--packed",
        inputs / "p.safetensors",
    ]
    assert main([str(a) for a in argv]) == 0
    shot = tmp_path / "shot.png"
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--no-first-run", f"--screenshot={shot}", "--window-size=1280,2400", out.as_uri()]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    import matplotlib.image as mpimg

    pixels = mpimg.imread(shot)[..., :3]
    assert pixels.shape[0] >= 2000
    dark = (pixels.mean(axis=2) < 0.5).mean()  # text, bars and heat-map ink on a white page
    assert 0.005 < dark < 0.9
    assert len(np.unique(pixels.reshape(-1, 3).round(2), axis=0)) > 20  # colored plots, not a blank page
