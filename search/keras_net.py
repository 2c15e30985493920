"""A standalone Keras network of one architecture: what is fine-tuned and exported.

Layer names follow the supernet's positions ("stem", "first", "b{index}", "head",
"classifier") so the supernet's shared weights can be copied in by name. Import TensorFlow
only through this module's functions.
"""
from __future__ import annotations

from .space import Arch, SearchSpace


def conv_bn(x, filters: int, kernel: int, stride: int, act: bool, name: str):
    import tensorflow as tf
    L = tf.keras.layers
    x = L.Conv2D(filters, kernel, stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = L.BatchNormalization(name=f"{name}_bn")(x)
    return L.ReLU(6.0, name=f"{name}_relu")(x) if act else x


def dw_bn(x, kernel: int, stride: int, name: str):
    import tensorflow as tf
    L = tf.keras.layers
    x = L.DepthwiseConv2D(kernel, stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = L.BatchNormalization(name=f"{name}_bn")(x)
    return L.ReLU(6.0, name=f"{name}_relu")(x)


def build_keras(space: SearchSpace, arch: Arch, dropout: float = 0.0):
    """The Keras model of arch: float input (resolution, resolution, in_channels) in the
    normalised range, softmax output."""
    import tensorflow as tf
    L = tf.keras.layers
    inp = L.Input((arch.resolution, arch.resolution, space.in_channels), name="image")
    x = conv_bn(inp, space.stem_out(arch), 3, space.stem_stride, True, "stem")
    for b in space.blocks(arch):
        name = "first" if b.index < 0 else f"b{b.index}"
        y = x
        if b.expand != 1:
            y = conv_bn(y, b.hidden, 1, 1, True, f"{name}_expand")
        y = dw_bn(y, b.kernel, b.stride, f"{name}_dw")
        y = conv_bn(y, b.cout, 1, 1, False, f"{name}_project")
        x = L.Add(name=f"{name}_add")([x, y]) if b.residual else y
    if space.head_channels:
        x = conv_bn(x, space.last_channels(arch), 1, 1, True, "head")
    x = L.GlobalAveragePooling2D(name="pool")(x)
    if dropout:
        x = L.Dropout(dropout, name="dropout")(x)
    out = L.Dense(space.num_classes, activation="softmax", name="classifier")(x)
    return tf.keras.Model(inp, out, name="subnet")
