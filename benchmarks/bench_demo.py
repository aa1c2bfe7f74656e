"""Reproduce the demo table: run `tightcompress demo` in a fresh (or given) cache dir, time it, write JSON.

    python benchmarks/bench_demo.py --json benchmarks/demo.json [--workdir DIR] [--keep-cache]

Without --workdir the run uses a new temporary cache, so the wall time includes training the dense model.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time

from tightcompress.cli.main import main as cli_main
from tightcompress.utils.atomic import write_json_atomic


def run(argv: list[str] | None = None) -> int:
    """Run the demo through the CLI and write its table plus the wall time."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", required=True, help="where to write {rows, seconds, command}")
    parser.add_argument("--workdir", help="cache dir (default: a fresh temporary one)")
    parser.add_argument("extra", nargs="*", help="further `tightcompress demo` options (after --)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tc-demo-") as tmp:
        workdir = args.workdir or tmp
        table = f"{tmp}/table.json"
        command = ["demo", "--workdir", workdir, "--json", table, *args.extra]
        start = time.perf_counter()
        code = cli_main(command)
        seconds = time.perf_counter() - start
        if code != 0:
            return code
        with open(table) as handle:
            rows = json.load(handle)["rows"]
    write_json_atomic(
        args.json,
        {"rows": rows, "seconds": seconds, "command": "tightcompress " + " ".join(command[:1] + command[5:])},
    )
    print(f"wall time {seconds:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run())
