"""A small searched Fashion-MNIST network for the training tests: an architecture of mcunet's
default search space (search/space.py: stem, the expand-1 first block, one MBConv block per
stage, the last stage's block without a residual ADD, MEAN, FULLY_CONNECTED + SOFTMAX), built
by search/keras_net.build_keras and quantised to int8 by search/export.to_int8_tflite, the
path `search-and-deploy` exports a sub-network on. Trained for one short epoch on 2,000
Fashion-MNIST images so that its activations are a trained network's (about 10 s with
TensorFlow's import; run in a subprocess, so the test process stays off TensorFlow). The bytes
are cached under MCUNET_CACHE by the builder's source and the arch."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

# width 0.5, resolution 28 (the dataset's own, no resize), one block per stage, kernels 3/5/3/3
# (the depthwise under the last 1x1 conv is 3x3), expands 3/4/3/3.
ARCH = {"width": 0.5, "resolution": 28, "depths": [1, 1, 1, 1],
        "kernels": [3, 3, 5, 3, 3, 3, 3, 3, 3, 3], "expands": [3, 3, 4, 3, 3, 3, 3, 3, 3, 3]}
# The same with two blocks in the last stage: the network ends with a residual ADD (the
# second block's project conv plus its input) under the pooling.
ARCH_RESIDUAL = {**ARCH, "depths": [1, 1, 1, 2]}

_BUILD = r'''
import json, sys
import numpy as np
import tensorflow as tf
from mcunet.search.data import load_fashion_mnist, prepare
from mcunet.search.export import to_int8_tflite
from mcunet.search.keras_net import build_keras
from mcunet.search.space import Arch, default_space

tf.keras.utils.set_random_seed(0)
arch = Arch.from_dict(json.loads(sys.argv[1]))
space = default_space(in_channels=1, num_classes=10, native_resolution=28)
model = build_keras(space, arch)
train, _ = load_fashion_mnist()
x = prepare(train.x[:2000], arch.resolution)
model.compile(tf.keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
model.fit(x, train.y[:2000], epochs=1, batch_size=64, verbose=0)
open(sys.argv[2], "wb").write(to_int8_tflite(model, x[:200]))
'''


def searched_fashion_model(arch: dict = ARCH) -> Path:
    """The .tflite's path (built once per cache)."""
    import json

    key = hashlib.sha256((_BUILD + json.dumps(arch, sort_keys=True)).encode()).hexdigest()[:16]
    root = Path(os.environ.get("MCUNET_CACHE", tempfile.gettempdir())) / "searchnet"
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"fashion-{key}.tflite"
    if not path.exists():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        r = subprocess.run([sys.executable, "-c", _BUILD, json.dumps(arch), str(tmp)],
                           capture_output=True, text=True, env=env)
        if r.returncode != 0:
            raise RuntimeError(f"building the searched Fashion-MNIST model failed:\n{r.stderr[-3000:]}")
        tmp.replace(path)
    return path
