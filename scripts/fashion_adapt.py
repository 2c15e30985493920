"""The adaptation task of issue 14 on the emulated M4, first cut: a small CNN trained (in
TensorFlow, on the host) on Fashion-MNIST classes 0-4 and quantised to int8, then adapted on
the device to classes 5-9 by `mcunet train-on-device --train head --classes 5-9` (its
five-way head relearnt from 500 labelled images). Writes the .tflite and prints the command's
report.

usage: python scripts/fashion_adapt.py OUT_DIR [--epochs-host 2] [--epochs 5] [--lr 0.01]
       [--train head|bias|last:2|last:3] [--pointwise] [--depthwise]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np


def model_name(pointwise: bool, depthwise: bool) -> str:
    return "fashion04_dw.tflite" if depthwise else \
        "fashion04_pw.tflite" if pointwise else "fashion04.tflite"


def build_model(out: Path, epochs: int, seed: int = 0, pointwise: bool = False,
                depthwise: bool = False) -> Path:
    import tensorflow as tf

    from mcunet.search.data import load_fashion_mnist
    from mcunet.search.export import to_int8_tflite

    tf.keras.utils.set_random_seed(seed)
    train, test = load_fashion_mnist()
    keep = train.y < 5
    x = train.x[keep].astype(np.float32) / 255.0
    y = train.y[keep]
    model = tf.keras.Sequential([
        tf.keras.Input((28, 28, 1)),
        tf.keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu"),
        tf.keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu"),
        tf.keras.layers.Conv2D(64, 3, strides=2, padding="same", activation="relu"),
        *([tf.keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")]
          if depthwise else []),
        *([tf.keras.layers.Conv2D(64, 1, activation="relu")] if pointwise or depthwise else []),
        tf.keras.layers.GlobalAveragePooling2D(),
        tf.keras.layers.Dense(5),
        tf.keras.layers.Softmax(),
    ])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=128, verbose=2)
    tk = test.y < 5
    print("host float accuracy on classes 0-4:",
          model.evaluate(test.x[tk].astype(np.float32) / 255.0, test.y[tk], verbose=0)[1])
    path = out / model_name(pointwise, depthwise)
    path.write_bytes(to_int8_tflite(model, x[:500]))
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--epochs-host", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--eval", type=int, default=500)
    ap.add_argument("--train", default="head", help="the scheme (head, bias, last:2)")
    ap.add_argument("--pointwise", action="store_true",
                    help="a 1x1 conv (64, ReLU) before the pooling: what last:2 and bias train")
    ap.add_argument("--depthwise", action="store_true",
                    help="a 3x3 depthwise conv (ReLU) and the 1x1 conv before the pooling: "
                         "what last:3 trains")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    model = a.out / model_name(a.pointwise, a.depthwise)
    if not model.exists():
        model = build_model(a.out, a.epochs_host, pointwise=a.pointwise, depthwise=a.depthwise)
    cmd = [sys.executable, "-m", "mcunet", "train-on-device", str(model), "--train", a.train,
           "--board", "mps2-an386", "--dataset", "fashion-mnist", "--classes", "5-9",
           "--samples", "500", "--epochs", str(a.epochs), "--eval", str(a.eval),
           "--lr", str(a.lr), "--json", str(a.out / f"adapt-{a.train.replace(':', '')}.json")]
    print(" ".join(cmd), flush=True)
    raise SystemExit(subprocess.call(cmd))


if __name__ == "__main__":
    main()
