"""Interactive experiments for the chapters (ipywidgets), on the package's pure functions.

    AttentionExplorer(models, images, labels).widget      # pick image, model, block
    AblationLab().widget                                   # options -> cost now, training on demand
    ReductionExplorer().widget                             # reduction ratio -> parameters

Each app keeps its controls as attributes and its latest computed values in `.result`,
so that tests (and curious readers) can set a value, trigger the callback and read what
the app would show. Every app can also draw itself as a static figure (`.snapshot()`):
the rendered book shows that image, with a link to run the app live in Colab.
"""
from __future__ import annotations

import threading


from ..attention_maps import extract_attention
from ..cost import count_flops, count_parameters
from ..data import CLASSES
from ..gradcam import grad_cam
from ..images import to_display, to_model_input
from ..models import attention_modules, build_model
from ..viz import PALETTE, book_style
from .map_explorer import blocks_of


def _widgets():
    import ipywidgets

    return ipywidgets


# ----------------------------------------------------------------------------- attention explorer


def explain_image(model, image, block: str, label: int | None = None) -> dict:
    """Everything the explorer shows for one (H, W, 3) uint8 image and one block:
    {"probabilities" (10,), "target", "gradcam" (H, W) of class `label` (default: the
    prediction) at the block's output, "channel" (C,) or None, "spatial" (h, w) or None}
    (None where the model has no such attention in that block, e.g. a baseline)."""
    x = to_model_input(image[None])
    maps = extract_attention(model, x) if attention_modules(model) else {}
    cam = grad_cam(model, x, target=label, layer=block)
    gates = maps.get(block, {})
    return {
        "probabilities": cam.logits.float().softmax(1)[0],
        "target": int(cam.targets[0]),
        "gradcam": cam.maps[0],
        "channel": gates.get("channel", [None])[0],
        "spatial": gates.get("spatial", [None])[0],
    }


def _draw_explanation(picture, result: dict, title: str):
    import matplotlib.pyplot as plt

    with book_style():
        fig, axes = plt.subplots(1, 4, figsize=(11, 2.6), width_ratios=(1, 1, 1, 1.6))
        axes[0].imshow(picture)
        axes[0].set_title(title, fontsize=9)
        axes[1].imshow(picture)
        axes[1].imshow(result["gradcam"].numpy(), cmap="inferno", alpha=0.5, vmin=0, vmax=1)
        target = result["target"]
        axes[1].set_title(f"Grad-CAM: {CLASSES[target]}\nP = {float(result['probabilities'][target]):.2f}",
                          fontsize=9)
        if result["spatial"] is not None:
            axes[2].imshow(result["spatial"].numpy(), cmap="viridis", vmin=0, vmax=1)
            axes[2].set_title("spatial attention", fontsize=9)
        else:
            axes[2].text(0.5, 0.5, "no spatial\nattention", ha="center", va="center")
        for ax in axes[:3]:
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
        if result["channel"] is not None:
            axes[3].bar(range(len(result["channel"])), result["channel"].numpy(), color=PALETTE[0], width=1.0)
            axes[3].set_ylim(0, 1)
            axes[3].set_xlabel("channel")
            axes[3].set_ylabel("weight")
            axes[3].set_title("channel attention", fontsize=9)
        else:
            axes[3].text(0.5, 0.5, "no channel attention", ha="center", va="center")
            axes[3].set_axis_off()
    return fig



def show_in(output, draw) -> None:
    """Replace what an ipywidgets Output area shows with the figure that draw() returns."""
    import matplotlib.pyplot as plt

    output.clear_output(wait=True)
    with output:
        figure = draw()
        plt.show()
        plt.close(figure)

class AttentionExplorer:
    """Pick an image, a model and a block; see Grad-CAM of the true class at the block's
    output, the block's spatial map and its channel weights.

    Args:
        models: {label: trained model}, e.g. {"baseline": b, "SE": se, "CBAM": cbam}; at
            least one with attention (its blocks are the choices; see map_explorer.blocks_of).
        images: (N, 32, 32, 3) uint8; labels: (N,) true classes.
    """

    def __init__(self, models: dict, images, labels) -> None:
        if not models:
            raise ValueError("pass at least one model, e.g. {'CBAM': trained_model('cbam')}")
        blocks = blocks_of(models)
        w = _widgets()
        self.models, self.images, self.labels = models, images, labels
        self.image = w.IntSlider(value=0, min=0, max=len(images) - 1, description="image")
        self.model = w.Dropdown(options=list(models), description="model")
        self.block = w.Dropdown(options=blocks, description="block")
        self.output = w.Output()
        self.result: dict | None = None
        for control in (self.image, self.model, self.block):
            control.observe(self.update, names="value")
        self.widget = w.VBox([w.HBox([self.image, self.model, self.block]), self.output])
        self.update()

    def update(self, _change=None) -> None:
        index = self.image.value
        self.result = explain_image(self.models[self.model.value], self.images[index], self.block.value,
                                    int(self.labels[index]))
        show_in(self.output, self.snapshot)

    def snapshot(self):
        index = self.image.value
        title = f"true: {CLASSES[int(self.labels[index])]}\n{self.model.value}, {self.block.value}"
        return _draw_explanation(to_display(to_model_input(self.images[index][None]))[0], self.result, title)


# ----------------------------------------------------------------------------- ablation lab


def configuration_cost(pooling: str = "avg+max", kernel_size: int = 7, arrangement: str = "channel-spatial",
                       reduction: int = 16, model_name: str = "resnet20") -> dict:
    """Parameters and FLOPs of a CBAM model and of the same model without attention."""
    options = dict(channel_pooling=pooling, kernel_size=kernel_size, arrangement=arrangement, reduction=reduction)
    with_attention = build_model(model_name, "cbam", **options)
    baseline = build_model(model_name, None)
    parameters, flops = count_parameters(with_attention), count_flops(with_attention)
    base_parameters, base_flops = count_parameters(baseline), count_flops(baseline)
    return {"options": options, "parameters": parameters, "flops": flops,
            "extra_parameters": parameters - base_parameters, "extra_flops": flops - base_flops,
            "extra_parameters_percent": 100 * (parameters - base_parameters) / base_parameters,
            "extra_flops_percent": 100 * (flops - base_flops) / base_flops}


class AblationLab:
    """Choose CBAM's options; see its cost at once; train it briefly with a live curve.

    Training runs in a background thread so that the Stop button stays responsive, in
    `profile` (default: the live-grid profile of the profile chosen for this device), with
    `overrides` of its fields if given (e.g. epochs=3; see train.train).
    """

    def __init__(self, data=None, profile: str | None = None, model_name: str = "resnet20", **overrides) -> None:
        from ..devices import choose_device
        from ..profiles import PROFILES, choose_profile

        w = _widgets()
        self.data, self.model_name = data, model_name
        self.profile = profile or choose_profile(device=choose_device()).live_grid
        if self.profile not in PROFILES:
            raise ValueError(f"unknown profile {self.profile!r}; choose one of {', '.join(map(repr, PROFILES))}")
        self.training_options = dict(overrides)
        self.pooling = w.Dropdown(options=["avg+max", "avg", "max"], value="avg+max", description="pooling")
        self.kernel_size = w.Dropdown(options=[3, 5, 7], value=7, description="kernel")
        self.arrangement = w.Dropdown(options=["channel-spatial", "spatial-channel", "parallel"],
                                      description="arrangement")
        self.reduction = w.Dropdown(options=[2, 4, 8, 16], value=16, description="reduction")
        self.cost_label = w.HTML()
        self.start_button = w.Button(description="Train", button_style="primary", icon="play")
        self.stop_button = w.Button(description="Stop", icon="stop", disabled=True)
        self.status = w.HTML("")
        self.curve = w.Output()
        self.result: dict = {}
        self.history: list[dict] = []
        self.thread: threading.Thread | None = None
        self._stop = threading.Event()
        for control in (self.pooling, self.kernel_size, self.arrangement, self.reduction):
            control.observe(self.update_cost, names="value")
        self.start_button.on_click(lambda _button: self.start())
        self.stop_button.on_click(lambda _button: self.stop())
        self.widget = w.VBox([
            w.HBox([self.pooling, self.kernel_size]), w.HBox([self.arrangement, self.reduction]),
            self.cost_label, w.HBox([self.start_button, self.stop_button, self.status]), self.curve])
        self.update_cost()

    def options(self) -> dict:
        return dict(pooling=self.pooling.value, kernel_size=self.kernel_size.value,
                    arrangement=self.arrangement.value, reduction=self.reduction.value)

    def update_cost(self, _change=None) -> None:
        self.result = configuration_cost(**self.options(), model_name=self.model_name)
        r = self.result
        self.cost_label.value = (
            f"<b>{self.model_name} + CBAM</b>: {r['parameters']:,} parameters "
            f"(+{r['extra_parameters']:,}, +{r['extra_parameters_percent']:.2f}%), "
            f"{r['flops'] / 1e6:.2f} MFLOPs per image (+{r['extra_flops_percent']:.2f}%)")

    def _on_epoch(self, record: dict) -> bool:
        self.history.append(record)
        self.status.value = f"epoch {record['epoch']}: validation accuracy {100 * record['val_accuracy']:.1f}%"
        self._draw_curve()
        return not self._stop.is_set()

    def _draw_curve(self) -> None:
        show_in(self.curve, self.snapshot)

    def snapshot(self):
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator

        with book_style():
            fig, ax = plt.subplots(figsize=(5, 3))
            if self.history:
                ax.plot([h["epoch"] for h in self.history], [100 * h["val_accuracy"] for h in self.history],
                        marker="o", color=PALETTE[0])
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole: no tick at 1.5
            ax.set_ylabel("validation accuracy (%)")
            r = self.result
            ax.set_title(f"CBAM {self.arrangement.value}, {self.pooling.value}, k={self.kernel_size.value}, "
                         f"r={self.reduction.value}\n{r['parameters']:,} parameters "
                         f"(+{r['extra_parameters_percent']:.1f}%), +{r['extra_flops_percent']:.1f}% FLOPs",
                         fontsize=9)
        return fig

    def _train(self, options: dict) -> None:
        from ..allocator import keep_freed_memory
        from ..settings import current_settings
        from ..train import train

        keep_freed_memory()
        try:
            result = train(self.model_name, "cbam", profile=self.profile, data=self.data, progress=False,
                           cost_log=current_settings().train_log,
                           attention_options=dict(channel_pooling=options["pooling"],
                                                  kernel_size=options["kernel_size"],
                                                  arrangement=options["arrangement"],
                                                  reduction=options["reduction"]),
                           on_epoch=self._on_epoch, **self.training_options)
            self.training_result = result
            verb = "stopped" if result.stopped_early else "finished"
            self.status.value = (f"{verb} after {len(result.history)} epoch(s): test accuracy "
                                 f"{100 * result.test['accuracy']:.1f}%")
        except Exception as error:  # shown in the app; a thread's exception would vanish
            self.training_error = error
            self.status.value = f"training failed: {type(error).__name__}: {error}"
        finally:
            self.start_button.disabled, self.stop_button.disabled = False, True

    def start(self) -> None:
        """Train the chosen configuration in a background thread."""
        if self.thread is not None and self.thread.is_alive():
            return
        self.history, self._stop = [], threading.Event()
        self.training_result, self.training_error = None, None
        self.start_button.disabled, self.stop_button.disabled = True, False
        self.status.value = "training..."
        self.thread = threading.Thread(target=self._train, args=(self.options(),), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Stop after the current epoch."""
        self._stop.set()
        self.status.value = "stopping after this epoch..."


# ----------------------------------------------------------------------------- reduction explorer


def reduction_costs(reduction: int, model_name: str = "resnet50", attention: str = "cbam") -> dict:
    """Parameters of `model_name` with `attention` at a given reduction ratio, and the
    share of them in the attention modules."""
    if not isinstance(reduction, int) or reduction < 1:
        raise ValueError(f"reduction must be a positive integer, got {reduction!r}")
    model = build_model(model_name, attention, reduction=reduction)
    attention_parameters = sum(count_parameters(m) for m in attention_modules(model).values())
    total = count_parameters(model)
    return {"reduction": reduction, "parameters": total, "attention_parameters": attention_parameters,
            "attention_percent": 100 * attention_parameters / total}


class ReductionExplorer:
    """How the reduction ratio r of the shared MLP trades parameters (the paper uses r = 16)."""

    REDUCTIONS = (2, 4, 8, 16, 32, 64)

    def __init__(self, model_name: str = "resnet50") -> None:
        w = _widgets()
        self.model_name = model_name
        self.table = {r: reduction_costs(r, model_name) for r in self.REDUCTIONS}
        self.reduction = w.SelectionSlider(options=list(self.REDUCTIONS), value=16, description="r")
        self.label = w.HTML()
        self.output = w.Output()
        self.result: dict = {}
        self.reduction.observe(self.update, names="value")
        self.widget = w.VBox([self.reduction, self.label, self.output])
        self.update()

    def update(self, _change=None) -> None:
        self.result = self.table[self.reduction.value]
        r = self.result
        self.label.value = (f"{self.model_name} + CBAM, r = {r['reduction']}: {r['parameters']:,} parameters, "
                            f"{r['attention_parameters']:,} of them ({r['attention_percent']:.2f}%) in attention")
        show_in(self.output, self.snapshot)

    def snapshot(self):
        import matplotlib.pyplot as plt

        with book_style():
            fig, ax = plt.subplots(figsize=(5, 3))
            ratios = list(self.table)
            ax.plot(ratios, [self.table[r]["attention_parameters"] / 1e6 for r in ratios], marker="o",
                    color=PALETTE[0])
            chosen = self.result["reduction"]
            ax.plot([chosen], [self.table[chosen]["attention_parameters"] / 1e6], marker="o", markersize=12,
                    color=PALETTE[3], label=f"r = {chosen}")
            ax.set_xscale("log", base=2)
            ax.set_xlabel("reduction ratio r")
            ax.set_ylabel("attention parameters (millions)")
            ax.set_title(f"{self.model_name}: attention parameters against r")
            ax.legend()
        return fig
