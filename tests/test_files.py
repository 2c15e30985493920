"""Files and paths (issue 10): only regular files are read as models, with a size limit and the
identifier checked first; outputs go only where asked (no missing parents created, no writing
into folders of unrelated files); bad options end in one `error:` line with exit code 2."""
from __future__ import annotations

import os

import numpy as np
import pytest

from mcunet.errors import McunetError
from mcunet.frontend import MAX_MODEL_BYTES, read_tflite
from mcunet.outdir import MANIFEST, check_dir, record, written_before

from .conftest import mlperf_model, run_cli
from .test_errors import assert_clean_error

AD01 = "ad01_int8.tflite"  # the fastest model to compile


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "model.tflite"
    os.mkfifo(fifo)
    for command in ("plan", "inspect"):
        assert_clean_error(run_cli(command, fifo), "is a FIFO", "give the path of a .tflite file")


@pytest.mark.parametrize("path, fragment", [("/dev/zero", "is a device"),
                                            ("/proc/self/mem", "cannot read /proc/self/mem")])
def test_devices_and_unreadable_files(path, fragment):
    assert_clean_error(run_cli("plan", path, "--no-png"), fragment)


def test_a_socket_is_refused(tmp_path):
    import socket
    path = tmp_path / "s.tflite"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
        with pytest.raises(McunetError, match="is a socket"):
            read_tflite(path)


def test_size_limit_before_reading(tmp_path):
    big = tmp_path / "big.tflite"
    with open(big, "wb") as f:  # sparse: 2 GiB that take no disk
        f.truncate(2 << 30)
    assert_clean_error(run_cli("plan", big, "--no-png"), "2,147,483,648 bytes",
                       f"at most {MAX_MODEL_BYTES >> 20} MiB")


def test_the_identifier_is_checked_on_the_first_bytes(tmp_path, monkeypatch):
    """A big file that is not a model: only its first 8 bytes are read."""
    path = tmp_path / "junk.tflite"
    with open(path, "wb") as f:
        f.write(b"not a model")
        f.truncate(100 << 20)
    reads = []
    real_open = open

    def counting_open(*args, **kwargs):
        f = real_open(*args, **kwargs)
        original = f.read
        f.read = lambda n=-1: reads.append(n) or original(n)
        return f

    monkeypatch.setattr("builtins.open", counting_open)
    with pytest.raises(McunetError, match="not a TensorFlow Lite model"):
        read_tflite(path)
    assert reads == [8]


def test_out_must_not_create_missing_parents(tmp_path):
    r = run_cli("compile", mlperf_model(AD01), "--out", tmp_path / "missing" / "lib")
    assert_clean_error(r, "the folder", "missing does not exist", "does not create missing parent")
    assert not (tmp_path / "missing").exists()


def test_out_under_a_file_and_out_a_file(tmp_path):
    (tmp_path / "afile").write_text("x")
    assert_clean_error(run_cli("compile", mlperf_model(AD01), "--out", tmp_path / "afile" / "lib"),
                       "afile is not a folder")
    assert_clean_error(run_cli("compile", mlperf_model(AD01), "--out", tmp_path / "afile"),
                       "is a file, not a folder")


def test_out_refuses_a_folder_of_unrelated_files(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "notes.txt").write_text("mine")
    assert_clean_error(run_cli("compile", mlperf_model(AD01), "--out", tmp_path / "lib"),
                       "holds files mcunet did not write (notes.txt)")
    assert_clean_error(run_cli("compile", mlperf_model(AD01), "--out", "/"),
                       "--out / holds files mcunet did not write")
    assert (tmp_path / "lib" / "notes.txt").read_text() == "mine"


def test_recompiling_replaces_what_mcunet_wrote_and_only_that(tmp_path):
    out = tmp_path / "lib"
    out.mkdir()  # an empty folder is fine
    r = run_cli("compile", mlperf_model("kws_ref_model.tflite"), "--out", out)
    assert r.returncode == 0, r.stderr
    first = set(written_before(out))
    assert {"mcunet_model.c", "report.html", "memory.png"} <= first
    assert any(f.startswith("kernels/mcunet_depthwise") for f in first)
    (out / "notes.txt").write_text("the user's")
    r = run_cli("compile", mlperf_model(AD01), "--out", out)
    assert r.returncode == 0, r.stderr
    second = set(written_before(out))
    kernels = {str(p.relative_to(out)) for p in (out / "kernels").glob("*.c")}
    assert kernels == {f for f in second if f.startswith("kernels/")}  # no stale kernels
    assert not any("depthwise" in k for k in kernels)
    assert (out / "notes.txt").read_text() == "the user's"


def test_record_removes_only_listed_files_inside_the_folder(tmp_path):
    out = check_dir(tmp_path / "o")
    out.mkdir()
    (out / "sub").mkdir()
    for name in ("a.c", "sub/b.c", "keep.c"):
        (out / name).write_text(name)
    (tmp_path / "outside.c").write_text("x")
    (out / MANIFEST).write_text("# test\na.c\nsub/b.c\n../outside.c\n/etc/passwd\nkeep.c\n")
    record(out, ["keep.c"])
    assert not (out / "a.c").exists() and not (out / "sub").exists()
    assert (out / "keep.c").exists() and (tmp_path / "outside.c").exists()
    assert written_before(out) == ["keep.c"]


def test_png_needs_an_existing_folder(tmp_path):
    r = run_cli("plan", mlperf_model(AD01), "--png", tmp_path / "no" / "where" / "m.png")
    assert_clean_error(r, "--png", "does not exist")
    assert not (tmp_path / "no").exists()
    r = run_cli("plan", mlperf_model(AD01), "--png", tmp_path)
    assert_clean_error(r, "is a folder; give a file name")


def test_simulate_output_and_input_paths(tmp_path):
    model = mlperf_model(AD01)
    assert_clean_error(run_cli("simulate", model, "--random", "1", "--output",
                               tmp_path / "nonexistent" / "y.npy"), "nonexistent does not exist")
    empty = tmp_path / "empty.npy"
    np.save(empty, np.zeros((0, 640), np.int8))
    assert_clean_error(run_cli("simulate", model, "--input", empty, "--check"),
                       "input 0 holds no rows")
    assert_clean_error(run_cli("simulate", model, "--input", tmp_path), "is not a regular file")


@pytest.mark.parametrize("args, fragment", [
    (["simulate", "MODEL", "--random", "1", "--seed", "-5"], "Invalid value for '--seed'"),
    (["plan", "MODEL", "--sram", "", "--no-png"], "cannot read '' as a size"),
    (["plan", "MODEL", "--flash", "", "--no-png"], "cannot read '' as a size"),
    (["plan", "MODEL", "--board", "", "--no-png"], "unknown board ''"),
    (["plan", "MODEL", "--sram", "999999999999999KB", "--no-png"], "is more than 4 GiB"),
    (["compile", "MODEL"], "Missing option '--out'"),
    (["plan", "MODEL", "--bogus"], "No such option '--bogus'"),
    (["build", "MODEL", "--board", "mps2-an386", "--out", "/"], "holds files mcunet did not write"),
])
def test_bad_options_end_in_one_error_line(args, fragment):
    args = [str(mlperf_model(AD01)) if a == "MODEL" else a for a in args]
    assert_clean_error(run_cli(*args), fragment)
