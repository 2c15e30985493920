"""Training loops with a fixed number of steps, deterministic batches and checkpoints.

Batches and sampled sub-networks are functions of (seed, step), and the optimizer state is
checkpointed with the weights, so a run that is killed and resumed trains exactly what an
uninterrupted run trains.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

import numpy as np

from .data import Split, prepare

BATCH = 128
# Adam's peak learning rates. Short trainings want high ones: on Fashion-MNIST 1.6e-2 scored
# best of 1e-3 to 3.2e-2 for fine-tuning (a winner from its supernet weights, and from
# scratch), and 1.2e-2 beat 3e-3 for the supernet; the sweep is in docs/search.md, "The
# learning rate (adopted)".
FINETUNE_LR = 1.6e-2
SUPERNET_LR = 1.2e-2


def setup_tf(threads: int = 2) -> None:
    """Few threads (the machines this runs on are small and shared) and deterministic ops."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # no C++ info/warning chatter
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # already initialised in this process
        pass
    try:
        tf.config.experimental.enable_op_determinism()
    except Exception:  # older TF
        pass


def batch_indices(n: int, batch: int, seed: int, step: int) -> np.ndarray:
    """The indices of batch `step` of an endless sequence of shuffled epochs."""
    per_epoch = max(n // batch, 1)
    epoch, k = divmod(step, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return order[k * batch:(k + 1) * batch]


def cosine_lr(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    frac = (step - warmup) / max(total - warmup, 1)
    return 0.5 * peak * (1 + math.cos(math.pi * min(frac, 1.0)))


class Checkpointer:
    """Weights + optimizer state in DIR/NAME (TensorFlow checkpoint) plus a step counter."""

    def __init__(self, folder: Path, name: str, **objects):
        import tensorflow as tf

        self.tf = tf
        self.step = tf.Variable(0, dtype=tf.int64)
        self.ckpt = tf.train.Checkpoint(step=self.step, **objects)
        self.prefix = folder / name
        folder.mkdir(parents=True, exist_ok=True)

    def restore(self) -> int:
        """The step to continue from (0 when there is no checkpoint)."""
        path = self.prefix.parent / f"{self.prefix.name}-ckpt"
        if Path(str(path) + ".index").exists():
            self.ckpt.read(str(path)).assert_existing_objects_matched()
            return int(self.step.numpy())
        return 0

    def save(self, step: int) -> None:
        self.step.assign(step)
        path = self.prefix.parent / f"{self.prefix.name}-ckpt"
        tmp = self.prefix.parent / f"{self.prefix.name}-tmp"
        written = self.ckpt.write(str(tmp))
        # Replace atomically: a run killed while writing keeps the previous checkpoint.
        for f in Path(written).parent.glob(f"{tmp.name}*"):
            f.replace(str(path) + f.name[len(tmp.name):])


def resolutions(resolution: int | tuple[int, ...]) -> tuple[int, ...]:
    """A supernet trains at one input resolution or, in a budget sweep whose budgets chose
    different ones, at several: step s at resolutions[s % len(resolutions)]."""
    return (resolution,) if isinstance(resolution, int) else tuple(resolution)


def prepare_all(data: Split, resolution, x_cache=None) -> dict:
    """{resolution: the prepared images} (x_cache: those of one resolution, or this dict)."""
    res = resolutions(resolution)
    if isinstance(x_cache, dict):
        return {r: x_cache[r] if r in x_cache else prepare(data.x, r) for r in res}
    if x_cache is not None and len(res) == 1:
        return {res[0]: x_cache}
    return {r: prepare(data.x, r) for r in res}


def _stop(steps: int, stop_at: int | None) -> int:
    return steps if stop_at is None else min(steps, stop_at)


class Deadline:
    """Keeps a time-budgeted training on time on a machine whose speed changes (shared
    cores): every `every` steps the total is re-planned from the recent speed, so the cosine
    schedule stretches or shrinks and ends when the time is up."""

    def __init__(self, at: float, every: int = 50):
        self.at, self.every = at, every
        self.mark: tuple[int, float] | None = None

    def total(self, step: int, total: int) -> int:
        now = time.perf_counter()
        if self.mark is None:
            self.mark = (step, now)
            return total
        if step - self.mark[0] < self.every:
            return total
        per_step = (now - self.mark[1]) / (step - self.mark[0])
        self.mark = (step, now)
        return max(step + 1, step + int((self.at - now) / per_step))


def _run_steps(one_step: Callable, opt, ck: Checkpointer, steps: int, lr: float, warmup: int,
               stop_at: int | None, progress: Callable | None, checkpoint_every: int,
               deadline: Deadline | None) -> dict:
    """Steps from the checkpoint's to `steps` (or stop_at) on a cosine schedule; one_step(step)
    trains one batch and returns (loss, accuracy)."""
    start = ck.restore()
    loss = acc = float("nan")
    t0 = time.perf_counter()
    end = _stop(steps, stop_at)
    step = start
    while step < end:
        if deadline:
            steps = end = deadline.total(step, steps)
        opt.learning_rate.assign(cosine_lr(step, steps, lr, warmup))
        loss_t, acc_t = one_step(step)
        loss, acc = float(loss_t), float(acc_t)
        if progress:
            progress(step + 1, steps, loss, acc)
        if (step + 1) % checkpoint_every == 0 or step + 1 == end:
            ck.save(step + 1)
        step += 1
    return {"steps": steps, "first": start, "last": max(start, end), "loss": loss,
            "train_accuracy": acc, "seconds": time.perf_counter() - t0}


def train_supernet(net, data: Split, resolution: int | tuple[int, ...], steps: int, seed: int,
                   folder: Path,
                   lr: float = SUPERNET_LR, warmup: int = 50, stop_at: int | None = None,
                   progress: Callable | None = None, checkpoint_every: int = 50,
                   x_cache: np.ndarray | dict | None = None,
                   deadline: Deadline | None = None) -> dict:
    """Sandwich-rule training of the supernet, `steps` in all (the cosine schedule's length,
    re-planned by a deadline if given), continuing from folder's checkpoint and stopping early
    at stop_at; at one resolution or cycling through several (`resolutions`)."""
    import tensorflow as tf

    from .supernet import arch_config, sandwich

    if not hasattr(net, "_train"):  # one optimizer and one trace per supernet
        opt = tf.keras.optimizers.Adam(lr)
        opt.build(net.trainable)  # slots exist before a restore, so they are restored too
        net._train = (opt, Checkpointer(folder, "supernet", vars=list(net.vars.values()), opt=opt),
                      net.train_fn(opt, 2))
    opt, ck, step_fn = net._train
    res = resolutions(resolution)
    xs = prepare_all(data, res, x_cache) if steps else {}

    def one_step(step: int):
        idx = batch_indices(len(data), BATCH, seed, step)
        cfgs = [arch_config(net.space, net.lay, a) for a in sandwich(net.space, step, seed)]
        return step_fn(xs[res[step % len(res)]][idx], data.y[idx], cfgs)

    return _run_steps(one_step, opt, ck, steps, lr, warmup, stop_at, progress, checkpoint_every,
                      deadline)


def finetune(model, data: Split, resolution: int, steps: int, seed: int, folder: Path,
             lr: float = FINETUNE_LR, warmup: int = 30, stop_at: int | None = None,
             progress: Callable | None = None, checkpoint_every: int = 50,
             x_cache: np.ndarray | None = None, deadline: Deadline | None = None) -> dict:
    """Train a standalone Keras model, `steps` in all (continuing from folder's checkpoint,
    stopping early at stop_at)."""
    import tensorflow as tf

    if not hasattr(model, "_mcunet_train"):
        opt = tf.keras.optimizers.Adam(lr)
        opt.build(model.trainable_variables)
        loss_obj = tf.keras.losses.SparseCategoricalCrossentropy()
        for layer in model.layers:  # short training: let batch-norm statistics follow quickly
            if isinstance(layer, tf.keras.layers.BatchNormalization):
                layer.momentum = 0.9

        @tf.function
        def step_fn(xb, yb):
            with tf.GradientTape() as tape:
                probs = model(xb, training=True)
                loss = loss_obj(yb, probs)
            grads = tape.gradient(loss, model.trainable_variables)
            opt.apply_gradients(zip(grads, model.trainable_variables))
            acc = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(probs, 1, output_type=tf.int32), yb),
                                         tf.float32))
            return loss, acc

        model._mcunet_train = (opt, Checkpointer(folder, "finetune", model=model, opt=opt), step_fn)
    opt, ck, step_fn = model._mcunet_train
    x = x_cache if x_cache is not None else prepare(data.x, resolution)

    def one_step(step: int):
        idx = batch_indices(len(data), BATCH, seed + 7919, step)
        return step_fn(x[idx], data.y[idx].astype(np.int32))

    return _run_steps(one_step, opt, ck, steps, lr, warmup, stop_at, progress, checkpoint_every,
                      deadline)


def keras_accuracy(model, x: np.ndarray, y: np.ndarray, batch: int = 500) -> float:
    probs = model.predict(x, batch_size=batch, verbose=0)
    return float((probs.argmax(1) == y).mean())
