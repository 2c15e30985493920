"""A plain `pip install .` (not editable) gives a working `mcunet` that finds its templates,
from a wheel whose only top-level package is mcunet."""
import os
import shutil
import subprocess
import sysconfig
import venv
import zipfile
from pathlib import Path

from .conftest import ROOT, mlperf_model


def test_plain_install_into_a_fresh_venv(tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    # mcunet itself from a wheel built from the tree; its dependencies from this environment
    # (so the test needs no network), which holds mcunet only as an editable finder.
    # Build from a copy, so setuptools' build/ folder never lands in the work tree.
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis"))
    wheels = tmp_path / "wheels"
    r = subprocess.run([str(py), "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels),
                        str(src)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    (wheel,) = wheels.glob("mcunet-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"mcunet"}, top
    for sub in ("codegen/ops/conv.py", "templates/kernels/conv2d_s8.c.j2", "boards/insn_count.c",
                "boards/platform/builder/main.py", "search/pipeline.py"):
        assert f"mcunet/{sub}" in names, sub
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", str(wheel)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    # The dependencies come from this environment, after the fresh venv's own site-packages
    # (a .pth file appends them), so the fresh venv's mcunet wins even where this environment
    # holds a plain install of its own.
    inner = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                           capture_output=True, text=True, check=True).stdout.strip()
    outer = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(inner) / "outer-deps.pth").write_text("\n".join(sorted(outer)) + "\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run([str(py), "-c", "import mcunet.templates; print(mcunet.__file__); "
                            "print(mcunet.templates.__file__)"], capture_output=True, text=True,
                           cwd=tmp_path, env=env)
    assert where.returncode == 0, where.stderr
    assert all(line.startswith(str(env_dir)) for line in where.stdout.split()), where.stdout
    out = tmp_path / "lib"
    r = subprocess.run([str(env_dir / "bin" / "mcunet"), "compile",
                        str(mlperf_model("kws_ref_model.tflite")), "--out", str(out)],
                       capture_output=True, text=True, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert (out / "kernels").is_dir() and (out / "mcunet_model.c").is_file()
