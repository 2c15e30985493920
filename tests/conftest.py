"""Shared fixtures: the MLPerf Tiny corpus, a CLI runner, and a per-session build cache."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODELS = Path(os.environ.get("MCUNET_MODELS", ROOT.parent / "shared" / "models" / "mlperf-tiny"))
MLPERF = ["vww_96_int8.tflite", "kws_ref_model.tflite", "pretrainedResnet_quant.tflite",
          "ad01_int8.tflite"]


def mlperf_model(name: str) -> Path:
    path = MODELS / name
    if not path.exists():
        pytest.fail(f"MLPerf Tiny model {path} is missing: the corpus lives in shared/models "
                    "beside the repository (or set MCUNET_MODELS)")
    return path


def pytest_xdist_auto_num_workers(config):
    """`-n auto`: a worker per core, at most four (each may hold TensorFlow, a Ray cluster or
    a QEMU run; more workers than that mostly wait on the same slow files)."""
    return max(1, min(4, os.cpu_count() or 1))


@pytest.fixture(scope="session", autouse=True)
def _build_cache(tmp_path_factory):
    """Host builds go to a cache private to this test session."""
    os.environ.setdefault("MCUNET_CACHE", str(tmp_path_factory.mktemp("mcunet-cache")))


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `python -m mcunet ARGS` in a fresh process, as a user would."""
    return subprocess.run([sys.executable, "-m", "mcunet", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env={**os.environ, **(env or {})}, timeout=600)
