"""Full-int8 post-training quantisation with TF's converter, int8 accuracy, model.json."""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import numpy as np

from mcunet.errors import McunetError


def to_int8_tflite(model, representative: np.ndarray, float_io: bool = False) -> bytes:
    """int8 weights and activations, and int8 input and output (float32 ones with
    float_io); calibrated on `representative` (float inputs as the model takes them)."""
    import tensorflow as tf

    return _convert(tf.lite.TFLiteConverter.from_keras_model(model), representative, float_io)


KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")


def is_keras(path: str | Path) -> bool:
    """A Keras model file or a SavedModel folder (what `mcunet quantize` takes)."""
    path = Path(path)
    return path.suffix.lower() in KERAS_SUFFIXES or (path.is_dir() and
                                                    (path / "saved_model.pb").is_file())


def load_keras(path: str | Path):
    """A Keras model (.keras/.h5), or a SavedModel folder's serving function."""
    import tensorflow as tf

    path = Path(path)
    if not path.exists():
        raise McunetError(f"no such file or folder: {path}")
    with quiet_fds() as log:
        try:
            if path.is_dir():
                return tf.saved_model.load(str(path))
            return tf.keras.models.load_model(str(path), compile=False)
        except Exception as exc:
            log.seek(0)
            raise McunetError(f"{path} is not a Keras model TensorFlow can load "
                              f"({type(exc).__name__}: {str(exc)[:300]})") from None


def input_shape(model) -> tuple[int, ...]:
    """(1, *the model's input shape) of a Keras model or a SavedModel's serving function."""
    if hasattr(model, "input_shape"):
        shape = model.input_shape
        if isinstance(shape, list):
            raise McunetError("the model has several inputs; mcunet quantize takes one")
    else:
        spec = list(model.signatures["serving_default"].structured_input_signature[1].values())
        if len(spec) != 1:
            raise McunetError("the SavedModel's serving function takes several inputs; "
                              "mcunet quantize takes one")
        shape = tuple(spec[0].shape)
    if any(d is None for d in shape[1:]):
        raise McunetError(f"the model's input shape {shape} is not fixed; give it a fixed "
                          "input size (e.g. input_shape=(96, 96, 3)) before quantising")
    return (1, *map(int, shape[1:]))


def quantize_keras(path: str | Path, representative: np.ndarray, float_io: bool = False) -> bytes:
    """Full int8 post-training quantisation of a Keras file or a SavedModel folder."""
    import tensorflow as tf

    path = Path(path)
    if path.is_dir():
        converter = tf.lite.TFLiteConverter.from_saved_model(str(path))
    else:
        converter = tf.lite.TFLiteConverter.from_keras_model(load_keras(path))
    return _convert(converter, representative, float_io)


def _convert(converter, representative: np.ndarray, float_io: bool) -> bytes:
    import tensorflow as tf

    def rep():
        for i in range(len(representative)):
            yield [representative[i:i + 1].astype(np.float32)]

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = rep
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if not float_io:
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
