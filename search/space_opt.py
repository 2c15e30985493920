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
                   seed: int = 0, max_macs: int | None = None,
                   progress: Callable[[], None] | None = None) -> tuple[tuple[float, int], list[PairStats]]:
    """((width, resolution), stats of every pair). max_macs optionally caps compute (for a
    training-time or latency budget): heavier models count as not fitting."""
    stats: list[PairStats] = []
    for width in space.width_choices:
        for res in space.resolution_choices:
            rng = random.Random(f"{seed}/{width}/{res}")
            fit_macs = []
            for _ in range(samples):
                cost = costs(space.sample(rng, width, res), budget)
                if cost.fits(budget) and (max_macs is None or cost.macs <= max_macs):
                    fit_macs.append(cost.macs)
                if progress:
                    progress()
            stats.append(PairStats(width, res, samples, len(fit_macs),
                                   sum(fit_macs) / len(fit_macs) if fit_macs else 0.0))
    # A pair where only a rare sample fits is a poor space to search: ask for a quarter.
    good = [s for s in stats if s.fitting >= max(1, samples // 4)] or \
        [s for s in stats if s.fitting]
    if not good:
        smallest = min(stats, key=lambda s: (s.width, s.resolution))
        raise McunetError(
            f"no sampled network fits {budget.sram_bytes // 1024} KB SRAM and "
            f"{budget.flash_bytes // 1024} KB flash, not even at width {smallest.width:g} and "
            f"resolution {smallest.resolution}; raise the budget or use a smaller search space")
    best = max(good, key=lambda s: (s.mean_macs, s.fitting))
    return (best.width, best.resolution), stats
