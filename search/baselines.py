"""The hand-designed baseline the search is measured against (scripts/bench_search.py): MCUNet's
"MobileNetV2 scaled down until it fits", trained with the search's own recipe and time budget.

MobileNetV2 in the search space's skeleton is every block at its stage's full depth with
MobileNetV2's 3x3 depthwise and expansion 6; its width multiplier and input resolution are
scaled down together over grids wider than the space's choices, and of the pairs whose plan
(mcunet's planner, patch-based stages included: the same deployment as the search's winners)
fits the SRAM, flash and MACs budget the one with the most MACs is kept (where none does,
`NoBaselineFits` says what the smallest needs and carries every pair tried). It is trained from
scratch for the whole time budget (the search spends part of its budget on the supernet and
the evolution, and fine-tunes from the supernet's weights), then exported and measured as a
search's winner is. The random-search baseline is the search itself with strategy "random"
(search/evolution.py).
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from mcunet.errors import McunetError

from .budget import CostCache
from .space import Arch, SearchSpace, default_space

BASELINE_WIDTHS = (1.25, 1.0, 0.875, 0.75, 0.625, 0.5, 0.4, 0.35, 0.3, 0.25, 0.2, 0.15, 0.1)
MOBILENETV2_KERNEL = 3
MOBILENETV2_EXPAND = 6


def mobilenetv2(space: SearchSpace, width: float, resolution: int) -> Arch:
    """MobileNetV2's blocks in the space's skeleton: full depth, 3x3, expansion 6."""
    return Arch(width=width, resolution=resolution,
                depths=tuple(s.max_depth for s in space.stages),
                kernels=(MOBILENETV2_KERNEL,) * space.num_blocks,
                expands=(MOBILENETV2_EXPAND,) * space.num_blocks)


def baseline_resolutions(space: SearchSpace) -> tuple[int, ...]:
    """The space's resolutions and, below them, smaller ones in steps of 4 down to 8."""
    low = min(space.resolution_choices)
    return tuple(sorted(set(space.resolution_choices) | set(range(low, 7, -4)), reverse=True))


class NoBaselineFits(McunetError):
    """No scaled MobileNetV2 fits the budget; `tried` holds every pair tried and its cost (the
    benchmark records it: at a small flash, MobileNetV2's full depth is more code than fits)."""

    def __init__(self, message: str, tried: list[dict]):
        super().__init__(message)
        self.tried = tried


def scaled_mobilenetv2(space: SearchSpace, budget, costs: CostCache) -> tuple[Arch, list[dict]]:
    """The largest (by MACs) MobileNetV2 over the width and resolution grids that fits
    `budget`, and every pair tried (width, resolution, its cost, whether it fits)."""
    tried, best = [], None
    for width in BASELINE_WIDTHS:
        for res in baseline_resolutions(space):
            arch = mobilenetv2(space, width, res)
            cost = costs(arch, budget)
            fits = cost.fits(budget)
            tried.append({"width": width, "resolution": res, "macs": cost.macs,
                          "peak_sram_bytes": cost.peak_sram_bytes,
                          "flash_bytes": cost.flash_bytes, "code_bytes": cost.code_bytes,
                          "fits": fits})
            if fits and (best is None or cost.macs > best[1]):
                best = (arch, cost.macs)
    if best is None:
        raise NoBaselineFits(f"no scaled MobileNetV2 fits {budget.sram_bytes} B SRAM and "
                             f"{budget.flash_bytes} B flash (width down to "
                             f"{BASELINE_WIDTHS[-1]}, resolution down to "
                             f"{baseline_resolutions(space)[-1]}): {least_needed(tried)}", tried)
    return best[0], tried


def least_needed(tried: list[dict]) -> str:
    """What the smallest of the pairs tried needs: the least flash (weights and constants, and
    the code the search budgets with them) and the least SRAM, each with its pair."""
    flash = min(tried, key=lambda t: t["flash_bytes"] + t["code_bytes"])
    sram = min(tried, key=lambda t: t["peak_sram_bytes"])
    return (f"the least flash is {flash['flash_bytes'] + flash['code_bytes']} B "
            f"({flash['flash_bytes']} B weights and constants + about {flash['code_bytes']} B "
            f"code, at width {flash['width']:g}, {flash['resolution']} px), the least SRAM "
            f"{sram['peak_sram_bytes']} B (width {sram['width']:g}, {sram['resolution']} px)")


def run_baseline(cfg, progress: bool = True, log=print) -> dict:
    """Scale MobileNetV2 to cfg's budget, train it from scratch for cfg.time_budget_s (or
    cfg.finetune_steps), export it to int8 and measure it; writes OUT/model.tflite and
    OUT/model.json as a search does, and returns the summary."""
    from .data import load_dataset, prepare
    from .export import int8_accuracy, to_int8_tflite, write_model
    from .keras_net import build_keras
    from .pipeline import EXPORT_RESERVE_S, patch_plans, progress_bar, step_ticker
    from .budget import export_plan
    from .train import Deadline, finetune, keras_accuracy, setup_tf

    start = time.perf_counter()
    out = Path(cfg.out)
    if (out / "model.json").exists():
        raise McunetError(f"{out} already holds a model; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    ds = load_dataset(cfg.dataset, seed=cfg.seed)
    train = ds.train.subset(cfg.train_subset, cfg.seed) if cfg.train_subset else ds.train
    h, w, c = ds.shape
    space = (SearchSpace.from_dict(cfg.space) if cfg.space else
             default_space(c, ds.num_classes, max(h, w)))
    space = replace(space, in_channels=c, num_classes=ds.num_classes)
    budget = cfg.budget
    costs = CostCache(space, patch_plans=patch_plans(cfg.time_budget_s), target=cfg.target)
    arch, tried = scaled_mobilenetv2(space, budget, costs)
    cost = costs(arch, budget)
    log(f"baseline: MobileNetV2 at width {arch.width:g}, {arch.resolution} px: "
        f"{cost.macs / 1e6:.2f} M MACs, {cost.peak_sram_bytes} B SRAM, {cost.flash_bytes} B flash "
        f"+ about {cost.code_bytes} B code")

    setup_tf()
    import tensorflow as tf
    tf.keras.utils.set_random_seed(cfg.seed)
    res = arch.resolution
    x_train = prepare(train.x, res)
    model = build_keras(space, arch)
    left = cfg.time_budget_s - (time.perf_counter() - start) - EXPORT_RESERVE_S
    with progress_bar(cfg.finetune_steps, "train", progress) as bar:
        tick = step_ticker(bar)
        if cfg.finetune_steps:
            total, deadline = cfg.finetune_steps, None
        else:  # as many steps as the time allows, re-planned as the machine's speed changes
            total = 10 ** 6
            deadline = Deadline(time.perf_counter() + max(10.0, left))
        result = finetune(model, train, res, total, cfg.seed, out, progress=tick,
                          x_cache=x_train, deadline=deadline)

    val_rank = ds.val.subset(cfg.val_subset, cfg.seed)
    x_val_rank = prepare(val_rank.x, res)
    float_val = keras_accuracy(model, prepare(ds.val.x, res), ds.val.y)
    rep = x_train[np.random.default_rng(cfg.seed + 1).permutation(len(x_train))[:200]]
    tflite = to_int8_tflite(model, rep)
    int8_val = int8_accuracy(tflite, x_val_rank, val_rank.y)
    int8_test = int8_accuracy(tflite, prepare(ds.test.x, res), ds.test.y) \
        if ds.test is not None else None
    (out / "model.tflite").write_bytes(tflite)
    exported = export_plan(out / "model.tflite", cfg.target, cfg.board, budget)
    fits = exported.fits(budget)
    meta = {
        "format": "mcunet-baseline/1", "baseline": "mobilenetv2-scaled",
        "dataset": ds.name, "arch": arch.to_dict(), "arch_key": space.key(arch),
        "space": space.to_dict(), "tried": tried,
        "budget": {"sram_bytes": budget.sram_bytes, "flash_bytes": budget.flash_bytes,
                   "max_macs": budget.max_macs, "board": cfg.board},
        "measured": {**exported.measured(budget),
                     "val_accuracy_float": float_val, "val_accuracy_int8": int8_val,
                     "test_accuracy_int8": int8_test},
        "train": {"steps": result["steps"], "seconds": round(result["seconds"], 1)},
        "seed": cfg.seed, "seconds": round(time.perf_counter() - start, 1),
    }
    write_model(out, tflite, meta)
    if not fits:
        raise McunetError(exported.over_budget("the scaled MobileNetV2", budget, cost))
    return meta
