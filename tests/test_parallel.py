"""Parallel packing: results identical for any job count, errors surface, Ray fails clearly."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from tightcompress.api import PackConfig
from tightcompress.errors import TightCompressError
from tightcompress.parallel import pack_layers


def _matrices():
    rng = np.random.default_rng(0)
    return {f"m{i}": rng.standard_normal((48 + 16 * i, 24)).astype(np.float32) for i in range(4)}


_ARRAYS = ("row_perm", "col_perm", "heights", "values", "lanes", "group_offsets")


@pytest.mark.slow
def test_results_independent_of_job_count():
    config = PackConfig(method="tight", group=8, height=2, tile=8, sparsity=0.8, iterations=3000, seed=3)
    serial = pack_layers(_matrices(), config, jobs=1)
    pooled = pack_layers(_matrices(), config, jobs=2)
    assert list(serial) == list(pooled) == list(_matrices())  # input order kept
    for name in serial:
        for array in _ARRAYS:
            assert np.array_equal(getattr(serial[name], array), getattr(pooled[name], array)), (name, array)


def test_worker_error_surfaces():
    matrices = {"ok": np.ones((8, 8), np.float32), "bad": np.zeros((8, 8), np.float32)}
    with pytest.raises(TightCompressError, match="bad: the matrix is all zeros"):
        pack_layers(matrices, PackConfig(method="dense"), jobs=1)


def test_bad_jobs_rejected():
    with pytest.raises(TightCompressError, match="jobs"):
        pack_layers(_matrices(), PackConfig(method="dense"), jobs=0)


# Fakes only for the failure paths, and only loopback addresses (real Ray runs in tests/test_ray.py).
def test_ray_missing_or_unreachable_fails_clearly(monkeypatch):
    config = PackConfig(method="dense")
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(TightCompressError, match=r"Ray is not installed.*drop --ray"):
        pack_layers(_matrices(), config, ray_address="127.0.0.1:6379")

    class FakeRay:
        @staticmethod
        def is_initialized():
            return False

        @staticmethod
        def init(**kwargs):
            raise ConnectionError(f"could not connect to {kwargs['address']}")

    monkeypatch.setitem(sys.modules, "ray", FakeRay)
    monkeypatch.setattr("tightcompress.parallel._probe", lambda address, **kwargs: None)
    with pytest.raises(
        TightCompressError, match=r"cannot reach the Ray cluster at 127.0.0.1:6379.*no fallback"
    ):
        pack_layers(_matrices(), config, ray_address="127.0.0.1:6379")


def test_ray_address_nobody_listens_on_fails_fast(monkeypatch):
    import socket

    monkeypatch.setitem(sys.modules, "ray", object())  # installed, but never reached
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connection refused
        with pytest.raises(TightCompressError, match=r"cannot reach the Ray cluster at 127.0.0.1:\d+"):
            pack_layers(_matrices(), PackConfig(method="dense"), ray_address=f"127.0.0.1:{port}")
    with pytest.raises(TightCompressError, match="expected HOST:PORT"):
        pack_layers(_matrices(), PackConfig(method="dense"), ray_address="nowhere")
