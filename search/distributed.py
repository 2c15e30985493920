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
        data = self.put("evaluate-data", (x_recal, x_val, y_val))
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
        val_ref = self.put("finetune-val", (x_recal, x_val, y_val))
        refs = [self._finetune.remote(space, seed, key, weights, arch, train_ref, val_ref,
                                      resolution, steps, seconds, folder, self.threads)
                for arch, folder in zip(archs, folders)]
        return list(self.ray.get(refs))


# -- the tasks (module-level, so a worker imports them by name) -----------------------------------

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
