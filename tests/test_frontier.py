"""`tightcompress frontier`: the equal-accuracy summary (synthetic points), the method list, and (slow) a
tiny-budget run: JSON structure, the lowest rate equals the demo, resume, process pool, plot and report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tightcompress.cli.main import main
from tightcompress.errors import TightCompressError
from tightcompress.pipeline import frontier as frontier_module
from tightcompress.pipeline.compress import PIPELINE_METHODS
from tightcompress.pipeline.frontier import (
    FRONTIER_METHODS,
    FrontierConfig,
    build_frontier,
    parse_methods,
)
from tightcompress.pipeline.iso_accuracy import POINT_FIELDS, summarize


def _points(method: str, target: float, rates: list[float], accuracies: list[float], speedups, energies):
    return [
        {
            "method": method,
            "target_rate": target,
            "seed": seed,
            "compression_rate": rate,
            "accuracy": accuracy,
            "speedup": speedup,
            "energy_gain": energy,
        }
        for seed, (rate, accuracy, speedup, energy) in enumerate(
            zip(rates, accuracies, speedups, energies, strict=True)
        )
    ]


def _synthetic() -> list[dict]:
    """Dense mean 97.0. Means: tight 8x 96.9, 16x 96.5 (exactly -0.5), 32x 96.0 (exactly -1.0), 48x 90;
    column combining 8x 96.6, 16x 96.1, 32x 94.0; nm never within 1 pp."""
    return [
        *_points("tight", 8, [8.2, 8.4], [96.9, 96.9], [6, 6], [5, 5]),
        *_points("tight", 16, [16.2, 16.4], [96.6, 96.4], [10, 12], [9, 9]),
        *_points("tight", 32, [32.0, 33.0], [95.9, 96.1], [20, 22], [15, 17]),
        *_points("tight", 48, [48.5, 48.5], [90.0, 90.0], [30, 30], [20, 20]),
        *_points("column-combining", 8, [8.1, 8.3], [96.7, 96.5], [5, 6], [4, 5]),
        *_points("column-combining", 16, [16.0, 16.2], [96.0, 96.2], [10, 10], [8, 8]),
        *_points("column-combining", 32, [32.0, 32.0], [94.0, 94.0], [20, 20], [15, 15]),
        *_points("nm", 8, [8.0, 8.0], [95.0, 95.5], [5, 5], [4, 4]),
    ]


def test_iso_accuracy_and_ratios_on_synthetic_points() -> None:
    summary, iso, ratios = summarize(_synthetic(), dense_mean=97.0)
    by = {(row["method"], row["target_rate"]): row for row in summary}
    assert by[("tight", 16.0)]["compression_rate_mean"] == pytest.approx(16.3)
    assert by[("tight", 16.0)]["accuracy_mean"] == pytest.approx(96.5)
    assert by[("tight", 16.0)]["accuracy_std"] == pytest.approx(np.std([96.6, 96.4], ddof=1))
    assert (by[("tight", 16.0)]["accuracy_min"], by[("tight", 16.0)]["accuracy_max"]) == (96.4, 96.6)
    assert by[("tight", 16.0)]["seeds"] == [0, 1]
    assert set(iso) == {"0.5", "1.0"}
    # Within 0.5 pp: tight's 16x (exactly at the edge), column combining's 8x; nm none.
    assert iso["0.5"] == {"tight": pytest.approx(16.3), "column-combining": pytest.approx(8.2), "nm": None}
    # Within 1.0 pp: tight's 32x (mean rate 32.5), column combining's 16x (16.1).
    assert iso["1.0"] == {"tight": pytest.approx(32.5), "column-combining": pytest.approx(16.1), "nm": None}
    assert ratios["0.5"] == {
        "rate_tight_over_cc": pytest.approx(16.3 / 8.2),
        "throughput_tight_over_cc": pytest.approx(11 / 5.5),
        "energy_tight_over_cc": pytest.approx(9 / 4.5),
    }
    assert ratios["1.0"] == {
        "rate_tight_over_cc": pytest.approx(32.5 / 16.1),
        "throughput_tight_over_cc": pytest.approx(21 / 10),
        "energy_tight_over_cc": pytest.approx(16 / 8),
    }


def test_iso_accuracy_takes_the_highest_qualifying_rate_and_tolerates_float_error() -> None:
    # 12x fails, 16x passes: the highest measured rate that passes counts, not the first failure.
    points = [
        *_points("tight", 8, [8.0], [97.0], [1], [1]),
        *_points("tight", 12, [12.0], [95.0], [1], [1]),
        *_points("tight", 16, [16.0], [96.8], [1], [1]),
    ]
    _, iso, ratios = summarize(points, dense_mean=97.0, tolerances=(0.5,))
    assert iso == {"0.5": {"tight": 16.0}}
    assert ratios["0.5"] == dict.fromkeys(
        ("rate_tight_over_cc", "throughput_tight_over_cc", "energy_tight_over_cc")
    )  # no column combining: no ratio
    # mean(96.1, 96.6, 97.1) = 96.59999999999998 < 97.1 - 0.5 = 96.60000000000001 in floating point.
    dense = float(np.mean([97.0, 97.1, 97.2]))
    edge = _points("tight", 8, [8.0] * 3, [96.1, 96.6, 97.1], [1] * 3, [1] * 3)
    assert summarize(edge, dense_mean=dense, tolerances=(0.5,))[1]["0.5"]["tight"] == 8.0


def test_build_frontier_json_structure() -> None:
    config = FrontierConfig(methods=("tight", "column-combining", "nm"), rates=(8, 16, 32, 48), seeds=(0, 1))
    points = [p for p in _synthetic() if p["method"] in config.methods]
    result = build_frontier(config, points, {0: 96.9, 1: 97.1})
    assert set(result) >= {"dense", "points", "iso_accuracy", "ratios"}
    assert result["dense"] == {
        "accuracy_mean": pytest.approx(97.0),
        "accuracy_std": pytest.approx(np.std([96.9, 97.1], ddof=1)),
        "per_seed": {"0": 96.9, "1": 97.1},
    }
    assert all(set(p) == set(POINT_FIELDS) for p in result["points"])
    assert result["iso_accuracy"]["0.5"]["tight"] == pytest.approx(16.3)
    json.dumps(result)  # serialisable as it is


def test_methods_come_from_the_pipeline_and_parse_spaces_and_commas() -> None:
    assert FRONTIER_METHODS == (*PIPELINE_METHODS, "tight-subword")
    assert parse_methods(["tight,column-combining", "nm", "tight"]) == ("tight", "column-combining", "nm")
    with pytest.raises(TightCompressError, match="unknown method 'cc'"):
        parse_methods(["tight,cc"])
    with pytest.raises(TightCompressError, match="rates"):
        FrontierConfig(rates=(0.5,))
    with pytest.raises(TightCompressError, match="distinct"):
        FrontierConfig(rates=(8, 8.0))
    with pytest.raises(TightCompressError, match="seeds"):
        FrontierConfig(seeds=(-1,))


def test_cli_rejects_bad_input_in_one_line(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:  # a usage error, as for every command's --methods
        main(["frontier", "--methods", "tight,bogus", "--workdir", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "invalid choice 'bogus'" in capsys.readouterr().err.strip().splitlines()[-1]
    assert main(["frontier", "--rates", "200", "--methods", "tight", "--workdir", str(tmp_path)]) == 2
    assert "cannot be reached by tight" in capsys.readouterr().err
    assert not list(tmp_path.rglob("*.json"))


# ------------------------------------------------------------------------------------ tiny real runs
TINY = [
    "--widths", "8,16", "--dense-epochs", "1", "--prune-rounds", "1", "--prune-epochs", "0.2",
    "--finetune-epochs", "0.2", "--format-rounds", "1", "--rates", "4", "8", "--seeds", "0", "1",
]  # fmt: skip


def tiny_args(workdir: Path, out: Path, *extra: str) -> list[str]:
    return ["frontier", *TINY, "--workdir", str(workdir), "--json", str(out), "--quiet", *extra]


@pytest.fixture(scope="module")
def serial_run(tmp_path_factory) -> tuple[Path, dict]:
    """One tiny serial run (all four methods, rates 4 and 8, seeds 0 and 1) shared by the tests below."""
    root = tmp_path_factory.mktemp("frontier")
    out = root / "F.json"
    assert main(tiny_args(root / "work", out, "--jobs", "1", "--plot", str(root / "F.png"))) == 0
    return root, json.loads(out.read_text())


@pytest.mark.slow
def test_tiny_run_json_plot_and_report(serial_run, tmp_path: Path) -> None:
    root, result = serial_run
    assert set(result) >= {"dense", "points", "iso_accuracy", "ratios", "summary", "config"}
    assert set(result["dense"]["per_seed"]) == {"0", "1"}
    keys = [(p["method"], p["target_rate"], p["seed"]) for p in result["points"]]
    assert keys == [(m, r, s) for m in FRONTIER_METHODS for r in (4.0, 8.0) for s in (0, 1)]
    for point in result["points"]:
        assert point["compression_rate"] >= point["target_rate"] - 1e-9
        assert 0.0 <= point["accuracy"] <= 100.0 and point["speedup"] > 0 and point["energy_gain"] > 0
    _, iso, ratios = summarize(result["points"], result["dense"]["accuracy_mean"])
    assert (iso, ratios) == (result["iso_accuracy"], result["ratios"])
    assert (root / "F.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = tmp_path / "r.html"
    assert main(["report", str(root / "F.json"), "--html", str(html)]) == 0
    assert "accuracy vs rate, iso-accuracy lines" in html.read_text()


@pytest.mark.slow
def test_lowest_rate_points_are_the_demo(serial_run, tmp_path: Path) -> None:
    """Same data, model, dense training, pruning, budget and teacher: the frontier's lowest rate is `demo`."""
    from tightcompress.pipeline.compress import CompressConfig
    from tightcompress.pipeline.demo import DemoConfig, run_demo

    _, result = serial_run
    compress = CompressConfig(prune_rounds=1, prune_epochs=0.2, finetune_epochs=0.2, format_rounds=1)
    config = DemoConfig(
        rate=4.0, widths=(8, 16), dense_epochs=1.0, seed=1, compress=compress, subword_bit_rate=4.0
    )
    with frontier_module.deterministic_cpu():
        demo = run_demo(config, workdir=tmp_path, resume=False, quiet=True)
    points = {p["method"]: p for p in result["points"] if p["target_rate"] == 4.0 and p["seed"] == 1}
    assert result["dense"]["per_seed"]["1"] == demo["rows"][0]["accuracy"]
    for row in demo["rows"][1:]:
        point = points[row["method"]]
        assert (point["compression_rate"], point["accuracy"]) == (row["compression_rate"], row["accuracy"])
        assert (point["speedup"], point["energy_gain"]) == (row["speedup"], row["energy_gain"])


@pytest.mark.slow
def test_resume_reuses_points_and_seed_stages(serial_run, tmp_path: Path, monkeypatch, capsys) -> None:
    root, result = serial_run
    work = tmp_path / "work"
    shutil.copytree(root / "work", work)

    def never(*args, **kwargs):
        raise AssertionError("resume ran work that was finished")

    monkeypatch.setattr(frontier_module, "run_point", never)
    monkeypatch.setattr(frontier_module, "prepare_seed", never)
    out = tmp_path / "again.json"
    assert main(tiny_args(work, out, "--jobs", "1", "--resume")) == 0
    again = json.loads(out.read_text())
    assert (again["points"], again["dense"]) == (result["points"], result["dense"])
    # One point lost: only it runs again (its seed's stages come from the seed file), with the same result.
    lost = next(work.glob("frontier/point-column-combining-8x-s1-*.json"))
    lost.unlink()
    monkeypatch.undo()
    calls = []
    real = frontier_module.run_point
    monkeypatch.setattr(frontier_module, "run_point", lambda *a: calls.append(a[2:]) or real(*a))
    monkeypatch.setattr(frontier_module, "prepare_seed", never)
    assert main(tiny_args(work, out, "--jobs", "1", "--resume")) == 0
    assert calls == [("column-combining", 8.0)]
    assert json.loads(out.read_text())["points"] == result["points"]
    assert lost.is_file()
    capsys.readouterr()


@pytest.mark.slow
def test_process_pool_gives_the_serial_points(serial_run, tmp_path: Path) -> None:
    _, result = serial_run
    out = tmp_path / "pool.json"
    assert main(tiny_args(tmp_path / "work", out, "--jobs", "2", "--methods", "tight", "tight-subword")) == 0
    pooled = json.loads(out.read_text())
    wanted = [p for p in result["points"] if p["method"] in ("tight", "tight-subword")]
    assert (pooled["points"], pooled["dense"]) == (wanted, result["dense"])


@pytest.mark.slow
def test_a_rate_a_method_cannot_reach_is_recorded_not_fatal(tmp_path: Path, monkeypatch) -> None:
    real = frontier_module._measure_point

    def measure(config, stages, method, rate):
        if method == "column-combining" and rate == 8.0:  # as `fit.choose_options` says it
            raise TightCompressError(
                "compression rate 8x cannot be reached with these options; the best 7.9x"
            )
        return real(config, stages, method, rate)

    monkeypatch.setattr(frontier_module, "_measure_point", measure)
    out = tmp_path / "F.json"
    args = tiny_args(
        tmp_path / "work", out, "--jobs", "1", "--methods", "tight,column-combining", "--seeds", "0"
    )
    assert main(args) == 0
    result = json.loads(out.read_text())
    assert result["unreachable"] == [
        {
            "method": "column-combining",
            "target_rate": 8.0,
            "seed": 0,
            "unreachable": "compression rate 8x cannot be reached with these options; the best 7.9x",
        }
    ]
    assert [(p["method"], p["target_rate"]) for p in result["points"]] == [
        ("tight", 4.0), ("tight", 8.0), ("column-combining", 4.0)
    ]  # fmt: skip
    monkeypatch.setattr(frontier_module, "_measure_point", None)  # resumed from the files, nothing runs
    assert main([*args, "--resume"]) == 0
    assert json.loads(out.read_text())["unreachable"] == result["unreachable"]
