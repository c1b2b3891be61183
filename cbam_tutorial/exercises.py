"""Automatic checks for the book's implementation exercises: they grade behaviour, not form.

    check_channel_attention(MyChannelAttention)    # built as MyChannelAttention(channels, reduction)
    check_spatial_attention(MySpatialAttention)    # built as MySpatialAttention(kernel_size)
    check_cbam(MyCBAM)                             # built as MyCBAM(channels, reduction, kernel_size)
    check_grad_cam(my_grad_cam)                    # called as my_grad_cam(model, images, targets, layer)

How a check grades:

1. It builds the student's class with two different sets of constructor arguments, so a
   hard-coded size is caught.
2. It finds the student's weights by what they can do, in any storage: an MLP layer as
   nn.Linear, a 1x1 nn.Conv2d, a kernel-1 nn.Conv1d or a raw parameter used either way
   round (W or its transpose); a convolution as nn.Conv2d or F.conv2d with its own bias,
   with any spelling of its padding. Every reading of the parameters that fits the shapes is
   tried, and the one under which the paper's formula reproduces the student's output wins.
3. It compares forward values on several random inputs and shapes, and gradients: to the
   input and to every parameter. A parameter that never receives a gradient (a gate under
   no_grad or .detach()ed, an unused layer) is a mistake with its own message.
4. When the output is wrong, it computes each known mistake with the same weights and
   names the one that matches, with what to change. Only what no diagnosis explains gets a
   general message, and that one says which step differs.

A student's code runs with a time limit (a forward that never returns is reported as such),
and an exception in it is reported with the line of the student's code that raised it.
"""
from __future__ import annotations

import copy
import itertools
import signal
import threading
import traceback
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

# Seconds one call of the student's code may take; a correct solution takes milliseconds.
TIME_LIMIT = 20.0
_PACKAGE = Path(__file__).resolve().parent
_TORCH = Path(torch.__file__).resolve().parent


class ExerciseError(AssertionError):
    """The solution does not do what the exercise asks; the message says what is wrong."""


def _fail(message: str):
    raise ExerciseError(message)


def _passed(what: str, how: str = "in values and gradients, on several inputs and with two sets of "
                                    "constructor arguments") -> str:
    message = f"Correct: your {what} matches the reference {how}."
    print(message)
    return message


# ----------------------------------------------------------------------------- running student code


class _StudentCodeTimedOut(BaseException):
    """Raised into the student's code by the timer; a BaseException, so that an
    `except Exception` in their code cannot swallow it."""


@contextmanager
def _time_limit(what: str, seconds: float | None = None):
    """Stop `what` (the student's code) after `seconds` and say that it hung.

    The timer is SIGALRM, which only the main thread can receive (where notebook cells run);
    elsewhere, and where the platform has no SIGALRM, the code runs without a limit.
    """
    seconds = TIME_LIMIT if seconds is None else seconds
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def stop(signum, frame):
        raise _StudentCodeTimedOut

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    except _StudentCodeTimedOut:
        _fail(f"{what} did not finish within {seconds:g} s, so it was stopped: it probably never returns "
              "(a loop whose condition never changes?). Fix it and run the check again.")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _failing_line(error: BaseException) -> str:
    """' (in `code`, line N)' for the last line of the student's own code in the traceback."""
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        path = Path(frame.filename).resolve() if frame.filename and not frame.filename.startswith("<") else None
        inside_library = path is not None and (_PACKAGE in path.parents or _TORCH in path.parents
                                               or "site-packages" in path.parts)
        if not inside_library and frame.line:
            return f" (in `{frame.line.strip()}`, line {frame.lineno})"
    return ""


def _explain_exception(error: Exception) -> str:
    text = f"{type(error).__name__}: {error}"
    if isinstance(error, TypeError) and ("tuple" in str(error) or "max" in str(error)):
        text += (" (torch.max(x, dim=...) returns (values, indices): use .values, or x.amax(dim=...))")
    if isinstance(error, RuntimeError) and ("size" in str(error) or "shape" in str(error)):
        text += " (print the shapes after every step and compare them with the chapter's walk-through)"
    return text


def _build(student_class, args: tuple, what: str) -> nn.Module:
    try:
        with _time_limit(f"building {what}{args}"):
            module = student_class(*args)
    except ExerciseError:
        raise
    except Exception as error:  # the student's constructor: report whatever went wrong
        _fail(f"{what}{args} could not be built{_failing_line(error)}: {_explain_exception(error)}")
    if not isinstance(module, nn.Module):
        _fail(f"{what} must be an nn.Module subclass (class {what}(nn.Module): ...)")
    return module.eval()


def _forward(module: nn.Module, x: torch.Tensor, shapes_that_worked: list) -> tuple[torch.Tensor, torch.Tensor]:
    """(leaf input, output) of the student's forward on a copy of x, with x itself checked untouched."""
    leaf = x.detach().clone().requires_grad_(True)
    given = leaf.clone()
    convolutions = []  # (kernel size, output size) of every Conv2d, to explain a crash
    handles = [m.register_forward_hook(lambda m, i, o: convolutions.append((m.kernel_size, tuple(o.shape[-2:]))))
               for m in module.modules() if isinstance(m, nn.Conv2d)]
    try:
        with _time_limit("your forward"):
            out = module(given)
    except ExerciseError:
        raise
    except Exception as error:
        for kernel, size in convolutions:
            if kernel[0] > 1 and size != tuple(x.shape[-2:]):
                _fail(f"the {kernel[0]}x{kernel[1]} convolution turns {tuple(x.shape[-2:])} maps into {size}, so "
                      "the map no longer lines up with the features: pad the convolution by kernel_size // 2 "
                      "(or padding='same') so the map keeps the input's H x W")
        fixed = ""
        if shapes_that_worked:
            fixed = (f" It ran on an input of shape {shapes_that_worked[0]} but not on {tuple(x.shape)}: "
                     "something depends on the input's size (a pooling window of fixed size such as "
                     "avg_pool2d(x, 7)? pool over the whole map: x.mean(dim=(2, 3)), x.amax(dim=(2, 3)))")
        _fail(f"forward raised {_explain_exception(error)}{_failing_line(error)}.{fixed}")
    finally:
        for handle in handles:
            handle.remove()
    if not torch.equal(given.detach(), x):
        _fail("forward changed its input in place (e.g. x *= w or x.mul_(w)); the block's input is "
              "still needed by the residual shortcut and by autograd: return x * w instead")
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        out = out[0]
    if not isinstance(out, torch.Tensor):
        _fail(f"forward must return a tensor, got {type(out).__name__}")
    shapes_that_worked.append(tuple(x.shape))
    return leaf, out


def _close(a, b) -> bool:
    return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape
            and bool(torch.allclose(a.detach().double(), b.detach().double(), atol=1e-5, rtol=1e-4)))


def _randomise(module: nn.Module, seed: int) -> None:
    """New random weights (so that zeros or ones from an initialiser cannot hide a mistake), and
    non-trivial running statistics for any BatchNorm."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
        for norm in module.modules():
            if isinstance(norm, nn.modules.batchnorm._BatchNorm):
                norm.running_mean.copy_(torch.randn(norm.running_mean.shape, generator=generator) * 0.2)
                norm.running_var.copy_(torch.rand(norm.running_var.shape, generator=generator) + 0.5)


# ----------------------------------------------------------------------------- finding the weights


def _norm_parameters(module: nn.Module) -> set[int]:
    return {id(p) for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
            for p in m.parameters(recurse=False)}


def _squeezed(parameter: torch.Tensor) -> torch.Tensor:
    """The parameter with its trailing size-1 dimensions dropped: a 1x1 Conv2d or kernel-1
    Conv1d weight (out, in, 1[, 1]) becomes the (out, in) matrix it acts as."""
    view = parameter
    while view.dim() > 2 and view.shape[-1] == 1:
        view = view[..., 0]
    return view


def _mlp_readings(module: nn.Module, channels: int, reduction: int, what: str) -> list[dict]:
    """Every reading of the module's parameters as one shared MLP channels -> hidden -> channels:
    dicts of w1 (hidden, channels), b1, w2 (channels, hidden), b2 as differentiable views."""
    hidden = channels // reduction
    norms = _norm_parameters(module)
    named = [(name, p) for name, p in module.named_parameters() if id(p) not in norms]
    matrices = [(name, p) for name, p in named if _squeezed(p).dim() == 2]
    fitting = [(name, p) for name, p in matrices if sorted(_squeezed(p).shape) == sorted((channels, hidden))]
    if not fitting:
        sizes = sorted({other for _, p in matrices for other in _squeezed(p).shape
                        if channels in _squeezed(p).shape and other != channels})
        if sizes:
            _fail(f"{what}({channels}, {reduction}) has an MLP with {sizes[0]} hidden "
                  f"units where channels // reduction = {hidden}: the reduction argument is ignored (a "
                  "hard-coded size?). Build the MLP from the constructor's arguments")
        if any(tuple(_squeezed(p).shape) == (channels, channels) for _, p in matrices):
            _fail("the MLP maps channels to channels directly: CBAM's MLP has a bottleneck, channels -> "
                  "channels // reduction -> channels, with a ReLU between the two layers")
        shapes = [tuple(p.shape) for _, p in named]
        _fail(f"expected a shared MLP {channels} -> {hidden} -> {channels} (hidden = channels // reduction) "
              f"for {what}({channels}, ...), found parameters of shapes {shapes}: is the channels argument "
              "ignored (a hard-coded size)?")
    if len(fitting) > 2:
        _fail("found two MLPs (two sets of weights of the same shape): CBAM's channel attention sends "
              "the average- and the max-pooled descriptor through ONE shared MLP; build the MLP once "
              "and call it on both")
    if len(fitting) < 2:
        _fail(f"found only one layer of the MLP ({fitting[0][0]}): the MLP is Linear -> ReLU -> Linear, "
              f"{channels} -> {hidden} -> {channels}")

    def oriented(p, rows, columns):
        m = _squeezed(p)
        return m if tuple(m.shape) == (rows, columns) else m.t()

    vectors = [p for _, p in named if p.dim() >= 1 and _squeezed(p).dim() == 1]
    first_biases = [p.reshape(-1) for p in vectors if p.numel() == hidden] or [None]
    second_biases = [p.reshape(-1) for p in vectors if p.numel() == channels] or [None]
    readings = []
    for a, b in itertools.permutations([p for _, p in fitting], 2):
        for b1, b2 in itertools.product(first_biases, second_biases):
            readings.append({"w1": oriented(a, hidden, channels), "b1": b1,
                             "w2": oriented(b, channels, hidden), "b2": b2})
    return readings


def _spatial_readings(module: nn.Module, kernel_size: int, what: str) -> list[dict]:
    """Every reading of the module's parameters as the spatial gate's k x k convolution from 2
    maps to 1: dicts of kernel (1, 2, k, k), bias (1,) or None, and norm (a module or None)."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.num_features == 1]
    norm_ids = _norm_parameters(module)
    named = [(name, p) for name, p in module.named_parameters() if id(p) not in norm_ids]
    kernels = [p for _, p in named if p.dim() == 4 and p.shape[:2] in ((1, 2), (2, 1))
               and p.shape[2] == p.shape[3]]
    if not kernels:
        one_map = [p for _, p in named if p.dim() == 4 and p.shape[:2] == (1, 1) and p.shape[-1] > 1]
        if one_map:
            _fail("the convolution reads 1 map: concatenate the channel-wise mean AND max maps, (B, 2, H, W), "
                  "and convolve those 2 maps to 1")
        _fail(f"expected one convolution from 2 maps to 1 (weight shape (1, 2, {kernel_size}, {kernel_size})); "
              f"found parameters of shapes {[tuple(p.shape) for _, p in named]}")
    right = [p for p in kernels if p.shape[-1] == kernel_size]
    if not right:
        _fail(f"{what}({kernel_size}) has a {kernels[0].shape[-1]}x{kernels[0].shape[-1]} convolution: the "
              "kernel_size argument is ignored (a hard-coded size?). Use nn.Conv2d(2, 1, kernel_size, ...)")
    biases = [p.reshape(-1) for _, p in named if p.numel() == 1] or [None]
    readings = []
    for kernel, bias in itertools.product(right, biases):
        kernel = kernel if kernel.shape[:2] == (1, 2) else kernel.transpose(0, 1)
        for norm in (norms[:1] or [None]):
            readings.append({"kernel": kernel, "bias": bias, "norm": norm})
    return readings


# ----------------------------------------------------------------------------- formulas and mistakes


def _mlp(v, weights, hidden_activation=F.relu, relu_last=False):
    out = F.linear(hidden_activation(F.linear(v, weights["w1"], weights["b1"])), weights["w2"], weights["b2"])
    return F.relu(out) if relu_last else out


def _channel_gate(x, weights) -> torch.Tensor:
    """The paper's channel gate (B, C): sigmoid(MLP(avg) + MLP(max))."""
    return torch.sigmoid(_mlp(x.mean(dim=(2, 3)), weights) + _mlp(x.amax(dim=(2, 3)), weights))


def _channel_gates(x, weights) -> dict:
    """Channel gates (B, C) for the paper's formula ("correct") and for each known mistake."""
    avg, mx = x.mean(dim=(2, 3)), x.amax(dim=(2, 3))
    a, m = _mlp(avg, weights), _mlp(mx, weights)
    gates = {
        "correct": _channel_gate(x, weights),
        "no sigmoid": a + m,
        "tanh": torch.tanh(a + m),
        "softmax": torch.softmax(a + m, dim=1),
        "hard sigmoid": F.hardsigmoid(a + m),
        "sigmoid per branch": torch.sigmoid(a) + torch.sigmoid(m),
        "relu last": torch.sigmoid(_mlp(avg, weights, relu_last=True) + _mlp(mx, weights, relu_last=True)),
        "avg only": torch.sigmoid(a),
        "max only": torch.sigmoid(m),
        "avg twice": torch.sigmoid(a + a),
        "max twice": torch.sigmoid(m + m),
        "sum pooling": torch.sigmoid(_mlp(x.sum(dim=(2, 3)), weights) + m),
        "argmax values": torch.sigmoid(a + _mlp(x.flatten(2).argmax(-1).to(x.dtype), weights)),
    }
    for name, activation in (("sigmoid hidden", torch.sigmoid), ("tanh hidden", torch.tanh), ("gelu hidden", F.gelu),
                             ("leaky hidden", lambda t: F.leaky_relu(t, 0.01)), ("no hidden activation", lambda t: t)):
        gates[name] = torch.sigmoid(_mlp(avg, weights, activation) + _mlp(mx, weights, activation))
    if x.shape[1] == x.shape[2] == x.shape[3]:  # pooling over (C, H) or (C, W) gives the right length
        for axes in ((1, 2), (1, 3)):
            gates[f"wrong axis {axes}"] = torch.sigmoid(_mlp(x.mean(dim=axes), weights) + _mlp(x.amax(dim=axes), weights))
    return gates


def _gated_outputs(x, gates: dict, shape) -> dict:
    """Refined features for each gate, and the mistakes in how a gate is applied."""
    correct = shape(gates["correct"])
    outputs = {name: x * shape(gate) for name, gate in gates.items()}
    outputs.update({"one plus gate": x * (1 + correct), "x twice": x * x * correct,
                    "returns gate": correct.expand_as(x), "returns gate unexpanded": correct + 0})
    return outputs


CHANNEL_MESSAGES = {
    "no sigmoid": "the channel weights are not squashed: apply torch.sigmoid to the SUM of the two MLP "
                  "outputs, so that every weight lies in (0, 1)",
    "tanh": "the weights are squashed with tanh, which gives values in (-1, 1) and can flip a channel's sign: "
            "the gate is a sigmoid, M_c = sigmoid(MLP(avg) + MLP(max))",
    "softmax": "the weights are a softmax over the channels, which makes them compete and sum to 1: each "
               "channel gets its own sigmoid, M_c = sigmoid(MLP(avg) + MLP(max))",
    "hard sigmoid": "the gate uses hardsigmoid; CBAM's gate is the smooth sigmoid, torch.sigmoid",
    "sigmoid per branch": "the sigmoid is in the wrong place: add the two MLP outputs first, then apply ONE "
                          "sigmoid, M_c = sigmoid(MLP(avg) + MLP(max))",
    "relu last": "there is a ReLU after the last MLP layer: the MLP is Linear -> ReLU -> Linear, and only "
                 "the sigmoid follows the second Linear (a ReLU there makes every weight at least 0.5)",
    "avg only": "only average pooling reaches the MLP: CBAM adds the max-pooled descriptor too, "
                "MLP(avg) + MLP(max)",
    "max only": "only max pooling reaches the MLP: CBAM adds the average-pooled descriptor too, "
                "MLP(avg) + MLP(max)",
    "avg twice": "the average-pooled descriptor goes through the MLP twice (MLP(avg) + MLP(avg)): the "
                 "second term must use the max-pooled descriptor",
    "max twice": "the max-pooled descriptor goes through the MLP twice (MLP(max) + MLP(max)): the first "
                 "term must use the average-pooled descriptor",
    "sum pooling": "the 'average' descriptor is a sum over the positions: divide by H * W, x.mean(dim=(2, 3))",
    "argmax values": "the max-pooled descriptor holds the positions of the maxima (argmax indices), not the "
                     "maximum values: use x.amax(dim=(2, 3)) or torch.max(...).values",
    "sigmoid hidden": "the MLP's hidden activation is a sigmoid: it is a ReLU, Linear -> ReLU -> Linear",
    "tanh hidden": "the MLP's hidden activation is tanh: it is a ReLU, Linear -> ReLU -> Linear",
    "gelu hidden": "the MLP's hidden activation is GELU: the paper's MLP uses a ReLU, Linear -> ReLU -> Linear",
    "leaky hidden": "the MLP's hidden activation is a leaky ReLU: the paper's MLP uses a plain ReLU",
    "no hidden activation": "the MLP has no activation between its layers, so it is one linear map: put a "
                            "ReLU between them, Linear -> ReLU -> Linear",
    "wrong axis (1, 2)": "pooling runs over the wrong axes: the channel descriptor pools each channel over "
                         "its positions, x.mean(dim=(2, 3)) and x.amax(dim=(2, 3)), giving (B, C)",
    "one plus gate": "the block returns x * (1 + weights), the same as x + x * weights: CBAM returns "
                     "x * weights only; the residual shortcut belongs to the ResNet block around the attention",
    "x twice": "the input is multiplied in twice (x * x * weights): return x * weights",
    "returns gate": "the block returns the attention weights, not the refined features: multiply the gate "
                    "with the input, return x * weights",
}
CHANNEL_MESSAGES["wrong axis (1, 3)"] = CHANNEL_MESSAGES["wrong axis (1, 2)"]
CHANNEL_MESSAGES["returns gate unexpanded"] = CHANNEL_MESSAGES["returns gate"]


def _spatial_gate_from(first, second, parts, order: str, squash=torch.sigmoid) -> torch.Tensor:
    """squash(norm(conv([first; second]))) (B, 1, H, W), the maps in `order`."""
    kernel, bias, norm = parts["kernel"], parts["bias"], parts["norm"] or nn.Identity()
    maps = torch.cat([first, second] if order == "mean-max" else [second, first], 1)
    return squash(norm(F.conv2d(maps, kernel, bias, padding=kernel.shape[-1] // 2)))


def _spatial_gate(x, parts, order: str) -> torch.Tensor:
    """The paper's spatial gate (B, 1, H, W): sigmoid(conv([mean; max]))."""
    return _spatial_gate_from(x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True), parts, order)


def _spatial_gates(x, parts, order: str) -> dict:
    """Spatial gates (B, 1, H, W) for the formula and for each known mistake, in one map order."""
    def gate(first, second, squash=torch.sigmoid):
        return _spatial_gate_from(first, second, parts, order, squash)

    mean, mx = x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)
    positions = lambda t: torch.softmax(t.flatten(1), 1).view_as(t)  # noqa: E731
    return {
        "correct": gate(mean, mx),
        "no sigmoid": gate(mean, mx, lambda t: t),
        "tanh": gate(mean, mx, torch.tanh),
        "softmax": gate(mean, mx, positions),
        "hard sigmoid": gate(mean, mx, F.hardsigmoid),
        "mean twice": gate(mean, mean),
        "max twice": gate(mx, mx),
        "sum pooling": gate(x.sum(dim=1, keepdim=True), mx),
        "argmax values": gate(mean, x.argmax(dim=1, keepdim=True).to(x.dtype)),
        "min instead of max": gate(mean, x.amin(dim=1, keepdim=True)),
    }


SPATIAL_MESSAGES = {
    "no sigmoid": "the spatial map is not squashed: apply torch.sigmoid after the convolution so every "
                  "weight lies in (0, 1)",
    "tanh": "the spatial map is squashed with tanh (values in (-1, 1)): the gate is a sigmoid",
    "softmax": "the spatial map is a softmax over the positions, which makes positions compete and sum to "
               "1: each position gets its own sigmoid",
    "hard sigmoid": "the gate uses hardsigmoid; CBAM's gate is the smooth sigmoid, torch.sigmoid",
    "mean twice": "the mean map is used twice: concatenate the channel-wise mean AND the channel-wise max",
    "max twice": "the max map is used twice: concatenate the channel-wise mean AND the channel-wise max",
    "sum pooling": "the 'mean' map is a sum over the channels: use x.mean(dim=1, keepdim=True)",
    "argmax values": "the max map holds the channel indices of the maxima (argmax), not the maximum values: "
                     "use x.amax(dim=1, keepdim=True) or torch.max(x, dim=1, keepdim=True).values",
    "min instead of max": "the second map is the minimum over the channels: CBAM uses the maximum, "
                          "x.amax(dim=1, keepdim=True)",
    **{name: CHANNEL_MESSAGES[name] for name in ("one plus gate", "x twice", "returns gate",
                                                 "returns gate unexpanded")},
}
SPATIAL_HINT = ("Spatial attention pools over the channel axis, x.mean(dim=1, keepdim=True) and "
                "x.amax(dim=1, keepdim=True), concatenates the two (B, 1, H, W) maps along dim 1, and "
                "convolves them with padding kernel_size // 2.")


# ----------------------------------------------------------------------------- comparing


def _check_gradients(what: str, module: nn.Module, leaf: torch.Tensor, out: torch.Tensor,
                     expected: torch.Tensor, seed: int) -> None:
    """The student's gradients (to the input and every parameter) against the formula's."""
    names, parameters = zip(*module.named_parameters()) if list(module.parameters()) else ((), ())
    if not out.requires_grad:
        _fail(f"{what}'s output carries no gradient at all: the computation is cut off from autograd "
              "(torch.no_grad(), .detach() or .data); the attention could never learn")
    weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed))
    inputs = (leaf, *parameters)
    theirs = torch.autograd.grad((out * weight).sum(), inputs, allow_unused=True, retain_graph=True)
    ours = torch.autograd.grad((expected * weight).sum(), inputs, allow_unused=True, retain_graph=True)
    missing = [name for name, t, o in zip(names, theirs[1:], ours[1:])
               if (t is None or not t.any()) and o is not None and o.any()]
    if missing:
        _fail(f"the parameter(s) {', '.join(missing)} never receive a gradient, so they could never learn: "
              "the gate is computed under torch.no_grad() or .detach()ed (or .data is used); compute it "
              "as part of the graph")
    unused = [name for name, t, o in zip(names, theirs[1:], ours[1:]) if t is None and o is None]
    if unused:
        _fail(f"the parameter(s) {', '.join(unused)} are never used in forward: remove them, or use them "
              "where the formula needs them")
    if theirs[0] is None or not _close(theirs[0], ours[0]):
        _fail(f"{what} gives the right values but the wrong gradient to its input: part of the computation "
              "is detached (e.g. the gate or a pooled map .detach()ed, or built with .data)")
    for name, t, o in zip(names, theirs[1:], ours[1:]):
        if o is not None and not _close(t, o):
            _fail(f"{what} gives the right values but the wrong gradient to {name}: part of the computation "
                  "is detached or computed outside autograd")


def _step_that_differs(out: torch.Tensor, x: torch.Tensor, expected_gate: torch.Tensor, kind: str) -> str:
    """For the general message: what the output's implied gate (out / x) says about the step that differs."""
    if out.shape != x.shape:
        return f"the output has shape {tuple(out.shape)} for an input of shape {tuple(x.shape)}"
    safe = x.abs() > 1e-3
    implied = torch.where(safe, out / torch.where(safe, x, torch.ones_like(x)), torch.nan)
    axis = (2, 3) if kind == "channel" else 1
    spread = (implied - implied.nanmean(dim=axis, keepdim=True)).abs().nan_to_num(0).amax()
    if spread > 1e-3:
        one = "one weight per channel, (B, C, 1, 1)" if kind == "channel" else "one map for all channels, (B, 1, H, W)"
        return f"out / x is not a gate of the right shape: the {kind} gate must be {one}, multiplied with x"
    values = implied.nan_to_num(0.5)
    if values.min() < -1e-4 or values.max() > 1 + 1e-4:
        return (f"the implied {kind} weights out / x range from {values.min().item():.2f} to "
                f"{values.max().item():.2f}, outside (0, 1): the last step before multiplying must be a sigmoid")
    return (f"the implied {kind} weights (out / x) are in (0, 1) and shaped right but differ from the formula's "
            f"by up to {(implied - expected_gate).abs().nan_to_num(0).amax().item():.3g}: check the pooling and "
            f"the {'shared MLP' if kind == 'channel' else 'convolution'} step by step against the chapter")


def _diagnose(what, out, outputs_by_reading: list[dict], messages: dict, step: str, convolution=False) -> None:
    """Name the known mistake whose output matches, or say which step differs."""
    for outputs in outputs_by_reading:
        for name, candidate in outputs.items():
            if name != "correct" and name in messages and _close(out, candidate):
                _fail(messages[name])
    if convolution and out.dim() == 4 and out.shape[-2:] != outputs_by_reading[0]["correct"].shape[-2:]:
        _fail(f"{what} returns maps of {tuple(out.shape[-2:])} pixels for inputs of "
              f"{tuple(outputs_by_reading[0]['correct'].shape[-2:])}: pad the convolution by kernel_size // 2 "
              "(or padding='same') so the map keeps the input's H x W")
    _fail(f"{what}'s output differs from the formula: {step}")


# ----------------------------------------------------------------------------- channel attention


CHANNEL_CONSTRUCTIONS = ((12, 4), (32, 8))  # (channels, reduction): hidden 3 and 4


def _check_channel_on(module, channels, hidden, x, seed, worked, what="ChannelAttention") -> None:
    readings = _mlp_readings(module, channels, channels // hidden, what)
    leaf, out = _forward(module, x, worked)
    shape = lambda g: g[:, :, None, None]  # noqa: E731
    for weights in readings:
        expected = leaf * shape(_channel_gate(leaf, weights))
        if _close(out, expected):
            _check_gradients(what, module, leaf, out, expected, seed)
            return
    with torch.no_grad():
        outputs = [_gated_outputs(x, _channel_gates(x, weights), shape) for weights in readings]
        expected_gate = shape(_channel_gate(x, readings[0]))
    _diagnose(what, out.detach(), outputs, CHANNEL_MESSAGES, _step_that_differs(out.detach(), x, expected_gate, "channel"))


def check_channel_attention(student_class, channels: int | None = None, reduction: int | None = None) -> str:
    """Check `student_class(channels, reduction)` against M_c(F) = sigmoid(MLP(avg) + MLP(max)),
    out = F * M_c(F). By default it is built twice, as (12, 4) and (32, 8)."""
    constructions = ((channels, reduction),) if channels else CHANNEL_CONSTRUCTIONS
    for number, (c, r) in enumerate(constructions):
        module = _build(student_class, (c, r), what="ChannelAttention")
        worked: list = []
        for seed, shape in enumerate([(2, c, c, c), (3, c, 5, 7)]):
            _randomise(module, 10 * number + seed)
            x = torch.randn(shape, generator=torch.Generator().manual_seed(100 + 10 * number + seed))
            _check_channel_on(module, c, c // r, x, seed, worked)
    return _passed("ChannelAttention")


# ----------------------------------------------------------------------------- spatial attention


SPATIAL_KERNELS = (7, 3)


def _spatial_expected(leaf, parts):
    return {order: leaf * _spatial_gate(leaf, parts, order) for order in ("mean-max", "max-mean")}


def _check_spatial_on(module, kernel_size, x, seed, worked, what="SpatialAttention") -> None:
    readings = _spatial_readings(module, kernel_size, what)
    leaf, out = _forward(module, x, worked)
    for parts in readings:
        for expected in _spatial_expected(leaf, parts).values():
            if _close(out, expected):
                _check_gradients(what, module, leaf, out, expected, seed)
                return
    with torch.no_grad():
        outputs = [_gated_outputs(x, _spatial_gates(x, parts, order), lambda g: g)
                   for parts in readings for order in ("mean-max", "max-mean")]
        expected_gate = _spatial_gate(x, readings[0], "mean-max")
    _diagnose(what, out.detach(), outputs, SPATIAL_MESSAGES, _step_that_differs(out.detach(), x, expected_gate, "spatial"),
              convolution=True)


def check_spatial_attention(student_class, kernel_size: int | None = None) -> str:
    """Check `student_class(kernel_size)` against M_s(F) = sigmoid(conv_kxk([mean(F); max(F)])),
    out = F * M_s(F) (either map order; a BatchNorm after the convolution is allowed). By
    default it is built twice, with kernel sizes 7 and 3."""
    for number, k in enumerate((kernel_size,) if kernel_size else SPATIAL_KERNELS):
        module = _build(student_class, (k,), what="SpatialAttention")
        worked: list = []
        for seed, shape in enumerate([(2, 8, 9, 9), (3, 5, 6, 11)]):
            _randomise(module, 10 * number + seed)
            x = torch.randn(shape, generator=torch.Generator().manual_seed(200 + 10 * number + seed))
            _check_spatial_on(module, k, x, seed, worked)
    return _passed("SpatialAttention")


# ----------------------------------------------------------------------------- CBAM


ARRANGEMENTS = ("channel-spatial", "spatial-channel", "parallel")
ARRANGEMENT_FORMULAS = {"channel-spatial": "F' = F * M_c(F), then out = F' * M_s(F')",
                        "spatial-channel": "F' = F * M_s(F), then out = F' * M_c(F')",
                        "parallel": "both gates from the same input: out = F * M_c(F) * M_s(F)"}
CBAM_CONSTRUCTIONS = ((16, 4, 7), (24, 8, 3))


def _cbam_outputs(x, channel_weights, spatial_parts, order) -> dict:
    def channel(t):
        return _channel_gate(t, channel_weights)[:, :, None, None]

    def spatial(t):
        return _spatial_gate(t, spatial_parts, order)

    refined_c, refined_s = x * channel(x), x * spatial(x)
    return {"channel-spatial": refined_c * spatial(refined_c), "spatial-channel": refined_s * channel(refined_s),
            "parallel": x * channel(x) * spatial(x), "channel only": refined_c, "spatial only": refined_s,
            "parallel sum": x * (channel(x) + spatial(x)),
            "residual": x + refined_c * spatial(refined_c)}


def check_cbam(student_class, arrangement: str = "channel-spatial", channels: int | None = None,
               reduction: int | None = None, kernel_size: int | None = None) -> str:
    """Check `student_class(channels, reduction, kernel_size)` against CBAM in `arrangement`:
    "channel-spatial" (the paper's), "spatial-channel" or "parallel" (x * M_c(x) * M_s(x)).
    By default it is built twice, as (16, 4, 7) and (24, 8, 3)."""
    if arrangement not in ARRANGEMENTS:
        raise ValueError(f"unknown arrangement {arrangement!r}; choose one of {', '.join(ARRANGEMENTS)}")
    constructions = ((channels, reduction, kernel_size),) if channels else CBAM_CONSTRUCTIONS
    for number, (c, r, k) in enumerate(constructions):
        module = _build(student_class, (c, r, k), what="CBAM")
        worked: list = []
        for seed, shape in enumerate([(2, c, 8, 8), (2, c, 5, 9)]):
            _randomise(module, 10 * number + seed)
            x = torch.randn(shape, generator=torch.Generator().manual_seed(300 + 10 * number + seed))
            readings = [(w, s) for w in _mlp_readings(module, c, r, "CBAM")
                        for s in _spatial_readings(module, k, "CBAM")]
            leaf, out = _forward(module, x, worked)
            matched = False
            for (weights, parts), order in itertools.product(readings, ("mean-max", "max-mean")):
                expected = _cbam_outputs(leaf, weights, parts, order)[arrangement]
                if _close(out, expected):
                    _check_gradients("CBAM", module, leaf, out, expected, seed)
                    matched = True
                    break
            if matched:
                continue
            with torch.no_grad():
                for (weights, parts), order in itertools.product(readings, ("mean-max", "max-mean")):
                    for name, candidate in _cbam_outputs(x, weights, parts, order).items():
                        if _close(out, candidate):
                            if name.endswith("only"):
                                _fail(f"the block applies {name.replace(' only', '')} attention only: CBAM "
                                      f"refines the features with both gates, {ARRANGEMENT_FORMULAS[arrangement]}")
                            if name == "parallel sum":
                                _fail("the two gates are added (x * (M_c + M_s)): they multiply, "
                                      f"{ARRANGEMENT_FORMULAS[arrangement]}")
                            if name == "residual":
                                _fail(CHANNEL_MESSAGES["one plus gate"])
                            _fail(f"the block implements the {name} arrangement, but the exercise asks for "
                                  f"{arrangement}: {ARRANGEMENT_FORMULAS[arrangement]}")
            _fail("the output matches no arrangement of the two gates; check each gate on its own with "
                  "check_channel_attention and check_spatial_attention first")
    return _passed(f"CBAM ({arrangement})")


# ----------------------------------------------------------------------------- Grad-CAM


def _hooks(model: nn.Module) -> list:
    return [(name, kind, key) for name, m in model.named_modules()
            for kind in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
            for key in getattr(m, kind, {})]


def _grad_cam_variants(model, images, targets, layer, only_correct: bool = False) -> dict:
    """Grad-CAM maps (B, H, W) computed correctly and (unless only_correct) with each known mistake."""
    stored = {}
    handle = layer.register_forward_hook(lambda _m, _i, out: stored.__setitem__("a", out))
    try:
        with torch.enable_grad():
            inputs = images.detach().requires_grad_(True)
            logits = model(inputs)
            activation = stored["a"]
            score = logits.gather(1, targets[:, None]).sum()
            gradient, image_gradient = torch.autograd.grad(score, (activation, inputs), retain_graph=not only_correct)
            if not only_correct:
                probability = torch.softmax(logits, 1).gather(1, targets[:, None]).sum()
                (probability_gradient,) = torch.autograd.grad(probability, activation, retain_graph=True)
                loss = F.cross_entropy(logits, targets, reduction="sum")
                (loss_gradient,) = torch.autograd.grad(loss, activation, retain_graph=True)
                predicted = logits.argmax(1)
                (predicted_gradient,) = torch.autograd.grad(logits.gather(1, predicted[:, None]).sum(), activation)
    finally:
        handle.remove()
    a = activation.detach()
    size = images.shape[-2:]

    def scale(cam, per_image=True):
        dims = tuple(range(1, cam.dim())) if per_image else tuple(range(cam.dim()))
        low, high = cam.amin(dim=dims, keepdim=True), cam.amax(dim=dims, keepdim=True)
        return (cam - low) / (high - low)

    def finish(cam, mode="bilinear", per_image=True, relu_after=False):
        kwargs = {"align_corners": False} if mode in ("bilinear", "bicubic") else {}
        cam = F.interpolate(cam, size=size, mode=mode, **kwargs)[:, 0]
        return scale(F.relu(cam) if relu_after else cam, per_image)

    def weighted(g, activations=a):
        return (g.mean(dim=(2, 3), keepdim=True) * activations).sum(1, keepdim=True)

    cam = weighted(gradient)
    if only_correct:
        return {"correct": finish(F.relu(cam))}
    return {
        "correct": finish(F.relu(cam)),
        "no relu": finish(cam),
        "relu after upsampling": finish(cam, relu_after=True),
        "no mean": finish(F.relu((gradient * a).sum(1, keepdim=True))),
        "batch scaling": finish(F.relu(cam), per_image=False),
        "absolute gradients": finish(F.relu(weighted(gradient.abs()))),
        "relu on gradients": finish(F.relu(weighted(F.relu(gradient)))),
        "unweighted": finish(F.relu(a.sum(1, keepdim=True))),
        "input gradient": scale(image_gradient.abs().amax(dim=1)),
        "nearest": finish(F.relu(cam), mode="nearest"),
        "bicubic": finish(F.relu(cam), mode="bicubic"),
        "probability": finish(F.relu(weighted(probability_gradient))),
        "loss": finish(F.relu(weighted(loss_gradient))),
        "targets ignored": finish(F.relu(weighted(predicted_gradient))),
        "batch-averaged weights": finish(F.relu((gradient.mean(dim=(0, 2, 3), keepdim=True) * a).sum(1, keepdim=True))),
        "scaled before upsampling": F.interpolate(scale(F.relu(cam)), size=size, mode="bilinear",
                                                  align_corners=False)[:, 0],
    }


GRAD_CAM_MESSAGES = {
    "no relu": "the ReLU is missing: Grad-CAM keeps only positive evidence, apply ReLU to the weighted sum "
               "of the activation maps before upsampling and normalising",
    "relu after upsampling": "the ReLU comes after the upsampling: apply it to the weighted sum at the "
                             "layer's resolution, then upsample",
    "no mean": "the gradients are multiplied position by position: Grad-CAM weights each activation "
               "channel by the MEAN of its gradient over the positions (alpha_k), then sums over channels",
    "batch scaling": "the maps are scaled over the whole batch: scale each map to [0, 1] on its own, "
                     "per image (subtract its minimum, divide by its range)",
    "absolute gradients": "the channel weights are means of ABSOLUTE gradients: Grad-CAM averages the signed "
                          "gradients, alpha_k = mean over positions of d score / d A_k",
    "relu on gradients": "a ReLU is applied to the gradients before averaging: average the signed gradients; "
                         "the only ReLU is on the weighted sum of the maps",
    "unweighted": "the activation maps are summed without weights: weight each channel by alpha_k, the mean "
                  "of its gradient over the positions",
    "input gradient": "these are gradients with respect to the input image (a saliency map): Grad-CAM uses the "
                      "gradients and activations of the given layer",
    "nearest": "the maps are upsampled with nearest-neighbour interpolation: use mode='bilinear' "
               "(align_corners=False)",
    "bicubic": "the maps are upsampled bicubically: use mode='bilinear' (align_corners=False)",
    "probability": "the gradients are of the softmax probability: Grad-CAM differentiates the class SCORE "
                   "(the logit), logits[i, target_i]",
    "loss": "the gradients are of the loss: Grad-CAM differentiates the class score (the logit) of the "
            "target, not the cross-entropy",
    "targets ignored": "the maps explain the predicted class, not the given targets: take the score of "
                       "targets[i] for image i, logits[torch.arange(B), targets]",
    "batch-averaged weights": "the channel weights are averaged over the batch: each image gets its own "
                              "alpha_k, gradient.mean(dim=(2, 3)) (not over dim 0)",
    "scaled before upsampling": "the maps are scaled to [0, 1] before upsampling: upsample first, then scale "
                                "each map by its own minimum and range",
}


def _grad_cam_model(attention, seed):
    from .models import build_model

    torch.manual_seed(seed)
    model = build_model("resnet20", attention).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_var.uniform_(0.5, 1.5)
                m.running_mean.normal_(0, 0.1)
                m.bias.normal_(0, 0.1)
    return model


def _grad_cam_targets(model, images, layer) -> torch.Tensor:
    """Per image, a class other than the predicted one whose map has the most positive evidence
    (so that ignoring the targets shows, and no correct map is all zero)."""
    with torch.no_grad():
        predicted = model(images).argmax(1)
    candidates = [_grad_cam_variants(model, images, torch.full((len(images),), c), layer, only_correct=True)["correct"]
                  for c in range(10)]
    spread = torch.stack([c.nan_to_num(0).flatten(1).std(1) for c in candidates])  # (10, B)
    spread[predicted, torch.arange(len(images))] = -1
    return spread.argmax(0)


def check_grad_cam(student_function) -> str:
    """Check `student_function(model, images, targets, layer) -> (B, H, W) maps in [0, 1]` against
    Grad-CAM, on a CBAM and a plain ResNet-20 with random weights, at two layers (the middle
    stage and a block of the first), and that it leaves no hook behind and the model's mode as
    it was."""
    cases = [("cbam", 0, lambda m: m.stages[1]), (None, 1, lambda m: m.stages[0][2])]
    for attention, seed, pick_layer in cases:
        model = _grad_cam_model(attention, seed)
        layer = pick_layer(model)
        images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(7 + seed))
        targets = _grad_cam_targets(model, images, layer)
        variants = _grad_cam_variants(model, images, targets, layer)
        hooks_before, modes_before = _hooks(model), [m.training for m in model.modules()]
        try:
            with _time_limit("your Grad-CAM function"):
                maps = student_function(model, images.clone(), targets.clone(), layer)
        except ExerciseError:
            raise
        except Exception as error:
            _fail(f"the function raised {_explain_exception(error)}{_failing_line(error)}")
        if not isinstance(maps, torch.Tensor):
            _fail(f"return a tensor of maps (B, H, W), got {type(maps).__name__}")
        maps = maps.detach().float()
        if maps.dim() == 4 and maps.shape[1] == 1:
            maps = maps[:, 0]
        layer_size = variants["correct"].shape  # compared below with the maps' size
        if maps.dim() == 3 and maps.shape[-2:] != layer_size[-2:] and maps.shape[0] == layer_size[0]:
            _fail(f"the maps are {maps.shape[-2]}x{maps.shape[-1]}, not the input's {layer_size[-2]}x{layer_size[-1]}: "
                  "upsample them with F.interpolate(..., size=images.shape[-2:], mode='bilinear', "
                  "align_corners=False)")
        if maps.shape != layer_size:
            _fail(f"expected maps of shape {tuple(layer_size)}, got {tuple(maps.shape)}")
        if not _close(maps, variants["correct"]):
            for name, message in GRAD_CAM_MESSAGES.items():
                if _close(maps, variants[name]):
                    _fail(message)
            train_mode = copy.deepcopy(model).train()
            in_train_mode = _grad_cam_variants(train_mode, images, targets, _same_module(train_mode, model, layer),
                                               only_correct=True)["correct"]
            if _close(maps, in_train_mode):
                _fail("the maps were computed with the model in training mode (BatchNorm then uses the batch's "
                      "statistics): call model.eval() before explaining it")
            if maps.amin() < -1e-6 or maps.amax() > 1 + 1e-4:
                _fail("the maps should lie in [0, 1]: scale each by its own minimum and range")
            _fail("the maps differ from Grad-CAM: weight each activation channel by the mean of its gradient "
                  "over the positions, sum over channels, ReLU, upsample bilinearly to the input size, and "
                  "scale each map to [0, 1]")
        if _hooks(model) != hooks_before:
            _fail("your function leaves hooks on the model: keep the handle that register_forward_hook (or "
                  "register_full_backward_hook) returns and call handle.remove() in a finally block")
        if [m.training for m in model.modules()] != modes_before:
            _fail("your function leaves the model in another mode than it found it (train/eval): restore "
                  "model.training before returning")
    return _passed("Grad-CAM", "on two models at two layers, and leaves the model as it found it")


def _same_module(copy_of_model: nn.Module, model: nn.Module, layer: nn.Module) -> nn.Module:
    name = next(n for n, m in model.named_modules() if m is layer)
    return copy_of_model.get_submodule(name)
