#!/usr/bin/env python3
"""Keras' MobileNet(0.25, 128) and MobileNetV2(0.35, 96) as full-int8 .tflite files, the
benchmark models beside MLPerf Tiny. Random weights (no download), batch-norm statistics
calibrated on one random batch so activations keep a usable scale; converted with TF's
converter and a random representative set. Needs the [tf] extra.

usage:
    python scripts/model_zoo.py [--out DIR]     # default: $MCUNET_CACHE or ~/.cache/mcunet/zoo

Prints the paths it wrote; files already there are kept (the build is deterministic).
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

MODELS = {
    "keras_mobilenet_025_128": ("MobileNet", (128, 128, 3), 0.25, 0),
    "keras_mobilenetv2_035_96": ("MobileNetV2", (96, 96, 3), 0.35, 1),
}


def default_dir() -> Path:
    base = os.environ.get("MCUNET_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "mcunet") / "zoo"


def calibrate(model, shape, seed=0):
    """Random weights make activations vanish through deep nets (TFLite then rejects the tiny
    scales): set every batch-norm's statistics from one batch, so each layer sees unit scale."""
    import tensorflow as tf

    x = np.random.default_rng(seed).uniform(-1, 1, (16, *shape)).astype(np.float32)
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            layer.momentum = 0.0
    model(x, training=True)
    return model


def to_int8_tflite(model, shape, seed=0, float_io=False) -> bytes:
    import tensorflow as tf

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


def keras_model(name: str):
    import tensorflow as tf

    arch, shape, alpha, seed = MODELS[name]
    tf.keras.utils.set_random_seed(seed)
    ctor = getattr(tf.keras.applications, arch)
    return calibrate(ctor(input_shape=shape, alpha=alpha, weights=None, classes=10), shape), shape


def build(name: str, out: Path | None = None, float_io: bool = False) -> Path:
    out = out or default_dir()
    path = out / f"{name}{'_float_io' if float_io else ''}.tflite"
    if not path.exists():
        model, shape = keras_model(name)
        out.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".part")
        tmp.write_bytes(to_int8_tflite(model, shape, float_io=float_io))
        tmp.replace(path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    for name in MODELS:
        print(build(name, args.out))


if __name__ == "__main__":
    main()
