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
        axes[0].set_xlabel("accuracy (%)\nmean and 95% interval over seeds")
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
        axes[1].set_xlabel("difference to the baseline (points)\n95% interval, paired by seed")
        axes[1].set_title("gain over the baseline")
        paper = table[paper_column] if paper_column in table else [math.nan] * len(names)
        axes[2].barh(list(positions), paper, color=PALETTE[2])
        axes[2].set_xlabel("top-1 error (%)\nlower is better")
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


def plot_time_to_accuracy(histories: dict, budget_seconds: float | None = None):
    """Test accuracy against training time for {label: history} (histories measured with
    test_curve=True), with the time budget as a dashed vertical line."""
    import matplotlib.pyplot as plt

    with book_style():
        fig, ax = plt.subplots(figsize=(6.4, 3.8))
        for label, history in histories.items():
            points = [(h["train_seconds"], 100 * h["test_accuracy"]) for h in history
                      if h.get("test_accuracy") is not None]
            ax.plot(*zip(*points), marker="o", markersize=3, label=label)
        if budget_seconds is not None:
            ax.axvline(budget_seconds, color="0.3", linestyle="--", linewidth=1, label="time budget")
        ax.set_xlabel("training time (s)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title("Accuracy against training time, 2-core CPU")
        ax.legend(fontsize=8)
    return fig


def plot_gradcam_grid(pictures, results: dict, labels, class_names, max_images: int = 6):
    """The paper's qualitative figure: each image, then a Grad-CAM overlay per model.

    pictures: (B, H, W, 3) in [0, 1] (images.to_display); results: {model label:
    GradCAMResult computed with target=labels}, so that each overlay is titled with the
    probability the model gives the true class; labels: (B,) true classes.
    """
    import matplotlib.pyplot as plt

    count = min(len(pictures), max_images)
    columns = 1 + len(results)
    with book_style():
        fig, axes = plt.subplots(count, columns, figsize=(1.9 * columns, 1.9 * count + 0.4), squeeze=False)
        for row in range(count):
            label = int(labels[row])
            axes[row, 0].imshow(pictures[row])
            axes[row, 0].set_title(class_names[label], fontsize=9)
            for column, (name, result) in enumerate(results.items(), start=1):
                if int(result.targets[row]) != label:
                    raise ValueError("compute the Grad-CAM results with target=labels, so that each "
                                     "panel shows the probability of the true class")
                axes[row, column].imshow(pictures[row])
                axes[row, column].imshow(result.maps[row].cpu().numpy(), cmap="inferno", alpha=0.5,
                                         vmin=0, vmax=1)
                axes[row, column].set_title(f"{name}\nP(true) = {float(result.probabilities[row]):.2f}",
                                            fontsize=9)
        for ax in axes.flat:
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
        fig.suptitle("Grad-CAM of the true class (last stage)")
    return fig


def plot_spatial_maps(picture, spatial: dict, title: str = "Spatial attention through the network"):
    """One image and the spatial attention map (H_i, W_i) of each block, {block name: map}."""
    import matplotlib.pyplot as plt

    columns = 1 + len(spatial)
    with book_style():
        fig, axes = plt.subplots(1, columns, figsize=(1.6 * columns, 2.3), squeeze=False)
        axes[0, 0].imshow(picture)
        axes[0, 0].set_title("input", fontsize=9)
        for ax, (name, weights) in zip(axes[0, 1:], spatial.items()):
            weights = weights.cpu().numpy() if hasattr(weights, "cpu") else weights
            image = ax.imshow(weights, cmap="viridis", vmin=0, vmax=1)
            ax.set_title(f"{name}\n{weights.shape[0]}x{weights.shape[1]}", fontsize=8)
        for ax in axes.flat:
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
        fig.colorbar(image, ax=axes[0, -1], shrink=0.8, label="weight")
        fig.suptitle(title)
    return fig


def plot_channel_weights_by_class(weights, labels, class_names, block: str, channels_shown: int = 32):
    """How a block's channel weights (N, C) differ between classes.

    Left: the mean weight per class (rows) of the channels whose class means differ most
    (columns, up to channels_shown). Right: the spread of every weight per class.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    weights = np.asarray(weights.cpu() if hasattr(weights, "cpu") else weights, dtype=float)
    labels = np.asarray(labels.cpu() if hasattr(labels, "cpu") else labels)
    present = [c for c in range(len(class_names)) if (labels == c).any()]
    means = np.stack([weights[labels == c].mean(0) for c in present])  # (classes, C)
    chosen = np.argsort(-means.std(0))[:channels_shown]
    with book_style():
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8), width_ratios=(2, 1))
        image = left.imshow(means[:, chosen], aspect="auto", cmap="viridis")
        left.set_yticks(range(len(present)), [class_names[c] for c in present])
        left.set_xlabel(f"channel (the {len(chosen)} most class-dependent of {weights.shape[1]})")
        left.set_xticks(range(len(chosen)), [str(c) for c in chosen], fontsize=6, rotation=90)
        left.grid(False)
        left.set_title(f"{block}: mean channel weight per class")
        fig.colorbar(image, ax=left, label="mean weight")
        right.boxplot([weights[labels == c].ravel() for c in present], vert=False, showfliers=False)
        right.set_yticks(range(1, len(present) + 1), [class_names[c] for c in present])
        right.set_xlabel("channel weight (all channels)")
        right.set_title("distribution per class")
    return fig


def plot_saliency_curves(curves: dict, mode: str):
    """Mean deletion or insertion curve with a 95% band over images, {label: (B, steps + 1)}."""
    import matplotlib.pyplot as plt
    import numpy as np

    with book_style():
        fig, ax = plt.subplots(figsize=(6, 3.6))
        for index, (label, values) in enumerate(curves.items()):
            values = np.asarray(values.cpu() if hasattr(values, "cpu") else values, dtype=float)
            fractions = np.linspace(0, 1, values.shape[1])
            mean = values.mean(0)
            half_width = 1.96 * values.std(0, ddof=1) / np.sqrt(len(values))
            style = "--" if "random" in label else "-"
            ax.plot(fractions, mean, style, label=label, color=PALETTE[index % len(PALETTE)])
            ax.fill_between(fractions, mean - half_width, mean + half_width, alpha=0.2,
                            color=PALETTE[index % len(PALETTE)])
        verb = "removed" if mode == "deletion" else "inserted"
        ax.set_xlabel(f"fraction of pixels {verb}, most salient first")
        ax.set_ylabel("probability of the class")
        ax.set_title(f"{mode.capitalize()} curves (mean, 95% interval over images)")
        ax.legend(fontsize=8)
    return fig
