"""Ray as the search's distributed engine: `mcunet search ... --ray auto|ADDRESS`.

Optional (`pip install 'mcunet[ray]'`); nothing imports this module unless --ray is given, and
Ray itself is imported only when an engine is made. What runs where:

- the driver (the `mcunet search` process): data loading, stage 1's and the evolution's
  bookkeeping, supernet training, the int8 export and its plan, OUT/state.json;
- Ray tasks, one CPU each by default (--ray-cpus, --ray-gpus): memory planning of candidates
  (mcunet's planner, layer by layer and patch-based), candidate evaluation (batch-norm
  recalibration and validation accuracy of a sub-network of the supernet, whose weights go
  to the object store once per search), and the fine-tuning of the top candidates, each
  from its checkpoint in OUT (a folder every worker must reach: a shared file system, or
  one machine), so a retried task continues where the dead one stopped.

A task whose worker dies is retried (TASK_RETRIES times) on another worker. Results are
gathered in the order the tasks were submitted and keyed by candidate, never by completion
order, so the same seed gives the same search whatever finishes first.
"""
from __future__ import annotations

import os
import socket

from mcunet.errors import McunetError

from .train import SUPERNET_LR

TASK_RETRIES = 4
PLAN_CHUNK = 16  # layer-by-layer plans take milliseconds: this many per task


def import_ray():
    try:
        import ray
    except ImportError:
        raise McunetError("--ray needs Ray, which is not installed: pip install 'mcunet[ray]' "
                          "(or pip install 'ray[default]')") from None
    return ray


def _reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast, with a readable line, where nothing listens at HOST:PORT (ray.init retries
    for a long while before it gives up)."""
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise McunetError(f"--ray {address}: give 'auto' or a Ray cluster's address, HOST:PORT "
                          "(the head's `ray start --head` prints it; 6379 by default) or "
                          "ray://HOST:10001")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise McunetError(f"--ray {address}: cannot reach a Ray cluster there ({exc.strerror or exc}); "
                          "start one with `ray start --head` (and `ray start --address HEAD:6379` "
                          "on the other machines) or check the address") from None


class RayEngine:
    """Connects to (or, for 'auto' with no cluster on this machine, starts) a Ray cluster and
    runs the search's tasks there."""

    def __init__(self, address: str, cpus: float = 1.0, gpus: float = 0.0):
        ray = self.ray = import_ray()
        self.address, self.cpus, self.gpus = address, cpus, gpus
        self.owned = False
        if not ray.is_initialized():
            if address != "auto":
                _reachable(address)
            os.environ.setdefault("RAY_DEDUP_LOGS", "0")
            try:
                ray.init(address=None if address == "auto" else address,
                         logging_level="ERROR", log_to_driver=False, include_dashboard=False)
            except Exception as exc:  # ConnectionError, RuntimeError, ValueError, ...
                raise McunetError(f"--ray {address}: cannot connect to a Ray cluster: "
                                  f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")\
                    from None
            self.owned = True
        opts = dict(num_cpus=cpus, num_gpus=gpus, max_retries=TASK_RETRIES)
        threads = max(1, int(cpus))
        self._plan = ray.remote(_plan_task).options(**opts)
        self._evaluate = ray.remote(_evaluate_task).options(**opts)
        self._finetune = ray.remote(_finetune_task).options(**opts)
        self._throughput = ray.remote(_throughput_task).options(**opts)
        self.threads = threads
        self._weights = None  # (key, ObjectRef) of the supernet's weights
        self._refs: dict = {}

    def workers(self) -> int:
        """How many tasks the cluster runs at once."""
        res = self.ray.cluster_resources()
        n = int(res.get("CPU", 0) // self.cpus) if self.cpus else 0
        if self.gpus:
            n = min(n, int(res.get("GPU", 0) // self.gpus))
        return max(1, n)

    def describe(self) -> str:
        res = self.ray.cluster_resources()
        nodes = sum(1 for n in self.ray.nodes() if n.get("Alive"))
        gpus = f", {res.get('GPU', 0):g} GPUs" if res.get("GPU") else ""
        return (f"Ray cluster: {nodes} node{'s' if nodes != 1 else ''}, {res.get('CPU', 0):g} CPUs"
                f"{gpus}; {self.workers()} tasks at once ({self.cpus:g} CPU"
                f"{f', {self.gpus:g} GPU' if self.gpus else ''} each)")

    def shutdown(self) -> None:
        if self.owned and self.ray.is_initialized():
            self.ray.shutdown()

    def put(self, name: str, value):
        """An object for the tasks, sent to the object store once per name."""
        if name not in self._refs:
            self._refs[name] = self.ray.put(value)
        return self._refs[name]

    # -- memory planning ----------------------------------------------------------------------

    def plan_many(self, space, target, requests: list) -> list:
        """Costs of (arch, patch, sram budget) requests, in their order."""
        if not requests:
            return []
        jobs, chunk = [], []
        for req in requests:
            if req[1] == "none":
                chunk.append(req)
                if len(chunk) == PLAN_CHUNK:
                    jobs.append(chunk)
                    chunk = []
            else:
                jobs.append([req])  # a patch-based plan takes about a second: one a task
        if chunk:
            jobs.append(chunk)
        refs = [self._plan.remote(space, target, job) for job in jobs]
        return [cost for part in self.ray.get(refs) for cost in part]

    # -- candidate evaluation -----------------------------------------------------------------

    def set_supernet(self, key: str, weights: dict) -> None:
        """The trained supernet's weights (numpy arrays by variable name) for the tasks."""
        self._weights = (key, self.ray.put(weights))

    def evaluate_many(self, space, seed: int, archs: list, x_recal, x_val, y_val) -> list[float]:
        """Validation accuracy of every arch (batch norm recalibrated on x_recal), in order."""
        key, weights = self._weights
        data = self.put(f"evaluate-data-{x_val.shape[1]}", (x_recal, x_val, y_val))
        refs = [self._evaluate.remote(space, seed, key, weights, data, arch, self.threads)
                for arch in archs]
        return list(self.ray.get(refs))

    # -- fine-tuning --------------------------------------------------------------------------

    def finetune_many(self, space, seed: int, archs: list, x_recal, train, resolution: int,
                      steps: int | None, seconds: float | None, folders: list[str],
                      x_val, y_val) -> list[dict]:
        """Fine-tune every arch from the supernet's weights, each in its own checkpoint folder;
        [{"weights", "val_accuracy", "result"}] in the order of archs."""
        key, weights = self._weights
        train_ref = self.put("finetune-train", train)
        val_ref = self.put(f"finetune-val-{x_val.shape[1]}", (x_recal, x_val, y_val))
        refs = [self._finetune.remote(space, seed, key, weights, arch, train_ref, val_ref,
                                      resolution, steps, seconds, folder, self.threads)
                for arch, folder in zip(archs, folders)]
        return list(self.ray.get(refs))


    # -- the compute cap ---------------------------------------------------------------------

    def measure_cap(self, time_budget_s: float, steps: int = 12,
                    warmup: int = 4) -> tuple[int, dict]:
        """The compute cap (MACs) for the workers' speed: the in-process cap
        (MACS_PER_BUDGET_SECOND, sized for two CPU cores training about REFERENCE_MACS_IMAGES
        / MACs images a second) scaled by the training speed of one task, measured on a probe
        network by every task slot at once (the slowest counts: each fine-tuned candidate
        trains on one task). Returns (cap, what was measured)."""
        from .budget import measure
        from .pipeline import MACS_PER_BUDGET_SECOND, REFERENCE_MACS_IMAGES
        from .space import default_space

        space = default_space()
        arch = space.largest(1.0, 28)
        macs = measure(space, arch).macs
        n = self.workers()
        rates = self.ray.get([self._throughput.remote(space, arch, self.threads, steps, warmup)
                              for _ in range(n)])
        per_task = min(rates)
        scale = per_task * macs / REFERENCE_MACS_IMAGES
        cap = int(MACS_PER_BUDGET_SECOND * time_budget_s * scale)
        return cap, {"probe_macs": macs, "images_per_second": [round(r, 1) for r in rates],
                     "scale": round(scale, 3), "max_macs": cap}

    # -- data-parallel supernet training -----------------------------------------------------

    def supernet_trainer(self, space, seed: int, train, resolution: int, folder,
                         workers: int | None = None) -> "SupernetTrainer":
        return SupernetTrainer(self, space, seed, train, resolution, folder,
                               workers or self.workers())


class SupernetTrainer:
    """Synchronous data-parallel training of the supernet on Ray actors, one replica each.

    Every step, each replica computes the sandwich rule's gradients on its shard of the batch
    (the step's batch split in `world` contiguous parts), the driver averages them (weighted
    by shard size, summed in rank order) and every replica applies the same update, so the
    replicas' weights stay equal and the training is a function of the seed and the number of
    replicas. Batch-norm statistics are each shard's (as data-parallel training without
    synchronised batch norm); the moving averages are replica 0's, and matter little: every
    candidate is recalibrated before it is evaluated. Replica 0 checkpoints (weights and
    optimizer state, the in-process format) into the storage folder, which every replica must
    reach; a replica that dies makes the driver start them all again from the last
    checkpoint (TASK_RETRIES times), which gives what an uninterrupted run gives.

    train() has train_supernet's arguments and result, so the pipeline's time-budgeted plan
    (speed probe, deadline) drives either."""

    def __init__(self, engine: RayEngine, space, seed, train, resolution, folder, world: int):
        self.engine, self.ray = engine, engine.ray
        self.space, self.seed, self.resolution, self.folder = space, seed, resolution, str(folder)
        self.world = world
        self.train_ref = engine.put("supernet-train", train)
        self.actor_cls = self.ray.remote(num_cpus=engine.cpus, num_gpus=engine.gpus,
                                         max_restarts=0)(_SupernetWorker)
        self.workers: list = []
        self.restarts = 0

    def _start(self, lr: float) -> None:
        self.close()
        self.workers = [self.actor_cls.remote(self.space, self.seed, rank, self.world,
                                              self.train_ref, self.resolution, self.folder, lr,
                                              self.engine.threads)
                        for rank in range(self.world)]
        self.lr = lr

    def close(self) -> None:
        for w in self.workers:
            self.ray.kill(w)
        self.workers = []

    def _all(self, method: str, *args):
        return self.ray.get([getattr(w, method).remote(*args) for w in self.workers])

    def train(self, data, resolution, steps, seed, folder, lr: float = SUPERNET_LR,
              warmup: int = 50, stop_at: int | None = None, progress=None,
              checkpoint_every: int = 50, x_cache=None, deadline=None) -> dict:
        errors = (self.ray.exceptions.RayActorError, self.ray.exceptions.ActorUnavailableError)
        while True:
            try:
                if not self.workers or self.lr != lr:
                    self._start(lr)
                return self._train(steps, lr, warmup, stop_at, progress, checkpoint_every,
                                   deadline)
            except errors as exc:
                self.close()
                self.restarts += 1
                if self.restarts > TASK_RETRIES:
                    raise McunetError(f"data-parallel supernet training: replicas died "
                                      f"{self.restarts} times ({exc.__class__.__name__}); "
                                      "see the Ray logs (ray status, /tmp/ray/session_latest)") \
                        from None

    def _train(self, steps, lr, warmup, stop_at, progress, checkpoint_every, deadline) -> dict:
        import time

        import numpy as np

        from .train import _stop, cosine_lr

        start = self._all("restore")[0]
        loss = acc = float("nan")
        t0 = time.perf_counter()
        end = _stop(steps, stop_at)
        step, update = start, (None, 0.0)
        while step < end:
            if deadline:
                steps = end = deadline.total(step, steps)
            rate = cosine_lr(step, steps, lr, warmup)
            outs = self._all("step", *update, step, 0)
            n = sum(o[0] for o in outs)
            grads = [sum(o[3][i] * np.float32(o[0] / n) for o in outs) for i in range(len(outs[0][3]))]
            loss = float(sum(o[1] * o[0] for o in outs) / n)
            acc = float(sum(o[2] * o[0] for o in outs) / n)
            update = (self.ray.put(grads), rate)
            if progress:
                progress(step + 1, steps, loss, acc)
            if (step + 1) % checkpoint_every == 0 or step + 1 == end:
                self._all("step", *update, None, step + 1)  # apply, then replica 0 saves
                update = (None, 0.0)
            step += 1
        return {"steps": steps, "first": start, "last": max(start, end), "loss": loss,
                "train_accuracy": acc, "seconds": time.perf_counter() - t0,
                "replicas": self.world}


# -- the tasks (module-level, so a worker imports them by name) -----------------------------------


class _SupernetWorker:
    """One replica of the supernet (a Ray actor): its shard's gradients, the shared update."""

    def __init__(self, space, seed, rank, world, train, resolution, folder, lr, threads):
        from pathlib import Path

        from .train import Checkpointer, prepare_all, resolutions, setup_tf

        setup_tf(threads)
        import tensorflow as tf

        from .supernet import Supernet

        self.tf = tf
        self.net = Supernet(space, seed=seed)
        self.opt = tf.keras.optimizers.Adam(lr)
        self.opt.build(self.net.trainable)
        self.ck = Checkpointer(Path(folder), "supernet", vars=list(self.net.vars.values()),
                               opt=self.opt)
        self.res = resolutions(resolution)  # one, or several in turn (a budget sweep)
        self.x, self.y = prepare_all(train, self.res), train.y
        self.seed, self.rank, self.world = seed, rank, world
        self.grads = self.net.grad_fn(2)
        trainable = self.net.trainable

        @tf.function
        def apply(grads):
            self.opt.apply_gradients(zip(grads, trainable))
        self.apply = apply

    def restore(self) -> int:
        return self.ck.restore()

    def step(self, grads, rate, step, save):
        """Apply the averaged gradients (if any) at learning rate `rate`, checkpoint `save`
        steps (replica 0), then the gradients of `step`'s shard: (images, loss, accuracy,
        gradients)."""
        import numpy as np

        from .supernet import arch_config, sandwich
        from .train import BATCH, batch_indices

        if grads is not None:
            self.opt.learning_rate.assign(rate)
            self.apply([self.tf.constant(g) for g in grads])
        if save and self.rank == 0:
            self.ck.save(save)
        if step is None:
            return None
        idx = batch_indices(len(self.y), BATCH, self.seed, step)
        shard = np.array_split(idx, self.world)[self.rank]
        cfgs = [arch_config(self.net.space, self.net.lay, a)
                for a in sandwich(self.net.space, step, self.seed)]
        x = self.x[self.res[step % len(self.res)]]
        loss, acc, grads = self.grads(x[shard], self.y[shard], cfgs)
        return len(shard), float(loss), float(acc), [g.numpy() for g in grads]


_NET: dict = {}  # one supernet per worker process, by weights key


def _supernet(space, seed: int, key: str, weights: dict, threads: int):
    from .train import setup_tf

    if _NET.get("key") != key:
        setup_tf(threads)
        from .supernet import Supernet

        net = Supernet(space, seed=seed)
        for name, var in net.vars.items():
            var.assign(weights[name])
        _NET.clear()
        _NET.update(key=key, net=net)
    return _NET["net"]


def _throughput_task(space, arch, threads, steps: int = 12, warmup: int = 4) -> float:
    """Training images a second of arch on this worker (random data, the fine-tuning's step)."""
    import time

    import numpy as np

    from .train import BATCH, setup_tf

    setup_tf(threads)
    import tensorflow as tf

    from .keras_net import build_keras

    model = build_keras(space, arch)
    opt = tf.keras.optimizers.Adam(1e-3)
    loss_obj = tf.keras.losses.SparseCategoricalCrossentropy()

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_obj(y, model(x, training=True))
        opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables),
                                model.trainable_variables))
        return loss

    rng = np.random.default_rng(0)
    x = rng.random((BATCH, arch.resolution, arch.resolution, space.in_channels), np.float32)
    y = rng.integers(0, space.num_classes, BATCH).astype(np.int32)
    for _ in range(warmup):
        step(x, y).numpy()
    start = time.perf_counter()
    for _ in range(steps):
        step(x, y).numpy()
    return BATCH * steps / (time.perf_counter() - start)


def _plan_task(space, target, requests):
    from .budget import measure

    return [measure(space, arch, patch, target, sram) for arch, patch, sram in requests]


def _evaluate_task(space, seed, key, weights, data, arch, threads):
    x_recal, x_val, y_val = data
    net = _supernet(space, seed, key, weights, threads)
    net.recalibrate(arch, x_recal)
    return net.accuracy(arch, x_val, y_val)


def _finetune_task(space, seed, key, weights, arch, train, val, resolution, steps, seconds,
                   folder, threads):
    import time
    from functools import partial
    from pathlib import Path

    from .train import Deadline, finetune, keras_accuracy

    x_recal, x_val, y_val = val
    net = _supernet(space, seed, key, weights, threads)
    net.recalibrate(arch, x_recal)
    model = net.to_keras(arch)
    folder = Path(folder)
    warmup = 30 if steps is None else max(1, steps // 10)
    deadline = None
    if steps is None:  # time-budgeted: measure this worker's speed, then fix the total
        from .pipeline import PROBE_STEPS, _seconds_per_step

        start = time.perf_counter()
        per_step = _seconds_per_step(partial(finetune, model, train, resolution, 10 ** 9, seed,
                                             folder, warmup=warmup), 20)
        left = seconds - (time.perf_counter() - start)
        steps = max(PROBE_STEPS + 4 + 20, int(left / per_step))
        deadline = Deadline(time.perf_counter() + left)
    result = finetune(model, train, resolution, steps, seed, folder, warmup=warmup,
                      deadline=deadline)
    return {"weights": model.get_weights(), "val_accuracy": keras_accuracy(model, x_val, y_val),
            "result": result}
