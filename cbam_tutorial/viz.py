"""Figures in the book's one style: labelled axes with units, titles, a colour-blind-safe palette.

    with book_style():
        fig = plot_ablation(summarize(records), title="Channel pooling (CIFAR-10)")
"""
from __future__ import annotations

import contextlib
import math

# Okabe & Ito's palette, distinguishable with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")


@contextlib.contextmanager
def book_style():
    """Matplotlib settings shared by every figure of the book."""
    import matplotlib.pyplot as plt
    from cycler import cycler

    settings = {
        "axes.prop_cycle": cycler(color=PALETTE),
        "axes.grid": True,
        "grid.alpha": 0.3,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "figure.dpi": 110,
        "savefig.dpi": 110,
        "font.size": 10,
        "axes.titlesize": 11,
        "figure.constrained_layout.use": True,
    }
    with plt.rc_context(settings):
        yield


def plot_ablation(table, title: str, paper_column: str = "paper top-1 error % (ImageNet, ResNet-50)"):
    """Three panels for a summarize() table: accuracy with its 95% interval, the difference to
    the baseline with its interval, and the paper's ImageNet error (a different task)."""
    import matplotlib.pyplot as plt

    names = list(table.index)
    positions = range(len(names))
    with book_style():
        fig, axes = plt.subplots(1, 3, figsize=(11, 0.45 * len(names) + 1.6), sharey=True)
        mean = table["accuracy %"]
        axes[0].errorbar(mean, positions, xerr=[mean - table["95% CI low"], table["95% CI high"] - mean],
                         fmt="o", color=PALETTE[0], capsize=3)
        axes[0].set_xlabel("accuracy (%), mean and 95% interval over seeds")
        axes[0].set_yticks(list(positions), names)
        axes[0].invert_yaxis()
        axes[0].set_title("CIFAR-10 (this book)")
        if "vs baseline" in table:
            diff = table["vs baseline"]
            low = diff - table["vs baseline CI low"]
            high = table["vs baseline CI high"] - diff
            axes[1].errorbar(diff, positions, xerr=[low.fillna(0), high.fillna(0)], fmt="o",
                             color=PALETTE[1], capsize=3)
        axes[1].axvline(0, color="black", linewidth=0.8)
        axes[1].set_xlabel("difference to baseline (points), 95% interval")
        axes[1].set_title("gain over the baseline")
        paper = table[paper_column] if paper_column in table else [math.nan] * len(names)
        axes[2].barh(list(positions), paper, color=PALETTE[2])
        axes[2].set_xlabel("top-1 error (%), lower is better")
        axes[2].set_title("paper: ImageNet-1K, ResNet-50\n(a different, larger task)")
        finite = [p for p in paper if not math.isnan(p)]
        if finite:
            axes[2].set_xlim(min(finite) - 1, max(finite) + 0.5)
        fig.suptitle(title)
    return fig


def plot_history(histories: dict, metric: str = "val_accuracy"):
    """Learning curves: `metric` against training time for {label: history}."""
    import matplotlib.pyplot as plt

    with book_style():
        fig, ax = plt.subplots(figsize=(6, 3.6))
        for label, history in histories.items():
            points = [(h["train_seconds"], 100 * h[metric]) for h in history if h.get(metric) is not None]
            ax.plot(*zip(*points), marker="o", label=label)
        ax.set_xlabel("training time (s)")
        ax.set_ylabel(f"{metric.replace('_', ' ')} (%)")
        ax.set_title("Learning curves")
        ax.legend()
    return fig
