#!/usr/bin/env python3
"""The benchmark models beside MLPerf Tiny, as full-int8 .tflite files:

- Keras' MobileNet (0.25 at 128 px, 0.5 at 96), MobileNetV2 (0.35 at 96, 0.5 at 128) and
  MobileNetV3-small (0.75 at 96, 1.0 at 128) (`MODELS`): random weights (no
  download), batch-norm statistics calibrated on one random batch so activations keep a usable
  scale; converted with TF's converter and a random representative set. Needs the [tf] extra.
- generated networks (`NETWORKS`): MBConv networks (MobileNetV2 / ProxylessNAS / MCUNet style)
  whose first inverted-residual block already has a skip, with 3x3, 5x5 and 7x7 depthwise
  layers, expansion 3 to 6, 64 to 160 pixel inputs and channel counts that are not multiples
  of 4; and CIFAR-style ResNets. Built as flatbuffers by tests/netgen.py (no TensorFlow),
  deterministic from their seeds, random weights with per-layer scales that keep activations
  spread over the int8 range.

usage:
    python scripts/model_zoo.py [--out DIR] [--no-keras]   # default: $MCUNET_CACHE or ~/.cache/mcunet/zoo

Prints the paths it wrote; files already there are kept (the builds are deterministic).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.netgen import MBConvNet, ResNet  # noqa: E402

MODELS = {
    "keras_mobilenet_025_128": ("MobileNet", (128, 128, 3), 0.25, 0),
    "keras_mobilenetv2_035_96": ("MobileNetV2", (96, 96, 3), 0.35, 1),
    "keras_mobilenet_050_96": ("MobileNet", (96, 96, 3), 0.5, 2),
    "keras_mobilenetv2_050_128": ("MobileNetV2", (128, 128, 3), 0.5, 3),
    "keras_mobilenetv3s_075_96": ("MobileNetV3Small", (96, 96, 3), 0.75, 4),
    "keras_mobilenetv3s_100_128": ("MobileNetV3Small", (128, 128, 3), 1.0, 5),
}


# (expand, kernel, channels, blocks, first stride) per stage; the first stage keeps the
# stem's channels at stride 1, so its first block has a skip.
NETWORKS = {
    "mbconv_64": MBConvNet(64, 14, ((3, 3, 14, 2, 1), (6, 5, 26, 2, 2), (4, 7, 42, 2, 2),
                                    (5, 3, 66, 2, 2)), 130, seed=1),
    "mbconv_80": MBConvNet(80, 13, ((3, 3, 13, 1, 1), (6, 5, 22, 2, 2), (4, 7, 38, 3, 2),
                                    (5, 5, 62, 2, 2)), 142, seed=2),
    "mbconv_96": MBConvNet(96, 15, ((4, 5, 15, 2, 1), (5, 3, 23, 2, 2), (6, 7, 39, 2, 2),
                                    (3, 5, 57, 2, 2), (6, 3, 90, 1, 1)), 166, seed=3),
    "mbconv_112": MBConvNet(112, 11, ((3, 7, 11, 1, 1), (6, 3, 19, 2, 2), (4, 5, 30, 3, 2),
                                      (5, 7, 46, 2, 2), (3, 3, 70, 1, 2)), 126, seed=4),
    "mbconv_128": MBConvNet(128, 13, ((3, 3, 13, 2, 1), (4, 7, 21, 2, 2), (6, 5, 33, 2, 2),
                                      (5, 3, 53, 3, 2), (6, 7, 77, 1, 2)), 154, seed=5),
    "mbconv_144": MBConvNet(144, 10, ((5, 5, 10, 1, 1), (3, 3, 18, 2, 2), (6, 7, 27, 2, 2),
                                      (4, 5, 45, 2, 2), (5, 3, 66, 2, 2)), 118, seed=6),
    "mbconv_160": MBConvNet(160, 9, ((3, 3, 9, 2, 1), (6, 5, 15, 2, 2), (4, 7, 25, 2, 2),
                                     (6, 3, 41, 2, 2), (3, 5, 62, 1, 2)), 102, seed=7),
    "resnet20_cifar": ResNet(32, (16, 32, 64), 3, seed=8),
    "resnet14_odd_40": ResNet(40, (14, 26, 50), 2, seed=9),
}
MBCONV = tuple(n for n in NETWORKS if n.startswith("mbconv"))
RESNETS = tuple(n for n in NETWORKS if n.startswith("resnet"))


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


def build_generated(name: str, out: Path | None = None) -> Path:
    """A generated network's file (rewritten only when its contents change)."""
    out = out or default_dir()
    path = out / f"{name}.tflite"
    data = NETWORKS[name].build(name)
    if not path.exists() or path.read_bytes() != data:
        out.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".part")
        tmp.write_bytes(data)
        tmp.replace(path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--no-keras", action="store_true", help="only the generated networks")
    args = ap.parse_args()
    for name in () if args.no_keras else MODELS:
        print(build(name, args.out))
    for name in NETWORKS:
        print(build_generated(name, args.out))


if __name__ == "__main__":
    main()
