"""The ground truth for bit-exactness: TFLite's reference kernels (ai-edge-litert, BUILTIN_REF), or
with --arithmetic tflm TF Lite Micro's (tflite-micro's Python interpreter)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import McunetError


def _interpreter(model: str | Path | bytes, preserve: bool = False):
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise McunetError("ai-edge-litert is not installed; pip install ai-edge-litert") from exc
    kwargs = {"experimental_op_resolver_type": OpResolverType.BUILTIN_REF,
              "experimental_preserve_all_tensors": preserve}
    if isinstance(model, bytes):
        interp = Interpreter(model_content=model, **kwargs)
    else:
        interp = Interpreter(model_path=str(model), **kwargs)
    interp.allocate_tensors()
    return interp


def reference_outputs(model: str | Path | bytes, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Run each row of the batched inputs through TFLite's reference kernels."""
    interp = _interpreter(model)
    ins, outs = interp.get_input_details(), interp.get_output_details()
    rows = inputs[0].shape[0]
    results: list[list[np.ndarray]] = [[] for _ in outs]
    for r in range(rows):
        for d, x in zip(ins, inputs):
            interp.set_tensor(d["index"], x[r:r + 1].reshape(d["shape"]))
        interp.invoke()
        for k, d in enumerate(outs):
            results[k].append(interp.get_tensor(d["index"]).reshape(d["shape"][1:]).copy())
    return [np.stack(r) for r in results]


def reference_tensors(model: str | Path | bytes, inputs: list[np.ndarray]) -> dict[int, np.ndarray]:
    """Every tensor of the model after one invoke on the first row, by tensor index."""
    interp = _interpreter(model, preserve=True)
    for d, x in zip(interp.get_input_details(), inputs):
        interp.set_tensor(d["index"], x[0:1].reshape(d["shape"]))
    interp.invoke()
    tensors = {}
    for d in interp.get_tensor_details():
        try:
            tensors[d["index"]] = interp.get_tensor(d["index"]).copy()
        except ValueError:  # tensors without data (e.g. optional inputs)
            continue
    return tensors


# --- TF Lite Micro (--arithmetic tflm) -------------------------------------------------------
#
# tflite-micro's Python interpreter, run in a child process: it aborts the whole process on
# some models (a failed Prepare, a bad tensor index), and the child imports only numpy and
# tflite_micro, never mcunet or TensorFlow.

_TFLM_CHILD = r"""
import sys
import numpy as np
try:
    from tflite_micro.python.tflite_micro import runtime
except ImportError:
    sys.exit(3)
model_path, inputs_path, out_path, tensors = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
data = open(model_path, "rb").read()
feeds = np.load(inputs_path)
inputs = [feeds[f"x{i}"] for i in range(len(feeds.files))]
wanted = [int(t) for t in tensors.split(",") if t]
config = runtime.InterpreterConfig.kPreserveAllTensors if wanted else \
    runtime.InterpreterConfig.kAllocationRecording
interp = runtime.Interpreter.from_bytes(data, arena_size=10 * len(data) + (1 << 24),
                                        intrepreter_config=config)
outputs, rows = {}, inputs[0].shape[0] if inputs else 0
n_out = len(runtime.convert_bytearray_to_object(bytearray(data)).subgraphs[0].outputs)
for r in range(1 if wanted else rows):
    for i, x in enumerate(inputs):
        interp.set_input(x[r:r + 1].reshape(interp.get_input_details(i)["shape"]), i)
    interp.invoke()
    for k in range(n_out):
        y = np.array(interp.get_output(k))
        outputs.setdefault(f"y{k}", []).append(y.reshape(y.shape[1:]).copy())
result = {k: np.stack(v) for k, v in outputs.items()}
for t in wanted:
    result[f"t{t}"] = np.array(interp.GetTensor(t, 0)["tensor_data"])
np.savez(out_path, **result)
"""


def _run_tflm(model: str | Path | bytes, inputs: list[np.ndarray],
              tensors: list[int] = ()) -> dict[str, np.ndarray]:
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory(prefix="mcunet-tflm-") as tmp:
        tmp_path = Path(tmp)
        if isinstance(model, bytes):
            (tmp_path / "model.tflite").write_bytes(model)
            model = tmp_path / "model.tflite"
        np.savez(tmp_path / "in.npz", **{f"x{i}": x for i, x in enumerate(inputs)})
        proc = subprocess.run([sys.executable, "-c", _TFLM_CHILD, str(model),
                               str(tmp_path / "in.npz"), str(tmp_path / "out.npz"),
                               ",".join(str(t) for t in tensors)],
                              capture_output=True, text=True)
        if proc.returncode == 3:
            raise McunetError("--arithmetic tflm checks against TF Lite Micro's interpreter, "
                              "which is not installed: pip install 'tflite-micro>=0.dev0'")
        if proc.returncode != 0:
            lines = [ln for ln in (proc.stderr or "").splitlines() if ln.strip()]
            why = lines[-1] if lines else f"exit status {proc.returncode}"
            raise McunetError(f"TF Lite Micro's interpreter failed on this model: {why}")
        with np.load(tmp_path / "out.npz") as result:
            return {k: result[k] for k in result.files}


def tflm_outputs(model: str | Path | bytes, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Run each row of the batched inputs through TF Lite Micro's kernels (tflite-micro's
    Python interpreter, in a child process)."""
    result = _run_tflm(model, inputs)
    return [result[f"y{k}"] for k in range(len(result))]


def tflm_tensors(model: str | Path | bytes, inputs: list[np.ndarray],
                 tensors: list[int]) -> dict[int, np.ndarray]:
    """The given tensors (indices in the model) after one TF Lite Micro invoke on the first row."""
    result = _run_tflm(model, inputs, tensors)
    return {t: result[f"t{t}"] for t in tensors}


def expected_outputs(model: str | Path | bytes, inputs: list[np.ndarray],
                     arithmetic: str = "reference") -> list[np.ndarray]:
    """What the generated code must equal: TFLite's reference kernels, or with
    arithmetic "tflm" TF Lite Micro's."""
    if arithmetic == "tflm":
        return tflm_outputs(model, inputs)
    return reference_outputs(model, inputs)
