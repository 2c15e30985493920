"""The Pareto plot: accuracy against peak SRAM of every candidate the search evaluated."""
from __future__ import annotations

from pathlib import Path

from .evolution import Candidate, pareto_front


def pareto_plot(path: Path, history: list[Candidate], sram_budget: int, chosen: Candidate | None,
                final: tuple[int, float] | None = None, title: str = "") -> Path:
    """final: (peak SRAM, int8 validation accuracy) of the exported model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    if history:
        ax.scatter([c.peak_sram_bytes / 1024 for c in history], [100 * c.accuracy for c in history],
                   s=14, alpha=0.5, label="candidates (supernet, BN recalibrated)")
        front = pareto_front(history)
        ax.plot([c.peak_sram_bytes / 1024 for c in front], [100 * c.accuracy for c in front],
                "-o", ms=4, color="C1", label="Pareto front")
    if chosen is not None:
        ax.scatter([chosen.peak_sram_bytes / 1024], [100 * chosen.accuracy], marker="*", s=180,
                   color="C3", zorder=5, label="chosen")
    if final is not None:
        ax.scatter([final[0] / 1024], [100 * final[1]], marker="D", s=60, color="C2", zorder=5,
                   label="chosen, fine-tuned, int8")
    ax.axvline(sram_budget / 1024, color="grey", ls="--", lw=1, label="SRAM budget")
    ax.set_xlabel("peak SRAM (KB, mcunet plan)")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(title or "TinyNAS search")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
