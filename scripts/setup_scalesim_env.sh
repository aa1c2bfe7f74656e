#!/usr/bin/env bash
# Create (idempotently) the isolated SCALE-Sim v3 reference environment used by tests/test_hw_scalesim.py
# and benchmarks/bench_scalesim.py.
#
# SCALE-Sim 3.0.0 crashes under NumPy 2 (a TypeError from int(max(...)) in its scratchpad memory model),
# so it lives in its own virtualenv with numpy<2, apart from the project's environment.
#
# Where: $TIGHTCOMPRESS_SCALESIM_VENV if set, else <repo>/.venv-scalesim (git-ignored by `.venv*/`).
# The tests find the interpreter as $TIGHTCOMPRESS_SCALESIM_PYTHON, else <venv>/bin/python.
# Usage: bash scripts/setup_scalesim_env.sh        (prints the interpreter path on its last line)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${TIGHTCOMPRESS_SCALESIM_VENV:-$repo/.venv-scalesim}"
base_python="${PYTHON:-python3}"

if [ -x "$venv/bin/python" ] && "$venv/bin/python" - <<'PY' 2>/dev/null; then
import importlib.metadata as md
import sys
ok = md.version("scalesim") == "3.0.0" and int(md.version("numpy").split(".")[0]) < 2
sys.exit(0 if ok else 1)
PY
    echo "SCALE-Sim environment already present: $venv" >&2
else
    echo "creating SCALE-Sim environment in $venv" >&2
    "$base_python" -m venv --clear "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet "scalesim==3.0.0" "numpy<2"
fi
"$venv/bin/python" -c "import scalesim, numpy; print('scalesim OK, numpy', numpy.__version__)" >&2
echo "$venv/bin/python"
