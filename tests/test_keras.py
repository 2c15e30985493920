"""Keras' own MobileNet and MobileNetV2, converted to full int8 with TF's converter (random
weights: no download), compile and simulate bit-exactly."""
import numpy as np
import pytest

from .opcheck import assert_bit_exact

import tensorflow as tf  # the [tf] extra, installed by scripts/setup.sh


def calibrate(model, shape, seed=0):
    """Random weights make activations vanish through deep nets (TFLite then rejects the tiny
    scales): set every batch-norm's statistics from one batch, so each layer sees unit scale."""
    x = np.random.default_rng(seed).uniform(-1, 1, (16, *shape)).astype(np.float32)
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            layer.momentum = 0.0
    model(x, training=True)
    return model


def to_int8_tflite(model, shape, seed=0, float_io=False) -> bytes:
    rng = np.random.default_rng(seed)

    def representative():
        for _ in range(8):
            yield [rng.uniform(-1, 1, (1, *shape)).astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if not float_io:
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter.convert()


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
    # The ten residual connections, each fused into the projection conv before it.
    assert sum(bool(s.params.get("fused_add")) for s in compiled.steps) == 10
    assert not any(s.op.kind == "ADD" for s in compiled.steps)
    assert compiled.patch is not None
    assert_bit_exact(data, rows=2, flags=None, patch="none")


def test_mobilenet_v2_with_float_input_and_output(mobilenet_v2):
    data = to_int8_tflite(mobilenet_v2, (96, 96, 3), float_io=True)
    compiled, outputs = assert_bit_exact(data, rows=3, flags=None)
    assert compiled.steps[0].op.kind == "QUANTIZE" and compiled.steps[-1].op.kind == "DEQUANTIZE"
    assert outputs[0].dtype == np.float32
