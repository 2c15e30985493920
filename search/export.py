"""Full-int8 post-training quantisation with TF's converter, int8 accuracy, model.json."""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import numpy as np

from mcunet.errors import McunetError


def to_int8_tflite(model, representative: np.ndarray) -> bytes:
    """int8 weights, activations, input and output; calibrated on `representative`
    (float images as the model takes them)."""
    import tensorflow as tf

    def rep():
        for i in range(len(representative)):
            yield [representative[i:i + 1].astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = rep
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    with quiet_fds() as log:
        try:
            return converter.convert()
        except Exception as exc:
            log.seek(0)
            raise McunetError(f"TF's converter failed ({type(exc).__name__}: {exc}); its log "
                              f"ends: {log.read()[-800:]}") from None


@contextlib.contextmanager
def quiet_fds():
    """Send what TensorFlow prints (Python and C level) to a temporary file while converting."""
    import sys
    import tempfile

    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile("w+") as log:
        saved = [os.dup(1), os.dup(2)]
        try:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                yield log
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            log.seek(0)


def io_quant(tflite: bytes) -> tuple[float, int, float, int]:
    """(input scale, input zero point, output scale, output zero point)."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=tflite)
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    return (float(i["quantization"][0]), int(i["quantization"][1]),
            float(o["quantization"][0]), int(o["quantization"][1]))


def quantize_input(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return np.clip(np.round(x / scale) + zero_point, -128, 127).astype(np.int8)


def int8_predict(tflite: bytes, x: np.ndarray, batch: int = 250,
                 reference: bool = True) -> np.ndarray:
    """int8 outputs of the model on float inputs x (quantised as the device would), with
    TFLite's reference kernels (the ones mcunet's generated C matches bit for bit), or with
    its optimised kernels (reference=False: ten times faster, for accuracy figures)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.BUILTIN_REF if reference else OpResolverType.AUTO
    it = Interpreter(model_content=tflite, experimental_op_resolver_type=resolver)
    inp = it.get_input_details()[0]
    scale, zp = inp["quantization"]
    q = quantize_input(x, scale, zp)
    out = []
    for i in range(0, len(q), batch):
        chunk = q[i:i + batch]
        it.resize_tensor_input(inp["index"], list(chunk.shape))
        it.allocate_tensors()
        it.set_tensor(inp["index"], chunk)
        it.invoke()
        out.append(it.get_tensor(it.get_output_details()[0]["index"]).copy())
    return np.concatenate(out)


def int8_accuracy(tflite: bytes, x: np.ndarray, y: np.ndarray) -> float:
    if len(x) == 0:
        return float("nan")
    return float((int8_predict(tflite, x).argmax(1) == y).mean())


def write_model(out: Path, tflite: bytes, meta: dict) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    model_path, json_path = out / "model.tflite", out / "model.json"
    model_path.write_bytes(tflite)
    json_path.write_text(json.dumps(meta, indent=2) + "\n")
    return model_path, json_path
