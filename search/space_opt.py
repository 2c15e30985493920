"""TinyNAS stage 1: choose the (width, resolution) of the search space.

For each pair, sample sub-networks, keep those that fit the SRAM and flash budgets according
to mcunet's planner, and pick the pair whose fitting models have the highest mean compute
(MACs): under the same memory budget, a space whose fitting models compute more tends to hold
more accurate models (MCUNet, Lin et al. 2020, section 3.1).
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Callable

from mcunet.errors import McunetError

from .budget import Budget, CostCache
from .space import SearchSpace


_MORE_SAMPLES = 8  # x samples per pair, when none of the first samples fits anywhere


@dataclass
class PairStats:
    width: float
    resolution: int
    sampled: int
    fitting: int
    mean_macs: float  # over the fitting models (0 when none fits)

    def to_dict(self) -> dict:
        return asdict(self)


def optimise_space(space: SearchSpace, budget: Budget, costs: CostCache, samples: int = 12,
                   seed: int = 0,
                   progress: Callable[[], None] | None = None,
                   prefetch: Callable | None = None) -> tuple[tuple[float, int], list[PairStats]]:
    """((width, resolution), stats of every pair). The budget's compute cap and latency count
    like SRAM and flash: heavier models do not fit. prefetch(archs, patch_plans), if given,
    plans a pair's samples at once beforehand (CostCache.plan_batch: the same costs)."""
    stats: list[PairStats] = []
    # Patch-based plans are few (a count, for reproducibility): stage 1 spends at most half of
    # them, spread evenly over the pairs, and leaves the rest to the evolution.
    pairs = len(space.width_choices) * len(space.resolution_choices)
    per_pair = max(1, costs.patch_plans // 2 // pairs) if costs.patch_plans else 0
    for width in space.width_choices:
        for res in space.resolution_choices:
            rng = random.Random(f"{seed}/{width}/{res}")
            archs = [space.sample(rng, width, res) for _ in range(samples)]
            fit_macs = []
            planned_before = len(costs.patched)
            if prefetch:
                prefetch(archs, per_pair)
            for arch in archs:
                left = per_pair - (len(costs.patched) - planned_before)
                cost = costs(arch, budget, patches_left=left)
                if cost.fits(budget):
                    fit_macs.append(cost.macs)
                if progress:
                    progress()
            stats.append(PairStats(width, res, samples, len(fit_macs),
                                   sum(fit_macs) / len(fit_macs) if fit_macs else 0.0))
    # A pair where only a rare sample fits is a poor space to search: ask for a quarter.
    good = [s for s in stats if s.fitting >= max(1, samples // 4)] or \
        [s for s in stats if s.fitting]
    if not good:
        # At the tightest budgets (4 KB SRAM with the code counted in flash) the 12 samples of
        # every pair can all miss although a pair's smallest network fits, and there fewer than
        # 1 in 50 random networks fit: the space is still searchable, but which pair to search
        # must then be judged by how many of its networks fit at all. So: every pair whose
        # smallest fits draws more samples (layer by layer only: the patch-plan count stays
        # as it was), and the pair with the most fitting networks wins. Reached only when no
        # sample fits, so it changes no choice that the samples could make.
        fallback = []
        for s in stats:
            smallest = costs(space.smallest(s.width, s.resolution), budget, patches_left=0)
            if not smallest.fits(budget):
                continue
            rng = random.Random(f"{seed}/{s.width}/{s.resolution}/more")
            fit_macs = [smallest.macs]
            for _ in range(_MORE_SAMPLES * samples):
                cost = costs(space.sample(rng, s.width, s.resolution), budget, patches_left=0)
                if cost.fits(budget):
                    fit_macs.append(cost.macs)
            s.sampled += 1 + _MORE_SAMPLES * samples
            s.fitting = len(fit_macs)
            s.mean_macs = sum(fit_macs) / len(fit_macs)
            fallback.append(s)
        if fallback:
            best = max(fallback, key=lambda s: (s.fitting, s.mean_macs))
            return (best.width, best.resolution), stats
    if not good:
        raise McunetError(_nothing_fits(space, budget, costs))
    best = max(good, key=lambda s: (s.mean_macs, s.fitting))
    return (best.width, best.resolution), stats


def _nothing_fits(space: SearchSpace, budget: Budget, costs: CostCache) -> str:
    """Why not even the space's smallest network fits: each limit it breaks, and by how much."""
    smallest = space.smallest()
    cost = costs(smallest, budget)
    over = []
    if cost.peak_sram_bytes > budget.sram_bytes:
        over.append(f"{cost.peak_sram_bytes:,} B of SRAM (budget {budget.sram_bytes:,}, "
                    f"{cost.peak_sram_bytes - budget.sram_bytes:,} B over)")
    if cost.flash_held_bytes > budget.flash_bytes:
        over.append(f"{cost.library_flash_bytes:,} B of flash ({cost.flash_bytes:,} of weights "
                    f"and constants + about {cost.code_bytes or 0:,} of code; budget "
                    f"{budget.flash_bytes:,}, {cost.flash_held_bytes - budget.flash_bytes:,} B "
                    "over with the search's margin for the code estimate)")
    if budget.max_macs is not None and cost.macs > budget.max_macs:
        over.append(f"{cost.macs / 1e6:.2f} M MACs (cap {budget.max_macs / 1e6:.2f} M: --max-macs, "
                    "by default what --time-budget can train)")
    lat = cost.latency_ms(budget)
    if budget.latency_ms is not None and lat is not None and lat > budget.latency_ms:
        over.append(f"an estimated {lat:.1f} ms (budget {budget.latency_ms:g} ms)")
    if not over:  # the smallest fits, none of the samples does
        return (f"none of the sampled networks fits the budget (the space's "
                f"smallest, width {smallest.width:g} and resolution {smallest.resolution}, does: "
                f"{cost.peak_sram_bytes:,} B of SRAM, {cost.library_flash_bytes:,} B of flash); "
                "the budget leaves little room in this space: raise it or use a smaller search space")
    why = "; ".join(over)
    return (f"no sampled network fits the budget; the space's smallest (width "
            f"{smallest.width:g}, resolution {smallest.resolution}) needs {why}. Raise that "
            "limit or use a smaller search space")
