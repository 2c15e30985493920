"""The once-for-all supernet: one set of weights shared by every sub-network of a space.

Weight sharing by masking. The supernet holds the largest network (widest channels, 7x7
depthwise kernels, largest expand ratio, deepest stages); a sub-network is a set of masks:
- elastic width: the first make_divisible(c * width) channels of every layer,
- elastic expand: the first cin * expand hidden channels of a block,
- elastic kernel: the centre k x k of the shared 7x7 depthwise kernel (with SAME padding the
  centre of a kxk window sits on the same pixel for every odd k, so this *is* the kxk conv),
- elastic depth: a gate on every block after a stage's first (gate 0: the block is skipped).
Masks are inputs of one traced function, so every sub-network trains without retracing; the
sliced weights are exactly what a standalone Keras network of the sub-network gets
(``to_keras``). Training uses the sandwich rule (the largest network and the smallest or a
random one each step) with in-place distillation from the largest; batch
norm is recalibrated on a small batch for each sub-network before it is evaluated.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from .space import Arch, SearchSpace

BN_EPS = 1e-3  # Keras' default, so copied statistics mean the same
BN_MOMENTUM = 0.9


@dataclass(frozen=True)
class Layout:
    """Maximal channel counts of every position of the supernet."""
    stem: int
    first: int
    stages: tuple[int, ...]
    head: int  # 0: no head conv
    block_cin: tuple[int, ...]  # per block position
    block_hidden: tuple[int, ...]
    block_stage: tuple[int, ...]
    block_first: tuple[bool, ...]  # first block of its stage (no gate, no residual)
    block_stride: tuple[int, ...]


def layout(space: SearchSpace) -> Layout:
    w = max(space.width_choices)
    stem, first = space.channels(space.stem_channels, w), space.channels(space.first_channels, w)
    stages = tuple(space.channels(s.channels, w) for s in space.stages)
    cin, block_cin, block_hidden, block_stage, block_first, block_stride = first, [], [], [], [], []
    for si, s in enumerate(space.stages):
        for j in range(s.max_depth):
            block_cin.append(cin)
            block_hidden.append(cin * max(space.expand_choices))
            block_stage.append(si)
            block_first.append(j == 0)
            block_stride.append(s.stride if j == 0 else 1)
            cin = stages[si]
    head = space.channels(space.head_channels, max(1.0, w)) if space.head_channels else 0
    return Layout(stem, first, stages, head, tuple(block_cin), tuple(block_hidden),
                  tuple(block_stage), tuple(block_first), tuple(block_stride))


def _mask(n_max: int, n: int) -> np.ndarray:
    m = np.zeros(n_max, dtype=np.float32)
    m[:n] = 1.0
    return m


def arch_config(space: SearchSpace, lay: Layout, arch: Arch) -> list[np.ndarray]:
    """The masks that select arch inside the supernet (the traced function's inputs)."""
    kmax = max(space.kernel_choices)
    stage_c = [space.channels(s.channels, arch.width) for s in space.stages]
    cfg = [_mask(lay.stem, space.stem_out(arch)),
           _mask(lay.first, space.channels(space.first_channels, arch.width))]
    cfg += [_mask(n_max, n) for n_max, n in zip(lay.stages, stage_c)]
    cfg.append(_mask(max(lay.head, 1), space.last_channels(arch) if lay.head else 1))
    active = {b.index: b for b in space.blocks(arch) if b.index >= 0}
    for i in range(len(lay.block_cin)):
        b = active.get(i)
        hidden = b.hidden if b else 0
        k = b.kernel if b else min(space.kernel_choices)
        kmask = np.zeros((kmax, kmax, 1, 1), dtype=np.float32)
        lo = (kmax - k) // 2
        kmask[lo:lo + k, lo:lo + k] = 1.0
        cfg += [_mask(lay.block_hidden[i], hidden), kmask, np.float32(1.0 if b else 0.0)]
    return cfg


class Supernet:
    """Variables of the largest network and the masked forward pass (TensorFlow inside)."""

    def __init__(self, space: SearchSpace, seed: int = 0):
        import tensorflow as tf

        self.tf = tf
        self.space = space
        self.lay = lay = layout(space)
        kmax = max(space.kernel_choices)
        init = tf.keras.initializers.HeNormal(seed)
        self.vars: dict[str, tf.Variable] = {}
        self.bns: list[str] = []

        def conv(name, shape):
            self.vars[f"{name}_conv"] = tf.Variable(init(shape), name=f"{name}_conv")

        def bn(name, c):
            for part, value in (("gamma", 1.0), ("beta", 0.0), ("mean", 0.0), ("var", 1.0)):
                self.vars[f"{name}_bn_{part}"] = tf.Variable(
                    tf.fill([c], value), name=f"{name}_bn_{part}",
                    trainable=part in ("gamma", "beta"))
            self.bns.append(name)

        conv("stem", (3, 3, space.in_channels, lay.stem))
        bn("stem", lay.stem)
        conv("first_dw", (3, 3, lay.stem, 1))
        bn("first_dw", lay.stem)
        conv("first_project", (1, 1, lay.stem, lay.first))
        bn("first_project", lay.first)
        for i, (cin, hid, st) in enumerate(zip(lay.block_cin, lay.block_hidden, lay.block_stage)):
            conv(f"b{i}_expand", (1, 1, cin, hid))
            bn(f"b{i}_expand", hid)
            conv(f"b{i}_dw", (kmax, kmax, hid, 1))
            bn(f"b{i}_dw", hid)
            conv(f"b{i}_project", (1, 1, hid, lay.stages[st]))
            bn(f"b{i}_project", lay.stages[st])
        last = lay.stages[-1]
        if lay.head:
            conv("head", (1, 1, last, lay.head))
            bn("head", lay.head)
            last = lay.head
        self.vars["classifier_kernel"] = tf.Variable(
            tf.keras.initializers.GlorotUniform(seed)((last, space.num_classes)))
        self.vars["classifier_bias"] = tf.Variable(tf.zeros([space.num_classes]))
        self.trainable = [v for v in self.vars.values() if v.trainable]
        self._fns: dict = {}

    # -- the masked forward pass --------------------------------------------------------------

    def _bn(self, x, name, mode, stats):
        tf, v = self.tf, self.vars
        if mode == "eval":
            mean, var = v[f"{name}_bn_mean"], v[f"{name}_bn_var"]
        else:
            mean, var = tf.nn.moments(x, [0, 1, 2])
            stats.append((mean, var))
            if mode == "train":
                v[f"{name}_bn_mean"].assign(BN_MOMENTUM * v[f"{name}_bn_mean"] + (1 - BN_MOMENTUM) * mean)
                v[f"{name}_bn_var"].assign(BN_MOMENTUM * v[f"{name}_bn_var"] + (1 - BN_MOMENTUM) * var)
        return (x - mean) * tf.math.rsqrt(var + BN_EPS) * v[f"{name}_bn_gamma"] + v[f"{name}_bn_beta"]

    def forward(self, x, cfg, mode: str):
        """Logits of the sub-network cfg selects. mode: 'train' (batch statistics, moving
        averages updated), 'collect' (batch statistics, returned), 'eval' (stored ones)."""
        tf, v, lay, sp = self.tf, self.vars, self.lay, self.space
        stats: list = []
        relu6 = tf.nn.relu6
        m_stem, m_first = cfg[0], cfg[1]
        m_stage = cfg[2:2 + len(lay.stages)]
        m_head = cfg[2 + len(lay.stages)]
        blocks = cfg[3 + len(lay.stages):]

        def conv(h, name, stride=1):
            return tf.nn.conv2d(h, v[f"{name}_conv"], stride, "SAME")

        h = relu6(self._bn(conv(x, "stem", sp.stem_stride), "stem", mode, stats)) * m_stem
        h = tf.nn.depthwise_conv2d(h, v["first_dw_conv"], [1, 1, 1, 1], "SAME")
        h = relu6(self._bn(h, "first_dw", mode, stats)) * m_stem
        h = self._bn(conv(h, "first_project"), "first_project", mode, stats) * m_first
        for i in range(len(lay.block_cin)):
            m_hid, kmask, gate = blocks[3 * i:3 * i + 3]
            s = lay.block_stride[i]
            y = relu6(self._bn(conv(h, f"b{i}_expand"), f"b{i}_expand", mode, stats)) * m_hid
            y = tf.nn.depthwise_conv2d(y, v[f"b{i}_dw_conv"] * kmask, [1, s, s, 1], "SAME")
            y = relu6(self._bn(y, f"b{i}_dw", mode, stats)) * m_hid
            y = self._bn(conv(y, f"b{i}_project"), f"b{i}_project", mode, stats)
            y = y * m_stage[lay.block_stage[i]]
            h = y if lay.block_first[i] else h + gate * y
        if lay.head:
            h = relu6(self._bn(conv(h, "head"), "head", mode, stats)) * m_head
        h = tf.reduce_mean(h, axis=[1, 2])
        logits = tf.matmul(h, v["classifier_kernel"]) + v["classifier_bias"]
        return logits, stats

    # -- traced functions ---------------------------------------------------------------------

    def _signature(self, n_cfg: int):
        tf = self.tf
        x = tf.TensorSpec([None, None, None, self.space.in_channels], tf.float32)
        cfg = [tf.TensorSpec(a.shape, tf.float32) for a in
               arch_config(self.space, self.lay, self.space.largest())]
        return x, [cfg] * n_cfg

    def _sandwich_loss(self, x, y, cfgs):
        """The sandwich rule's loss (inside a tape): the first (largest) sub-network against the
        labels, the others against its predictions. (logits, its loss, the total)."""
        tf = self.tf
        logits, _ = self.forward(x, cfgs[0], "train")
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
        teacher = tf.stop_gradient(tf.nn.softmax(logits))
        total = loss
        for cfg in cfgs[1:]:
            sub, _ = self.forward(x, cfg, "collect")
            total += tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(teacher, sub))
        return logits, loss, total

    def _accuracy(self, logits, y):
        tf = self.tf
        return tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1, output_type=tf.int32), y),
                                      tf.float32))

    def train_fn(self, optimizer, n_sub: int):
        """One sandwich step: n_sub sub-networks, the first (the largest) learns from the
        labels, the others from its predictions (in-place distillation)."""
        tf = self.tf
        key = ("train", n_sub, id(optimizer))
        if key in self._fns:
            return self._fns[key]
        x_spec, cfg_specs = self._signature(n_sub)

        @tf.function(input_signature=[x_spec, tf.TensorSpec([None], tf.int32), cfg_specs])
        def step(x, y, cfgs):
            with tf.GradientTape() as tape:
                logits, loss, total = self._sandwich_loss(x, y, cfgs)
            grads = tape.gradient(total, self.trainable)
            optimizer.apply_gradients(zip(grads, self.trainable))
            return loss, self._accuracy(logits, y)

        self._fns[key] = step
        return step

    def grad_fn(self, n_sub: int):
        """train_fn's step without the update, for data-parallel training: (loss, accuracy,
        gradients) of a shard of the batch; every worker applies the averaged gradients."""
        tf = self.tf
        key = ("grad", n_sub)
        if key in self._fns:
            return self._fns[key]
        x_spec, cfg_specs = self._signature(n_sub)

        @tf.function(input_signature=[x_spec, tf.TensorSpec([None], tf.int32), cfg_specs])
        def grads(x, y, cfgs):
            with tf.GradientTape() as tape:
                logits, loss, total = self._sandwich_loss(x, y, cfgs)
            return loss, self._accuracy(logits, y), tape.gradient(total, self.trainable)

        self._fns[key] = grads
        return grads

    def _collect_fn(self):
        tf = self.tf
        if "collect" not in self._fns:
            x_spec, cfg_specs = self._signature(1)
            self._fns["collect"] = tf.function(
                lambda x, cfg: [s for pair in self.forward(x, cfg, "collect")[1] for s in pair],
                input_signature=[x_spec, cfg_specs[0]])
        return self._fns["collect"]

    def _eval_fn(self):
        tf = self.tf
        if "eval" not in self._fns:
            x_spec, cfg_specs = self._signature(1)
            self._fns["eval"] = tf.function(lambda x, cfg: self.forward(x, cfg, "eval")[0],
                                            input_signature=[x_spec, cfg_specs[0]])
        return self._fns["eval"]

    def recalibrate(self, arch: Arch, x: np.ndarray, batch: int = 500) -> None:
        """Batch-norm statistics of arch, measured on x (the mean of per-batch moments)."""
        cfg = arch_config(self.space, self.lay, arch)
        fn = self._collect_fn()
        sums = None
        n = 0
        for i in range(0, len(x), batch):
            out = [t.numpy() for t in fn(x[i:i + batch], cfg)]
            sums = out if sums is None else [a + b for a, b in zip(sums, out)]
            n += 1
        for j, name in enumerate(self.bns):
            self.vars[f"{name}_bn_mean"].assign(sums[2 * j] / n)
            self.vars[f"{name}_bn_var"].assign(sums[2 * j + 1] / n)

    def accuracy(self, arch: Arch, x: np.ndarray, y: np.ndarray, batch: int = 500) -> float:
        cfg = arch_config(self.space, self.lay, arch)
        fn = self._eval_fn()
        correct = 0
        for i in range(0, len(x), batch):
            logits = fn(x[i:i + batch], cfg).numpy()
            correct += int((logits.argmax(1) == y[i:i + batch]).sum())
        return correct / max(len(x), 1)

    # -- the standalone network ---------------------------------------------------------------

    def to_keras(self, arch: Arch, dropout: float = 0.0):
        """A Keras model of arch holding the supernet's (sliced) weights and current batch-norm
        statistics (recalibrate first)."""
        from .keras_net import build_keras

        model = build_keras(self.space, arch, dropout=dropout)
        v = {k: t.numpy() for k, t in self.vars.items()}
        kmax = max(self.space.kernel_choices)
        for layer in model.layers:
            name = layer.name
            if name.endswith("_conv"):
                w = v[name]
                shape = layer.get_weights()[0].shape
                if name.endswith("_dw_conv") and shape[0] != w.shape[0]:
                    lo = (kmax - shape[0]) // 2
                    w = w[lo:lo + shape[0], lo:lo + shape[1]]
                layer.set_weights([w[:shape[0], :shape[1], :shape[2], :shape[3]]])
            elif name.endswith("_bn"):
                c = layer.get_weights()[0].shape[0]
                layer.set_weights([v[f"{name}_{p}"][:c] for p in ("gamma", "beta", "mean", "var")])
            elif name == "classifier":
                k = layer.get_weights()[0].shape[0]
                layer.set_weights([v["classifier_kernel"][:k], v["classifier_bias"]])
        return model


def sandwich(space: SearchSpace, step: int, seed: int, width: float | None = None,
             resolution: int | None = None) -> list[Arch]:
    """The sub-networks trained at a step: the largest, then the smallest every fourth step
    and a random one otherwise (short trainings: the smallest would otherwise get more than
    its share and the search would favour it). A function of (seed, step) only, so a resumed
    run trains the same ones."""
    rng = random.Random(seed * 1_000_003 + step)
    big = space.largest(width, resolution)
    other = space.smallest(width, resolution) if step % 4 == 3 else space.sample(rng, width, resolution)
    return [big, other]
