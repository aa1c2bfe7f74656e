"""The JSON on disk stays compatible: files written before the typed results (`tests/data/outputs_v0/`) load
through today's classes, and today's writers, run with the same commands (`tests/output_cases.py`), write
the same file names and the same fields (a field-set comparison: values may differ; a field added since is
listed in `ADDED`, a field lost fails). Every field a writer emits is declared in its class, and a report
with a field of the wrong type is one line naming it."""

from __future__ import annotations

import csv
import json
import tomllib
from pathlib import Path

import pytest

from output_cases import FAST, SLOW, make_outputs
from tightcompress.cli.main import main
from tightcompress.results import (
    ArchFile,
    AreaReport,
    CompressReport,
    DemoReport,
    FrontierReport,
    PackReport,
    Result,
    RtlManifest,
    SimulateReport,
    SweepRow,
)  # fmt: skip

V0 = Path(__file__).resolve().parent / "data" / "outputs_v0"
CLASSES: dict[str, type[Result]] = {
    "pack": PackReport, "simulate": SimulateReport, "compress": CompressReport, "demo": DemoReport,
    "frontier": FrontierReport, "manifest": RtlManifest, "area": AreaReport,
}  # fmt: skip


# Fields added since outputs_v0 was written, by file: adding a field is compatible (readers ignore what
# they do not know); list it here with its class line so the change is seen.
ADDED: dict[str, set[str]] = {
    # issue 23 (pack --rate, --allocation): the rate asked and how each layer's share was chosen
    "pack-oneshot.json": {".allocation", ".target_rate", ".config.one_shot.allocation"},
}


def result_class(name: str) -> type[Result]:
    return next(cls for prefix, cls in CLASSES.items() if name.startswith(prefix))


def field_set(value, path: str = "") -> set[str]:
    """Every field path of a JSON value, list items merged (`layers[].cycles`); dict-valued maps keyed by
    data (layer names, energy parts, tolerances) stay fields too: a writer that renames one changes them."""
    if isinstance(value, dict):
        out = set()
        for key, item in value.items():
            out |= {f"{path}.{key}"} | field_set(item, f"{path}.{key}")
        return out
    if isinstance(value, list):
        return set().union(*(field_set(item, f"{path}[]") for item in value)) if value else set()
    return set()


def csv_header(path: Path) -> list[str]:
    with open(path, newline="") as handle:
        return next(csv.reader(handle))


def v0_files() -> list[str]:
    return sorted(p.name for p in V0.iterdir() if p.name != "README.md")


def test_the_fixtures_cover_every_output_kind():
    names = v0_files()
    for prefix in [*CLASSES, "sweep", "arch"]:
        assert any(n.startswith(prefix) for n in names), prefix


@pytest.mark.parametrize("name", [n for n in v0_files() if n.endswith(".json")])
def test_a_file_from_before_loads_through_its_class(name):
    """Strict load (the readers' mode), the same JSON back, and every field declared by a class."""
    data = json.loads((V0 / name).read_text())
    result = result_class(name).load(V0 / name)
    assert result.to_json() == data
    assert result.undeclared() == []


def test_the_sweep_csv_and_the_arch_file_from_before_load():
    with open(V0 / "sweep.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows
    assert all(SweepRow.from_csv(row, "sweep.csv", i).undeclared() == [] for i, row in enumerate(rows))
    arch = ArchFile.from_data(tomllib.loads((V0 / "arch.toml").read_text()), "arch.toml")
    assert arch.buffers.weights.size_kb == 32


def _compare(kinds: tuple[str, ...], tmp_path: Path) -> None:
    written = make_outputs(tmp_path, kinds)
    expected = {n for n in v0_files() if any(n.startswith(k) for k in kinds) or (n == "manifest.json"
                                                                                and "export" in kinds)}
    assert set(written) == expected
    for name, path in written.items():
        if name.endswith(".csv"):
            assert csv_header(path) == csv_header(V0 / name)
            continue
        if name.endswith(".toml"):
            continue
        now = json.loads(path.read_text())
        before = json.loads((V0 / name).read_text())
        if name.startswith("area"):  # the cache flag says whether this run synthesised; both are fine
            now.pop("cached", None), before.pop("cached", None)
        lost = field_set(before) - field_set(now)
        assert not lost, f"{name}: today's writer no longer writes {sorted(lost)}"
        assert result_class(name).load(path).undeclared() == [], name  # a new field has its class line
        assert field_set(now) - field_set(before) <= ADDED.get(name, set()), name


def test_todays_writers_write_the_same_files_and_fields(tmp_path):
    _compare(tuple(k for k in FAST if k != "area"), tmp_path)


@pytest.mark.slow
def test_todays_area_compress_demo_and_frontier_write_the_same_fields(tmp_path):
    _compare(("area", *SLOW), tmp_path)


def test_a_field_of_the_wrong_type_is_one_line_naming_it(tmp_path, capsys):
    report = json.loads((V0 / "simulate-tight.json").read_text())
    report["layers"][1]["packed_slots"] = "x"
    (tmp_path / "report.json").write_text(json.dumps(report))
    assert main(["report", str(tmp_path / "report.json"), "--html", str(tmp_path / "o.html")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("report.json: layers[1].packed_slots: expected an integer, got 'x'")
    assert "\n" not in err and not (tmp_path / "o.html").exists()
