#!/usr/bin/env python3
"""Benchmark mcunet against TensorFlow Lite for Microcontrollers (TFLM), one row per model.

usage:
    python scripts/bench_compile.py                      # the four MLPerf Tiny models
    python scripts/bench_compile.py a.tflite b.tflite    # any int8 models
    python scripts/bench_compile.py --rows 500 --json bench.json

Per model it measures, in this run:

  compile s     seconds for mcunet.compiler.compile_model(path), rendering .library() and
                writing it to a temporary folder (the Python modules are imported beforehand,
                so the first model does not pay for the imports)
  code host     .text bytes of the generated kernels (kernels/*.c) and driver (mcunet_model.c)
                compiled for this machine with `cc -std=c99 -O2 -c`; code only: the weights
                (mcunet_weights.c) are not compiled, they are the next column
  code M4       the same with `arm-none-eabi-gcc -mcpu=cortex-m4 -mthumb -Os -c`; "n/a" when
                that compiler is not installed
  weights       flash constants in bytes (CompiledModel.flash_bytes)
  arena         our arena in bytes (CompiledModel.peak_sram_bytes: all RAM the library needs)
  TFLM head/total
                TFLM's arena for the same model, from the tflite-micro Python package's
                RecordingMicroAllocator (Interpreter.print_allocations(), read from the C-level
                stderr) after one invoke; "head" is the non-persistent (activation) part, "total"
                head + tail (persistent: tensor structs, node structs, kernel buffers)
  /head, /total ours divided by TFLM's head and total
  ours us       host microseconds per inference of our generated code, built with the host
                compiler at -O2 (mcunet.host.build_host): (t(N rows) - t(1 row)) / (N - 1),
                each t the best of --repeats runs, so process start-up and file I/O cancel out
  TFLM us       microseconds per inference of the tflite-micro interpreter over the same rows:
                set_input / invoke / get_output from Python, one pass after one warm-up invoke
  TFLM/ours     TFLM's time divided by ours (how many times faster our code is)
  out vs TFLM   "same" when our outputs equal TFLM's byte for byte on every row, else the
                largest difference in output LSB (the rows that differ are counted under the
                table); our code is bit-exact with TFLite's reference kernels, and TFLM differs
                from those in places (FULLY_CONNECTED's rescale: docs/arithmetic.md)

TFLM can abort the whole process on a model it cannot handle, so it is measured in a child
process (this script with --tflm-worker); a failure shows as "failed" and is explained under the
table. The timings are wall-clock on a possibly shared machine: compare them within one run.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL_DIR = ROOT.parent / "shared" / "models" / "mlperf-tiny"
DEFAULT_MODELS = ["vww_96_int8.tflite", "kws_ref_model.tflite", "pretrainedResnet_quant.tflite",
                  "ad01_int8.tflite"]
HOST_CFLAGS = ["-std=c99", "-O2", "-c"]
ARM_CC = "arm-none-eabi-gcc"
ARM_CFLAGS = ["-std=c99", "-mcpu=cortex-m4", "-mthumb", "-Os", "-c"]
TFLM_ARENA = 1 << 20  # generous: print_allocations reports what was actually used
WORKER_TIMEOUT_S = 900


# ---------------------------------------------------------------------------------------------
# code size


def benchmark_models(keras: bool = True, generated: bool = True) -> list[Path]:
    """The memory and stage benchmarks' default corpus: MLPerf Tiny, then (built and cached
    by scripts/model_zoo.py) the Keras MobileNets and the generated MBConv networks and
    ResNets."""
    import model_zoo

    models = [DEFAULT_MODEL_DIR / m for m in DEFAULT_MODELS]
    if keras:
        models += [model_zoo.build(name) for name in model_zoo.MODELS]
    if generated:
        models += [model_zoo.build_generated(name) for name in model_zoo.NETWORKS]
    return models


def _elf_text_bytes_python(path: Path) -> int:
    """Sum of the sizes of an ELF object's .text sections (.text and .text.*), parsed directly."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF":
        raise ValueError(f"{path} is not an ELF file")
    is64 = data[4] == 2
    end = "<" if data[5] == 1 else ">"
    if is64:
        shoff, = struct.unpack_from(end + "Q", data, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from(end + "HHH", data, 0x3A)
    else:
        shoff, = struct.unpack_from(end + "I", data, 0x20)
        shentsize, shnum, shstrndx = struct.unpack_from(end + "HHH", data, 0x2E)

    def header(i):
        off = shoff + i * shentsize
        if is64:
            name, _type, _flags, _addr, offset, size = struct.unpack_from(end + "IIQQQQ", data, off)
        else:
            name, _type, _flags, _addr, offset, size = struct.unpack_from(end + "IIIIII", data, off)
        return name, offset, size

    _, str_off, _ = header(shstrndx)
    total = 0
    for i in range(shnum):
        name_off, _, size = header(i)
        name = data[str_off + name_off:data.index(b"\0", str_off + name_off)].decode()
        if name == ".text" or name.startswith(".text."):
            total += size
    return total


def _size_tool(cc: str) -> str | None:
    """The binutils `size` matching compiler `cc` (arm-none-eabi-size for arm-none-eabi-gcc)."""
    base = Path(cc).name
    if base.endswith("-gcc"):
        prefixed = shutil.which(str(Path(cc).with_name(base[:-3] + "size"))) \
            or shutil.which(base[:-3] + "size")
        if prefixed:
            return prefixed
        return None  # the host `size` may not understand a cross target's objects
    return shutil.which("size")


def text_bytes(objects: list[Path], cc: str) -> int:
    """.text bytes of the objects: `size -A` when there is one for this target, else parsed."""
    tool = _size_tool(cc)
    if tool:
        proc = subprocess.run([tool, "-A", *map(str, objects)], capture_output=True, text=True)
        if proc.returncode == 0:
            total = 0
            for line in proc.stdout.splitlines():
                parts = line.split()
                if len(parts) >= 2 and (parts[0] == ".text" or parts[0].startswith(".text.")):
                    total += int(parts[1])
            return total
    return sum(_elf_text_bytes_python(o) for o in objects)


def code_bytes(lib_dir: Path, cc: str, flags: list[str]) -> int:
    """Compile the library's kernels and driver (not its weights) and sum their .text bytes."""
    sources = sorted((lib_dir / "kernels").glob("*.c")) + [lib_dir / "mcunet_model.c"]
    obj_dir = Path(tempfile.mkdtemp(prefix="obj-", dir=lib_dir))
    objects = []
    for k, src in enumerate(sources):
        obj = obj_dir / f"{k}_{src.stem}.o"
        proc = subprocess.run([cc, *flags, "-I", str(lib_dir), str(src), "-o", str(obj)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{cc} failed on {src.name}: {proc.stderr.strip()[-800:]}")
        objects.append(obj)
    return text_bytes(objects, cc)


def compiler_version(cc: str) -> str | None:
    if shutil.which(cc) is None:
        return None
    proc = subprocess.run([cc, "--version"], capture_output=True, text=True)
    return proc.stdout.splitlines()[0].strip() if proc.returncode == 0 and proc.stdout else cc


# ---------------------------------------------------------------------------------------------
# TFLM, in a child process


def tflm_worker(model: str, inputs_npz: str, n_outputs: int, arena: int, result_json: str,
                outputs_npz: str) -> None:
    """Run in a child process: build a TFLM interpreter, time set_input/invoke/get_output over
    the rows, then read print_allocations() from fd 2. Writes result_json and outputs_npz."""
    from tflite_micro.python.tflite_micro import runtime

    with np.load(inputs_npz) as z:
        inputs = [z[f"in{k}"] for k in range(len(z.files))]
    rows = inputs[0].shape[0]
    interp = runtime.Interpreter.from_file(model, arena_size=arena)

    def one(r):
        for k, x in enumerate(inputs):
            interp.set_input(x[r:r + 1], k)
        interp.invoke()
        return [interp.get_output(k) for k in range(n_outputs)]

    one(0)  # warm-up (first-invoke costs)
    outs = [[] for _ in range(n_outputs)]
    t0 = time.perf_counter()
    for r in range(rows):
        for k, y in enumerate(one(r)):
            outs[k].append(y)
    elapsed = time.perf_counter() - t0

    # print_allocations writes with C stdio to fd 2: point fd 2 at a file meanwhile.
    with tempfile.TemporaryFile(mode="w+b") as cap:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(cap.fileno(), 2)
            interp.print_allocations()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        cap.seek(0)
        text = cap.read().decode(errors="replace")
    figures = {}
    for part in ("total", "head", "tail"):
        m = re.search(rf"Arena allocation {part} (\d+) bytes", text)
        if m is None:
            raise RuntimeError(f"print_allocations() gave no '{part}' line:\n{text[-800:]}")
        figures[part] = int(m.group(1))
    np.savez(outputs_npz, **{f"out{k}": np.concatenate(v) for k, v in enumerate(outs)})
    Path(result_json).write_text(json.dumps({
        "arena_total": figures["total"], "arena_head": figures["head"], "arena_tail": figures["tail"],
        "us_per_inference": elapsed / rows * 1e6, "rows": rows}))


def measure_tflm(path: Path, inputs: list[np.ndarray], n_outputs: int, work: Path,
                 arena: int = TFLM_ARENA) -> dict:
    """TFLM's arena and per-invoke time for the model in a child process; on any failure
    {"error": why} (the child may abort, segfault or raise)."""
    np.savez(work / "tflm_in.npz", **{f"in{k}": x for k, x in enumerate(inputs)})
    cmd = [sys.executable, str(Path(__file__).resolve()), "--tflm-worker", str(path),
           str(work / "tflm_in.npz"), str(n_outputs), str(arena), str(work / "tflm.json"),
           str(work / "tflm_out.npz")]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=WORKER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {WORKER_TIMEOUT_S} s"}
    if proc.returncode != 0 or not (work / "tflm.json").exists():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        how = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}"
        return {"error": f"{how}: {' | '.join(tail) or 'no output'}"}
    result = json.loads((work / "tflm.json").read_text())
    with np.load(work / "tflm_out.npz") as z:
        result["outputs"] = [z[f"out{k}"] for k in range(n_outputs)]
    return result


# ---------------------------------------------------------------------------------------------
# one model


def _best_time(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def warm_up_imports() -> None:
    """Import what compile and render use, so the first model's compile time excludes it."""
    import mcunet.codegen.library  # noqa: F401
    import mcunet.codegen.ops  # noqa: F401
    import mcunet.compiler  # noqa: F401
    import mcunet.host  # noqa: F401


def measure_model(path: str | Path, rows: int = 200, seed: int = 0, repeats: int = 3,
                  tflm_arena: int = TFLM_ARENA, arm_cc: str = ARM_CC) -> dict:
    """Every figure of one table row for the model at `path` (see the module docstring).
    Sizes in bytes, times in seconds (compile) and microseconds (per inference); a figure that
    could not be measured is None, with the reason under "notes"."""
    from mcunet.compiler import compile_model
    from mcunet.host import build_host, find_cc, random_inputs

    if rows < 2:
        raise ValueError("rows must be at least 2 (the time per row is a difference)")
    path = Path(path)
    warm_up_imports()
    result = {"model": path.name, "path": str(path), "rows": rows, "notes": []}
    with tempfile.TemporaryDirectory(prefix="mcunet-bench-") as tmp:
        tmp = Path(tmp)
        lib_dir = tmp / "lib"

        t0 = time.perf_counter()
        compiled = compile_model(path)
        compiled.library().write(lib_dir)
        result["compile_s"] = time.perf_counter() - t0

        result["weights_bytes"] = compiled.flash_bytes
        result["arena_bytes"] = compiled.peak_sram_bytes
        result["macs"] = compiled.macs

        cc = find_cc()
        result["code_host_bytes"] = code_bytes(lib_dir, cc, HOST_CFLAGS)
        result["code_m4_bytes"] = None
        if shutil.which(arm_cc):
            try:
                result["code_m4_bytes"] = code_bytes(lib_dir, arm_cc, ARM_CFLAGS)
            except RuntimeError as e:
                result["notes"].append(f"Cortex-M4 build failed: {e}")

        graph = compiled.graph
        inputs = random_inputs(graph, rows, seed)
        host = build_host(compiled)  # built (or found in the cache) before any timing
        ours_out, _ = host.run(inputs)
        one_row = [x[:1] for x in inputs]
        t_one = _best_time(lambda: host.run(one_row), repeats)
        t_all = _best_time(lambda: host.run(inputs), repeats)
        result["ours_us"] = max(t_all - t_one, 0.0) / (rows - 1) * 1e6
        if t_all <= t_one:
            result["notes"].append("our run time is lost in process start-up noise: raise --rows")

        tflm = measure_tflm(path, inputs, len(graph.outputs), tmp, tflm_arena)
    if "error" in tflm:
        result.update(tflm_head_bytes=None, tflm_total_bytes=None, tflm_us=None,
                      matches_tflm=None, rows_differing_from_tflm=None, max_diff_vs_tflm=None,
                      tflm_error=tflm["error"])
        result["notes"].append(f"TFLM failed: {tflm['error']}")
    else:
        result.update(tflm_head_bytes=tflm["arena_head"], tflm_total_bytes=tflm["arena_total"],
                      tflm_tail_bytes=tflm["arena_tail"], tflm_us=tflm["us_per_inference"])
        differ = np.zeros(rows, bool)
        max_diff = 0
        for a, b in zip(ours_out, tflm["outputs"]):
            if a.shape != b.shape:
                raise RuntimeError(f"TFLM's output has shape {b.shape}, ours {a.shape}")
            diff = np.abs(a.astype(np.float64) - b.astype(np.float64)).reshape(rows, -1)
            differ |= (diff != 0).any(axis=1)
            max_diff = max(max_diff, float(diff.max()))
        result["matches_tflm"] = not differ.any()
        result["rows_differing_from_tflm"] = int(differ.sum())
        result["max_diff_vs_tflm"] = int(max_diff) if max_diff == int(max_diff) else max_diff
        if differ.any():
            result["notes"].append(
                f"outputs differ from TFLM's on {int(differ.sum())} of {rows} rows, by up to "
                f"{result['max_diff_vs_tflm']} LSB (ours follow TFLite's reference kernels; TFLM's "
                f"kernels differ from those in places, e.g. FULLY_CONNECTED's rescale: "
                f"docs/arithmetic.md)")

    def ratio(a, b):
        return a / b if a is not None and b else None

    result["ratio_arena_head"] = ratio(result["arena_bytes"], result["tflm_head_bytes"])
    result["ratio_arena_total"] = ratio(result["arena_bytes"], result["tflm_total_bytes"])
    result["speedup_vs_tflm"] = ratio(result["tflm_us"], result["ours_us"])
    return result


# ---------------------------------------------------------------------------------------------
# report


def machine_info() -> dict:
    uname = platform.uname()
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    try:
        from importlib.metadata import version
        tflm_version = version("tflite-micro")
    except Exception:  # noqa: BLE001
        tflm_version = "unknown version"
    import mcunet
    return {"system": f"{uname.system} {uname.release} {uname.machine}", "cpu": cpu or uname.machine,
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "cc": compiler_version(os.environ.get("CC", "cc")),
            "arm_cc": compiler_version(ARM_CC), "tflite_micro": tflm_version,
            "mcunet": mcunet.__version__}


COLUMNS = [  # (title, key, format)
    ("model", "model", "s"), ("compile s", "compile_s", ".2f"),
    ("code host", "code_host_bytes", "d"), ("code M4", "code_m4_bytes", "d"),
    ("weights", "weights_bytes", "d"), ("arena", "arena_bytes", "d"),
    ("TFLM head", "tflm_head_bytes", "d"), ("TFLM total", "tflm_total_bytes", "d"),
    ("/head", "ratio_arena_head", ".2f"), ("/total", "ratio_arena_total", ".2f"),
    ("ours us", "ours_us", ".1f"), ("TFLM us", "tflm_us", ".1f"),
    ("TFLM/ours", "speedup_vs_tflm", ".1f"), ("out vs TFLM", "max_diff_vs_tflm", "diff"),
]


def _cell(result: dict, key: str, fmt: str) -> str:
    value = result.get(key)
    if value is None:
        if "compile_s" not in result:  # mcunet itself failed on this model
            return "-" if key != "compile_s" else "failed"
        if key == "code_m4_bytes":
            return "n/a"
        return "failed" if "tflm_error" in result else "n/a"
    if fmt == "diff":
        return "same" if value == 0 else f"<={value} LSB"
    if fmt == "s":
        return str(value)
    return format(value, fmt)


def table(results: list[dict]) -> str:
    cells = [[title for title, _, _ in COLUMNS]]
    cells += [[_cell(r, key, fmt) for _, key, fmt in COLUMNS] for r in results]
    widths = [max(len(row[c]) for row in cells) for c in range(len(COLUMNS))]
    lines = []
    for i, row in enumerate(cells):
        lines.append("  ".join(text.ljust(w) if c == 0 else text.rjust(w)
                               for c, (text, w) in enumerate(zip(row, widths))))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def header_lines(info: dict, rows: int, repeats: int) -> list[str]:
    return [
        f"machine: {info['cpu']} ({info['cpus']} CPUs), {info['system']}, Python {info['python']}",
        f"host cc: {info['cc'] or 'not found'}; Cortex-M4: {info['arm_cc'] or ARM_CC + ' not installed (n/a)'}",
        f"mcunet {info['mcunet']}; TFLM: tflite-micro {info['tflite_micro']} Python package, measured "
        f"now in a child process (arena from print_allocations, time per invoke from Python)",
        f"sizes in bytes (code = .text of kernels + driver, weights excluded); times per inference "
        f"on {rows} random rows (ours: best of {repeats}, start-up subtracted); /head, /total = our "
        f"arena / TFLM's",
    ]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--tflm-worker":
        model, inputs_npz, n_outputs, arena, result_json, outputs_npz = argv[1:7]
        tflm_worker(model, inputs_npz, int(n_outputs), int(arena), result_json, outputs_npz)
        return 0

    parser = argparse.ArgumentParser(
        description="Compile time, code size, arena and host speed of mcunet's generated code "
                    "beside TFLM's (tflite-micro) arena and speed, one table row per model.")
    parser.add_argument("models", nargs="*", type=Path,
                        help=f"int8 .tflite files (default: the MLPerf Tiny models in "
                             f"{DEFAULT_MODEL_DIR})")
    parser.add_argument("--rows", type=int, default=200,
                        help="random input rows for the timings (default 200, at least 2)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs of our code per timing, the best counts (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="random-input seed (default 0)")
    parser.add_argument("--tflm-arena", type=int, default=TFLM_ARENA,
                        help=f"arena given to the TFLM interpreter (default {TFLM_ARENA}); it "
                             f"reports what it used")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results here")
    args = parser.parse_args(argv)
    if args.rows < 2:
        parser.error("--rows must be at least 2")
    models = args.models or [DEFAULT_MODEL_DIR / name for name in DEFAULT_MODELS]
    missing = [str(m) for m in models if not Path(m).is_file()]
    if missing:
        parser.error(f"no such model: {', '.join(missing)}")

    info = machine_info()
    results = []
    for model in models:
        print(f"measuring {Path(model).name} ...", file=sys.stderr, flush=True)
        try:
            results.append(measure_model(model, rows=args.rows, seed=args.seed,
                                         repeats=args.repeats, tflm_arena=args.tflm_arena))
        except Exception as e:  # noqa: BLE001  (one bad model must not hide the others)
            results.append({"model": Path(model).name, "path": str(model),
                            "notes": [f"measurement failed: {type(e).__name__}: {e}"]})
    print("\n".join(header_lines(info, args.rows, args.repeats)))
    print()
    print(table(results))
    notes = [f"{r['model']}: {n}" for r in results for n in r.get("notes", [])]
    if notes:
        print()
        print("\n".join(notes))
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "rows": args.rows,
                                         "repeats": args.repeats, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
