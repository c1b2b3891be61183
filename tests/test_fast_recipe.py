"""FastNet and the fast recipe: shapes, where attention sits, the whitening layer, the
augmentations, test-time augmentation and lookahead, checked against hand computations;
every recipe option exercised on a tiny run, resumed exactly; bad values refused."""
import numpy as np
import pytest
import torch

import cbam_tutorial.train as engine
from cbam_test_models import synthetic_cifar10
from cbam_tutorial.loader import TensorLoader
from cbam_tutorial.loop import Lookahead, evaluate, shift, tta_logits
from cbam_tutorial.models import FastNet, PatchWhitening, attention_modules, build_model
from cbam_tutorial.profiles import PROFILES
from cbam_tutorial.train import parameter_groups, train


def test_fastnet_shapes_and_which_stages_carry_attention():
    model = build_model("fastnet", "cbam").eval()
    sizes = {}
    for index, stage in enumerate(model.stages):
        stage.register_forward_hook(lambda m, i, o, index=index: sizes.__setitem__(index, tuple(o.shape[1:])))
    with torch.no_grad():
        logits = model(torch.randn(3, 3, 32, 32))
    assert logits.shape == (3, 10)
    assert sizes == {0: (64, 16, 16), 1: (256, 8, 8), 2: (256, 4, 4)}
    # attention only where the map is at least 8 x 8
    assert sorted(attention_modules(model)) == ["stages.0", "stages.1"] and model.stages[2].attention is None
    assert sorted(attention_modules(build_model("fastnet", "cbam", attention_min_size=4))) == [
        "stages.0", "stages.1", "stages.2"]
    with pytest.raises(ValueError, match="widths must be three positive integers"):
        FastNet(widths=(64, 128))
    with pytest.raises(ValueError, match="unknown activation 'tanh'"):
        FastNet(activation="tanh")


def test_fastnet_attention_sits_after_the_last_batchnorm_before_the_addition():
    model = build_model("fastnet", "cbam", whitening=False).eval()
    stage = model.stages[1]
    seen = {}
    stage.residual_bn.register_forward_hook(lambda m, i, o: seen.__setitem__("bn", o.clone()))
    stage.attention.register_forward_hook(lambda m, i, o: seen.update(att_in=i[0].clone(), att_out=o.clone()))
    stage.bn.register_forward_hook(lambda m, i, o: seen.__setitem__("trunk", o.clone()))
    stage.register_forward_hook(lambda m, i, o: seen.__setitem__("out", o.clone()))
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32))
    torch.testing.assert_close(seen["att_in"], seen["bn"])
    identity = torch.nn.functional.gelu(seen["trunk"])
    torch.testing.assert_close(seen["out"], torch.nn.functional.gelu(identity + seen["att_out"]))


def test_plain_stages_leave_the_identity_out():
    """residual=False (airbench's plain groups, for comparison): the stage's output is the
    activation of the attended branch alone."""
    model = build_model("fastnet", "cbam", whitening=False, residual=False).eval()
    stage, seen = model.stages[0], {}
    stage.attention.register_forward_hook(lambda m, i, o: seen.__setitem__("att_out", o.clone()))
    stage.register_forward_hook(lambda m, i, o: seen.__setitem__("out", o.clone()))
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32))
    torch.testing.assert_close(seen["out"], torch.nn.functional.gelu(seen["att_out"]))


def test_every_batchnorm_follows_the_networks_momentum():
    model = build_model("fastnet", "cbam", bn_momentum=0.3)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert any("attention" in name for name, m in model.named_modules() if m in norms)
    assert all(m.momentum == 0.3 for m in norms)


def test_patch_whitening_decorrelates_the_patches_it_was_fitted_on():
    generator = torch.Generator().manual_seed(0)
    mixing = torch.randn(3, 3, generator=generator)
    images = torch.einsum("dc,bchw->bdhw", mixing, torch.randn(200, 3, 16, 16, generator=generator))
    images = images + 0.5 * images.roll(1, dims=3)  # neighbouring pixels correlated
    layer = PatchWhitening(3, patch=2, eps=1e-8)
    layer.fit(images)
    with torch.no_grad():
        out = torch.nn.functional.conv2d(images, layer.weight)  # without the bias
    half = out[:, :12].permute(0, 2, 3, 1).reshape(-1, 12)
    # by hand: the filters' responses have the identity as their second-moment matrix
    torch.testing.assert_close(half.T @ half / len(half), torch.eye(12), atol=2e-3, rtol=0)
    torch.testing.assert_close(out[:, 12:], -out[:, :12])
    assert layer.weight.requires_grad is False and "weight" in dict(layer.named_buffers())
    assert out.shape[-2:] == (15, 15)


def test_reflect_translation_is_a_window_of_the_mirrored_image():
    images = np.random.default_rng(0).integers(1, 255, (20, 8, 8, 3), dtype=np.uint8)
    loader = TensorLoader(images, np.zeros(20), batch_size=20, train=True, seed=0, padding=2,
                          pad_mode="reflect", flip="random", channels_last=False)
    (batch, _), = list(loader.epoch(0))
    order = torch.randperm(20, generator=torch.Generator().manual_seed(0))
    raw = (batch - loader.shift.view(1, 3, 1, 1)) / loader.scale.view(1, 3, 1, 1)
    raw = raw.round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    for k, index in enumerate(order.tolist()):
        padded = np.pad(images[index], ((2, 2), (2, 2), (0, 0)), mode="reflect")
        windows = [padded[r:r + 8, c:c + 8] for r in range(5) for c in range(5)]
        windows += [w[:, ::-1] for w in windows]
        assert any(np.array_equal(raw[k], w) for w in windows), k


def test_alternating_flips_mirror_each_image_every_other_epoch():
    left_bright = np.zeros((64, 8, 8, 3), dtype=np.uint8)
    left_bright[:, :, :4] = 200
    loader = TensorLoader(left_bright, np.arange(64) % 10, batch_size=64, train=True, seed=3,
                          padding=0, flip="alternating")

    def mirrored_by_label_order(epoch):
        generator = torch.Generator().manual_seed(3 * 1_000_003 + epoch)
        order = torch.randperm(64, generator=generator)
        (images, _), = list(loader.epoch(epoch))
        mirrored = images[:, 0, :, 0] < images[:, 0, :, -1]  # the bright half went right
        result = torch.empty(64, dtype=torch.bool)
        result[order] = mirrored.all(dim=1)
        return result

    epochs = [mirrored_by_label_order(e) for e in range(4)]
    assert 16 < epochs[0].sum() < 48  # about half in the first epoch
    assert torch.equal(epochs[1], ~epochs[0]) and torch.equal(epochs[2], epochs[0])
    assert torch.equal(epochs[3], ~epochs[0])


def test_shift_and_test_time_augmentation_by_hand():
    images = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).view(2, 3, 5, 5)
    expected = np.pad(images.numpy(), ((0, 0), (0, 0), (1, 1), (1, 1)), mode="reflect")[..., :5, :5]
    torch.testing.assert_close(shift(images, 1), torch.from_numpy(expected))
    expected = np.pad(images.numpy(), ((0, 0), (0, 0), (1, 1), (1, 1)), mode="reflect")[..., 2:, 2:]
    torch.testing.assert_close(shift(images, -1), torch.from_numpy(expected))

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(75, 4))
    views = {"plain": model(images), "flip": model(images.flip(3)),
             "moved": model(shift(images, 1)), "moved flip": model(shift(images.flip(3), -1))}
    torch.testing.assert_close(tta_logits(model, images, "none"), views["plain"])
    torch.testing.assert_close(tta_logits(model, images, "flip"), (views["plain"] + views["flip"]) / 2)
    both = (views["plain"] + views["flip"]) / 4 + (views["moved"] + views["moved flip"]) / 4
    torch.testing.assert_close(tta_logits(model, images, "flip+translate"), both)
    with pytest.raises(ValueError, match="tta must be one of"):
        tta_logits(model, images, "crops")
    with pytest.raises(ValueError, match="nothing to evaluate"):
        evaluate(model, [])


def test_lookahead_by_hand():
    model = torch.nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.fill_(1.0)
    lookahead = Lookahead(model)
    with torch.no_grad():
        model.weight.fill_(3.0)
    lookahead.update(model, decay=0.75)  # slow: 0.75 * 1 + 0.25 * 3 = 1.5; the model follows
    torch.testing.assert_close(model.weight, torch.full((1, 2), 1.5))
    with torch.no_grad():
        model.weight.fill_(5.5)
    lookahead.update(model, decay=1.0)  # 1.0 hands the model the slow weights
    torch.testing.assert_close(model.weight, torch.full((1, 2), 1.5))


def test_bias_learning_rate_scale_and_weight_decay_groups():
    """airbench's rule: only the biases of BatchNorms with frozen scales take the larger
    rate, with their decay divided by it (the same decay per step as the weights)."""
    model = build_model("fastnet", "cbam")
    weights, scales, shifts, biases = parameter_groups(model, 1e-3, bias_lr_scale=64.0)
    names = {id(p): n for n, p in model.named_parameters()}
    shift_names = {names[id(p)] for p in shifts["params"]}
    own_norms = {f"{n}.bias" for n, m in model.named_modules()
                 if isinstance(m, torch.nn.BatchNorm2d) and "attention" not in n}
    assert shift_names == own_norms and shifts["lr_scale"] == 64.0
    assert shifts["weight_decay"] * shifts["lr_scale"] == pytest.approx(weights["weight_decay"])
    assert all(p.ndim > 1 for p in weights["params"]) and weights["weight_decay"] == 1e-3
    assert all(names[id(p)].endswith("weight") and p.ndim == 1 for p in scales["params"])
    other = {names[id(p)] for p in biases["params"]}
    assert "stem.bias" in other and any("attention" in n for n in other)  # at the plain rate
    assert biases["lr_scale"] == 1.0 and scales["weight_decay"] == biases["weight_decay"] == 0
    total = sum(len(g["params"]) for g in (weights, scales, shifts, biases))
    assert total == sum(1 for p in model.parameters() if p.requires_grad)


TINY_FAST = dict(profile="cpu", train_subset=512, batch_size=128, epochs=2, test_subset=200, progress=False,
                 lookahead_every=2)


def test_every_recipe_option_on_a_tiny_run_and_an_exact_resume(tmp_path, monkeypatch):
    data = synthetic_cifar10(test_per_class=20)
    profile = PROFILES["cpu"]
    assert (profile.model, profile.pad_mode, profile.flip, profile.tta) == (
        "fastnet", "reflect", "alternating", "flip+translate")
    assert profile.bias_lr_scale > 1 and profile.lookahead_every and profile.label_smoothing > 0
    straight = train(None, "cbam", data=data, out_dir=tmp_path / "straight", **TINY_FAST)
    assert straight.config["model"] == "fastnet"
    assert straight.model.stem.weight.abs().sum() > 0  # the whitening layer was fitted

    # interrupted during the second epoch: the checkpoint holds the first
    stopped = {"n": 0}
    real_one_epoch = engine.train_one_epoch

    def interrupt_second_epoch(*args, **kwargs):
        stopped["n"] += 1
        if stopped["n"] == 2:
            raise KeyboardInterrupt
        return real_one_epoch(*args, **kwargs)

    monkeypatch.setattr(engine, "train_one_epoch", interrupt_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        train(None, "cbam", data=data, out_dir=tmp_path / "resumed", **TINY_FAST)
    monkeypatch.setattr(engine, "train_one_epoch", real_one_epoch)
    resumed = train(None, "cbam", data=data, out_dir=tmp_path / "resumed", **TINY_FAST)
    for a, b in zip(straight.history, resumed.history):
        for key in ("train_loss", "train_accuracy", "lr"):
            assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-7), key
    assert straight.test == pytest.approx(resumed.test)
    for (name, p), q in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(p, q, msg=name)


@pytest.mark.parametrize("field, value, message", [
    ("tta", "crops", "tta must be one of 'none', 'flip', 'flip\\+translate'"),
    ("pad_mode", "edge", "pad_mode must be one of 'zeros', 'reflect'"),
    ("flip", "never", "flip must be one of 'random', 'alternating'"),
    ("lookahead_every", 0, "lookahead_every must be an integer of at least 1"),
    ("lookahead_decay", 1.0, "lookahead_decay must be a number in \\[0, 1\\)"),
    ("bias_lr_scale", 0, "bias_lr_scale must be a number above 0"),
    ("padding", -1, "padding must be an integer from 0 to 8"),
    ("ema_decay", 0.99, "choose ema_decay or lookahead_every, not both"),
])
def test_bad_recipe_values_are_refused_before_training(field, value, message):
    with pytest.raises(ValueError, match=message):
        train(None, "cbam", profile="cpu", data=None, **{field: value})


def test_schedule_start_and_end_fractions_by_hand():
    from cbam_tutorial.loop import one_cycle_lr

    rates = [one_cycle_lr(s, 100, 1.0, 0.25, start_fraction=0.2, end_fraction=0.1) for s in range(100)]
    assert rates[0] == pytest.approx(0.2 + 0.8 / 25) and rates[24] == pytest.approx(1.0)
    assert rates[62] == pytest.approx(0.1 + 0.9 * (100 - 62) / 75)
    assert min(rates) > 0.1 - 1e-12 and rates[-1] == pytest.approx(0.1 + 0.9 / 75)


def test_batchnorm_scales_frozen_unless_asked():
    model = build_model("fastnet", "cbam")
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            assert module.weight.requires_grad == ("attention" in name), name
            assert module.bias.requires_grad
    trainable = build_model("fastnet", None, bn_scales=True)
    assert all(m.weight.requires_grad for m in trainable.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_training_result_round_trips_through_json(tmp_path):
    import json

    from cbam_tutorial.result import TrainingResult

    data = synthetic_cifar10(test_per_class=5)
    result = train(None, "se", data=data, out_dir=tmp_path, **{**TINY_FAST, "epochs": 1})
    assert isinstance(result, TrainingResult) and not result.model.training
    plain = json.loads((tmp_path / "metrics.json").read_text())
    assert plain == json.loads(json.dumps(result.to_json())) and "model" not in plain
    again = TrainingResult.from_json(plain)
    assert again == result and again.model is None  # the model is not part of equality
    with pytest.raises(ValueError, match=r"not a training result: the fields \['test'\] are missing"):
        TrainingResult.from_json({k: v for k, v in plain.items() if k != "test"})


def test_the_whitening_bias_trains_for_its_epochs_then_stays(monkeypatch):
    data = synthetic_cifar10(test_per_class=5)
    seen = []
    original = engine.train_one_epoch

    def spy(model, *args, **kwargs):
        seen.append((model.stem.bias.requires_grad, model.stem.bias.detach().clone()))
        return original(model, *args, **kwargs)

    monkeypatch.setattr(engine, "train_one_epoch", spy)
    result = train(None, None, data=data, **{**TINY_FAST, "epochs": 3, "train_subset": 256},
                   whitening_bias_epochs=1)
    assert [trains for trains, _ in seen] == [True, False, False]
    assert not torch.equal(seen[0][1], seen[1][1])  # it moved during its epoch
    torch.testing.assert_close(seen[2][1], seen[1][1])  # and not after
    torch.testing.assert_close(result.model.stem.bias.detach(), seen[1][1])


def test_a_run_records_the_commit_of_the_code_it_started_with(monkeypatch):
    """A commit made while a run trains must not be credited with that run."""
    from cbam_tutorial import provenance

    state = {"committed": False}
    monkeypatch.setattr(provenance, "git_commit", lambda: {"commit": "after" if state["committed"] else "before",
                                                          "dirty": False})
    provenance.loaded_code.cache_clear()

    def commit_during_training(record):
        state["committed"] = True

    try:
        result = train(None, None, data=synthetic_cifar10(test_per_class=5), on_epoch=commit_during_training,
                       **{**TINY_FAST, "epochs": 1, "train_subset": 256})
        assert result.provenance["commit"] == "before"
    finally:
        provenance.loaded_code.cache_clear()
