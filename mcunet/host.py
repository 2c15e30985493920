"""Build the generated C library for the host and run it on batches of inputs."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .codegen.library import library_environment
from .compiler import CompiledModel
from .errors import McunetError
from .footprint import find_cc
from .graph import NP_TYPES
from .progress import plural

CFLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror"]
SANITIZE_FLAGS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-g"]


def cache_dir() -> Path:
    root = os.environ.get("MCUNET_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mcunet"
    path = Path(root) / "host"
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class HostBuild:
    exe: Path
    model: CompiledModel

    def run(self, inputs: list[np.ndarray], trace: bool = False) -> tuple[list[np.ndarray], list]:
        """Run every row of the batched inputs; returns batched outputs (and the trace records
        when the build traces: a list of (op index, bytes) in execution order, for row 0)."""
        g = self.model.graph
        rows = check_inputs(g, inputs)
        with tempfile.TemporaryDirectory(prefix="mcunet-run-") as tmp:
            tmp = Path(tmp)
            with open(tmp / "in.bin", "wb") as f:
                for r in range(rows):
                    for x in inputs:
                        f.write(np.ascontiguousarray(x[r]).tobytes())
            cmd = [str(self.exe), str(tmp / "in.bin"), str(tmp / "out.bin"), str(rows)]
            if trace:
                cmd.append(str(tmp / "trace.bin"))
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise McunetError(f"the generated code failed on the host (exit {proc.returncode}):\n"
                                  f"{proc.stderr.strip()[-4000:]}")
            raw = (tmp / "out.bin").read_bytes()
            outputs = split_outputs(g, raw, rows)
            records = _read_trace(tmp / "trace.bin") if trace else []
        return outputs, records


def load_inputs(paths: tuple[str, ...] | list[str], graph, random_rows: int = 0,
                seed: int = 0) -> list[np.ndarray]:
    """Model inputs from .npy files (one per model input), or `random_rows` random rows."""
    if paths:
        arrays = []
        for p in paths:
            if Path(p).exists() and not Path(p).is_file():
                raise McunetError(f"{p} is not a regular file; give a .npy file")
            try:
                arrays.append(np.load(p, allow_pickle=False))
            except FileNotFoundError:
                raise McunetError(f"no such file: {p}") from None
            except (ValueError, OSError) as exc:
                raise McunetError(f"{p} is not a readable .npy file ({exc})") from None
        return as_model_inputs(arrays, graph) if graph is not None else arrays
    if random_rows <= 0:
        raise McunetError("give --input X.npy (one per model input) or --random N")
    return random_inputs(graph, random_rows, seed)


def quantize_rows(x: np.ndarray, graph, index: int = 0) -> np.ndarray:
    """Float inputs as the model's input `index` takes them: quantised with its scale and
    zero point for an integer input (halves rounded away from zero, as TFLite's QUANTIZE
    rounds), unchanged for a float one."""
    t = graph.t(graph.inputs[index])
    if t.dtype == "float32":
        return x.astype(np.float32)
    if t.quant is None:
        raise McunetError(f"model input {index} has no quantisation parameters to quantise "
                          "float rows with")
    return quantize_with(x, t.quant.s, t.quant.zp, t.dtype)


def quantize_with(x: np.ndarray, scale: float, zero_point: int, dtype: str) -> np.ndarray:
    """round(x / scale) + zero_point, halves away from zero, clamped to the integer type."""
    v = x.astype(np.float64) / scale
    q = np.sign(v) * np.floor(np.abs(v) + 0.5) + zero_point
    info = np.iinfo(NP_TYPES[dtype])
    return np.clip(q, info.min, info.max).astype(NP_TYPES[dtype])


def as_model_inputs(arrays: list[np.ndarray], graph) -> list[np.ndarray]:
    """Float arrays for an integer model input quantised with that input's parameters (a
    user's real-valued data); others as they are (check_inputs judges them)."""
    result = []
    for k, x in enumerate(arrays):
        t = graph.t(graph.inputs[k]) if k < len(graph.inputs) else None
        if t is not None and x.dtype.kind == "f" and t.dtype != "float32":
            x = quantize_rows(x, graph, k)
        result.append(x)
    return result


def random_inputs(graph, rows: int, seed: int = 0) -> list[np.ndarray]:
    """Random rows for every model input: uniform over an integer input's range; around the
    quantisation scale (64 steps) for a float input."""
    rng = np.random.default_rng(seed)
    arrays = []
    for tid in graph.inputs:
        t = graph.t(tid)
        shape = (rows,) + tuple(t.shape[1:])
        if t.dtype == "float32":
            scale = t.quant.s if t.quant else 1.0
            arrays.append((rng.standard_normal(shape) * 64 * scale).astype(np.float32))
        else:
            info = np.iinfo(NP_TYPES[t.dtype])
            arrays.append(rng.integers(info.min, info.max + 1, size=shape).astype(NP_TYPES[t.dtype]))
    return arrays


def check_inputs(g, inputs: list[np.ndarray]) -> int:
    """The rows of a batch of model inputs; McunetError unless they fit the model."""
    if len(inputs) != len(g.inputs):
        raise McunetError(f"the model has {plural(len(g.inputs), 'input')} but "
                          f"{plural(len(inputs), 'array was', 'arrays were')} given")
    rows = None
    for k, (x, tid) in enumerate(zip(inputs, g.inputs)):
        t = g.t(tid)
        if t.shape and t.shape[0] != 1:
            raise McunetError(f"model input {k} has batch size {t.shape[0]}; simulate runs "
                              "models of batch size 1, one row of the batch at a time")
        if x.dtype != NP_TYPES[t.dtype]:
            raise McunetError(f"input {k} has dtype {x.dtype}; the model wants {t.dtype}")
        if tuple(x.shape[1:]) != tuple(t.shape[1:]):
            raise McunetError(f"input {k} has shape {x.shape}; the model wants (N, "
                              f"{', '.join(map(str, t.shape[1:]))}) for input shape {t.shape}")
        if rows is not None and x.shape[0] != rows:
            raise McunetError("all inputs must hold the same number of rows")
        rows = x.shape[0]
        if rows == 0:
            raise McunetError(f"input {k} holds no rows (shape {x.shape}); give at least one")
    return rows or 0


def split_outputs(g, raw: bytes, rows: int) -> list[np.ndarray]:
    """Batched model outputs from the raw bytes the generated code wrote, row after row."""
    return split_rows(raw, rows, [(g.t(t).shape, g.t(t).dtype) for t in g.outputs])


def split_rows(raw: bytes, rows: int, outs: list[tuple[tuple, str]]) -> list[np.ndarray]:
    """Batched arrays from raw rows, each row the (shape, dtype) arrays back to back."""
    sizes = [int(np.prod(shape[1:], dtype=np.int64)) * np.dtype(NP_TYPES[dtype]).itemsize
             for shape, dtype in outs]
    row_bytes = sum(sizes)
    if len(raw) != rows * row_bytes:
        raise McunetError(f"the generated code wrote {len(raw)} bytes, expected {rows * row_bytes}")
    data = np.frombuffer(raw, dtype=np.uint8).reshape(rows, row_bytes)
    result, pos = [], 0
    for (shape, dtype), size in zip(outs, sizes):
        chunk = data[:, pos:pos + size].copy()
        result.append(chunk.view(NP_TYPES[dtype]).reshape((rows,) + tuple(shape[1:])))
        pos += size
    return result


def _read_trace(path: Path) -> list[tuple[int, bytes]]:
    raw = path.read_bytes()
    records, pos = [], 0
    while pos < len(raw):
        op_index, nbytes = np.frombuffer(raw, dtype=np.int32, count=2, offset=pos)
        pos += 8
        records.append((int(op_index), raw[pos:pos + int(nbytes)]))
        pos += int(nbytes)
    return records


def build_host(model: CompiledModel, trace: bool = False, sanitize: bool = False,
               extra_flags: list[str] | None = None) -> HostBuild:
    """Compile the library and the host harness with the host C compiler (cached by content)."""
    lib = model.library()
    files = dict(lib.files)
    harness_ctx = {"inputs": [{"bytes": model.graph.t(t).nbytes} for t in model.graph.inputs],
                   "outputs": [{"bytes": model.graph.t(t).nbytes} for t in model.graph.outputs]}
    files["host_harness.c"] = library_environment(lib.name).get_template(
        "host_harness.c.j2").render(**harness_ctx)
    macro = lib.options.macro
    # Sanitized builds also put guard bytes around a static arena.
    guard = [f"-D{macro}_ARENA_GUARD"] if sanitize and not lib.options.external_arena else []
    flags = CFLAGS + ([f"-D{macro}_TRACE"] if trace else []) + \
        (SANITIZE_FLAGS + guard if sanitize else []) + (extra_flags or [])
    return HostBuild(exe=_compile_files(files, flags, "sim"), model=model)


# Training builds (--train): the float32 training step is bit-exact with the NumPy reference
# only without fused multiply-adds.
TRAIN_CFLAGS = ["-ffp-contract=off"]


@dataclass
class TrainingRun:
    """What the training harness reports: per step the status, loss and logits; the state
    after the last step; per evaluation row the model's output and the head's logits."""
    status: np.ndarray  # int32 [steps]
    losses: np.ndarray  # float32 [steps]
    logits: np.ndarray  # int8 [steps][units]
    state: dict[str, np.ndarray]
    outputs: np.ndarray  # [rows][output bytes] in the output's dtype
    eval_logits: np.ndarray  # int8 [rows][units]


@dataclass
class TrainingHost:
    exe: Path
    model: CompiledModel

    def run(self, inputs: np.ndarray, labels: np.ndarray, evaluate: np.ndarray | None = None,
            lr: float | None = None, momentum: float | None = None) -> TrainingRun:
        """Train on every (input row, label), in order, then invoke on each evaluate row."""
        t = self.model.training
        lr = t.lr if lr is None else lr
        momentum = t.momentum if momentum is None else momentum
        evaluate = inputs[:0] if evaluate is None else evaluate
        with tempfile.TemporaryDirectory(prefix="mcunet-train-") as tmp:
            tmp = Path(tmp)
            with open(tmp / "samples.bin", "wb") as f:
                for x, label in zip(inputs, labels):
                    f.write(np.ascontiguousarray(x, dtype=np.int8).tobytes())
                    f.write(np.int32(label).tobytes())
            (tmp / "eval.bin").write_bytes(np.ascontiguousarray(evaluate, dtype=np.int8).tobytes())
            cmd = [str(self.exe), str(tmp / "samples.bin"), str(len(inputs)),
                   str(tmp / "eval.bin"), str(len(evaluate)), str(tmp / "out.bin"),
                   repr(float(np.float32(lr))), repr(float(np.float32(momentum)))]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise McunetError(f"the training build failed on the host (exit "
                                  f"{proc.returncode}):\n{proc.stderr.strip()[-4000:]}")
            raw = (tmp / "out.bin").read_bytes()
        run, end = read_training_run(self.model, raw, 0, len(inputs), len(evaluate))
        assert end == len(raw), "the harness wrote what it says"
        return run


def read_training_run(model: CompiledModel, raw: bytes, pos: int, steps: int,
                      rows: int) -> tuple[TrainingRun, int]:
    """A training harness's results from `raw` at `pos` (the host's and the firmware's write
    the same records): per step int32 status, float32 loss and the int8 logits; the state;
    per evaluation row the output and the logits. Returns the run and the position after."""
    t = model.training
    g = model.graph
    u = t.head.units
    per = np.dtype([("status", "<i4"), ("loss", "<f4"), ("logits", "i1", (u,))])
    if len(raw) < pos + steps * per.itemsize:
        raise McunetError(f"the training results are short ({len(raw)} bytes)")
    rec = np.frombuffer(raw, per, count=steps, offset=pos)
    pos += steps * per.itemsize
    state = {}
    for key, _, ctype, shape in t.state_layout():
        dtype = {"int8_t": "i1", "int32_t": "<i4", "float": "<f4"}[ctype]
        count = int(np.prod(shape))
        if len(raw) < pos + np.dtype(dtype).itemsize * count:
            raise McunetError(f"the training results are short ({len(raw)} bytes)")
        state[key] = np.frombuffer(raw, dtype, count=count, offset=pos).copy().reshape(shape)
        pos += np.dtype(dtype).itemsize * count
    outputs, logits, pos = read_eval_rows(model, raw, pos, rows)
    return TrainingRun(status=rec["status"].copy(), losses=rec["loss"].copy(),
                       logits=rec["logits"].copy(), state=state, outputs=outputs,
                       eval_logits=logits), pos


def read_eval_rows(model: CompiledModel, raw: bytes, pos: int,
                   rows: int) -> tuple[np.ndarray, np.ndarray, int]:
    """`rows` records of (the model's output, the head's int8 logits) from `raw` at `pos`."""
    out_t = model.graph.t(model.graph.outputs[0])
    ev = np.dtype([("out", NP_TYPES[out_t.dtype], (out_t.size,)),
                   ("logits", "i1", (model.training.head.units,))])
    if len(raw) < pos + rows * ev.itemsize:
        raise McunetError(f"the training results are short ({len(raw)} bytes)")
    rec = np.frombuffer(raw, ev, count=rows, offset=pos)
    return rec["out"].copy(), rec["logits"].copy(), pos + rows * ev.itemsize


def build_training_host(model: CompiledModel, sanitize: bool = False) -> TrainingHost:
    """Compile a --train library with the training harness for the host (cached by content)."""
    if model.training is None:
        raise McunetError("build_training_host needs a --train build")
    lib = model.library()
    files = dict(lib.files)
    files["train_harness.c"] = library_environment(lib.name).get_template(
        "train_harness.c.j2").render(state=model.training.template_state())
    flags = CFLAGS + TRAIN_CFLAGS + (SANITIZE_FLAGS if sanitize else [])
    return TrainingHost(exe=_compile_files(files, flags, "train"), model=model)


def _compile_files(files: dict[str, str], flags: list[str], exe_name: str) -> Path:
    """Compile every .c of `files` into one host executable, cached by content and flags."""
    cc = find_cc()
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name].encode() + b"\0")
    digest.update(" ".join([cc] + flags).encode())
    folder = cache_dir() / digest.hexdigest()[:24]
    exe = folder / exe_name
    if exe.exists():
        return exe
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=cache_dir()))
    for rel, text in files.items():
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_text(text)
    sources = sorted(str(tmp / rel) for rel in files if rel.endswith(".c"))
    proc = subprocess.run([cc, *flags, "-I", str(tmp), *sources, "-o", str(tmp / exe_name)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise McunetError(f"the host C compiler rejected the generated code (this is a bug in "
                          f"mcunet; please report it):\n{proc.stderr.strip()[-4000:]}")
    try:
        tmp.rename(folder)
    except OSError:  # another process built the same thing meanwhile
        shutil.rmtree(tmp, ignore_errors=True)
    return exe

