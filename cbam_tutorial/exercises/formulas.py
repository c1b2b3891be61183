"""The paper's formulas for the gates, and each mistake students make, computed with the
student's own weights, so that a wrong output can be matched to the mistake that made it.

Shapes: x (B, C, H, W); a channel gate (B, C); a spatial gate (B, 1, H, W). `weights` is a
reading of an MLP (readings.mlp_readings), `parts` one of a convolution
(readings.spatial_readings).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def _mlp(v, weights, hidden_activation=F.relu, relu_last=False):
    out = F.linear(hidden_activation(F.linear(v, weights["w1"], weights["b1"])), weights["w2"], weights["b2"])
    return F.relu(out) if relu_last else out


def channel_gate(x, weights) -> torch.Tensor:
    """The paper's channel gate (B, C): sigmoid(MLP(avg) + MLP(max))."""
    return torch.sigmoid(_mlp(x.mean(dim=(2, 3)), weights) + _mlp(x.amax(dim=(2, 3)), weights))


def channel_gates(x, weights) -> dict:
    """Channel gates (B, C) for the paper's formula ("correct") and for each known mistake."""
    avg, mx = x.mean(dim=(2, 3)), x.amax(dim=(2, 3))
    a, m = _mlp(avg, weights), _mlp(mx, weights)
    gates = {
        "correct": channel_gate(x, weights),
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
            wrong = _mlp(x.mean(dim=axes), weights) + _mlp(x.amax(dim=axes), weights)
            gates[f"wrong axis {axes}"] = torch.sigmoid(wrong)
    return gates


def gated_outputs(x, gates: dict, shape) -> dict:
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


def spatial_gate(x, parts, order: str) -> torch.Tensor:
    """The paper's spatial gate (B, 1, H, W): sigmoid(conv([mean; max]))."""
    return _spatial_gate_from(x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True), parts, order)


def spatial_gates(x, parts, order: str) -> dict:
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


ARRANGEMENT_FORMULAS = {"channel-spatial": "F' = F * M_c(F), then out = F' * M_s(F')",
                        "spatial-channel": "F' = F * M_s(F), then out = F' * M_c(F')",
                        "parallel": "both gates from the same input: out = F * M_c(F) * M_s(F)"}


def cbam_outputs(x, channel_weights, spatial_parts, order) -> dict:
    """CBAM's output (B, C, H, W) in each arrangement, and in each way of combining the two
    gates wrongly (one gate only, the gates added, a residual inside the block)."""
    def channel(t):
        return channel_gate(t, channel_weights)[:, :, None, None]

    def spatial(t):
        return spatial_gate(t, spatial_parts, order)

    refined_c, refined_s = x * channel(x), x * spatial(x)
    return {"channel-spatial": refined_c * spatial(refined_c), "spatial-channel": refined_s * channel(refined_s),
            "parallel": x * channel(x) * spatial(x), "channel only": refined_c, "spatial only": refined_s,
            "parallel sum": x * (channel(x) + spatial(x)),
            "residual": x + refined_c * spatial(refined_c)}
