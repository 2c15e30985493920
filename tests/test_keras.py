"""Keras' own MobileNet and MobileNetV2, converted to full int8 with TF's converter (random
weights: no download), compile and simulate bit-exactly."""
import numpy as np
import pytest

from .opcheck import assert_bit_exact

import tensorflow as tf  # the [tf] extra, installed by scripts/setup.sh

from .conftest import ROOT


def _zoo():
    """scripts/model_zoo.py: calibration and conversion shared with the benchmarks."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("model_zoo", ROOT / "scripts" / "model_zoo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ZOO = _zoo()
calibrate, to_int8_tflite = ZOO.calibrate, ZOO.to_int8_tflite


@pytest.fixture(scope="module")
def mobilenet_v2():
    tf.keras.utils.set_random_seed(1)
    return calibrate(tf.keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35,
                                                       weights=None, classes=10), (96, 96, 3))


def test_mobilenet_v1_025_128():
    tf.keras.utils.set_random_seed(0)
    model = calibrate(tf.keras.applications.MobileNet(input_shape=(128, 128, 3), alpha=0.25,
                                                      weights=None, classes=10), (128, 128, 3))
    compiled, _ = assert_bit_exact(to_int8_tflite(model, (128, 128, 3)), rows=4, flags=None)
    kinds = {s.op.kind for s in compiled.steps}
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "SOFTMAX"} <= kinds
    assert compiled.patch is not None  # --patch auto runs the 64x64 stage patch by patch


def test_mobilenet_v2_035_96(mobilenet_v2):
    data = to_int8_tflite(mobilenet_v2, (96, 96, 3))
    compiled, _ = assert_bit_exact(data, rows=4, flags=None)
    # The ten residual connections, each fused into the projection conv before it (which
    # runs once per patch or band where a stage covers it).
    fused = {s.layer.fused_add.op for s in compiled.steps
             if getattr(s.layer, "fused_add", None) is not None}
    assert len(fused) == 10
    assert not any(s.op.kind == "ADD" for s in compiled.steps)
    assert compiled.patch is not None
    assert_bit_exact(data, rows=2, flags=None, patch="none")


def test_mobilenet_v2_with_float_input_and_output(mobilenet_v2):
    data = to_int8_tflite(mobilenet_v2, (96, 96, 3), float_io=True)
    compiled, outputs = assert_bit_exact(data, rows=3, flags=None)
    assert compiled.steps[0].op.kind == "QUANTIZE" and compiled.steps[-1].op.kind == "DEQUANTIZE"
    assert outputs[0].dtype == np.float32
