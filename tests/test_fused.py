"""The fused CPU kernels compute the same function as CBAM's plain code."""
import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import cbam_tutorial
from cbam_tutorial import CBAM
from cbam_tutorial.fused import build_folder, compile_kernels, fused_applies, load_extension

pytestmark = pytest.mark.skipif(load_extension() is None, reason="fused kernels did not compile")


def twins(channels: int, **options):
    fused = CBAM(channels, **options)
    with torch.no_grad():
        for p in fused.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    plain = copy.deepcopy(fused)
    plain.fused = False
    return fused, plain


ARRANGEMENTS = ["channel-spatial", "spatial-channel", "parallel"]


@pytest.mark.parametrize("arrangement", ARRANGEMENTS)
@pytest.mark.parametrize("channels, size", [(16, 32), (32, 5), (24, 7), (64, 8), (256, 4)])
@pytest.mark.parametrize("options", [{}, {"map_order": "mean-max", "mlp_bias": False, "batch_norm": False},
                                     {"kernel_size": 3}], ids=["reference", "variant", "k3"])
def test_fused_equals_plain_in_training(channels, size, options, arrangement):
    fused, plain = twins(channels, reduction=4, arrangement=arrangement, **options)
    x = torch.randn(3, channels, size, size + 1).to(memory_format=torch.channels_last)
    assert fused_applies(fused, x)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    (out1, w1), (out2, w2) = fused(x1, return_attention=True), plain(x2, return_attention=True)
    torch.testing.assert_close(out1, out2, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(w1["channel"], w2["channel"].detach())
    torch.testing.assert_close(w1["spatial"], w2["spatial"].detach())
    grad = torch.randn_like(out1)
    out1.backward(grad)
    out2.backward(grad)
    # float32 noise grows with the gradient's scale (sums over up to 256 channels, in
    # another order on each path): both paths differ from a float64 run by about 1e-5 of it
    scale = x2.grad.abs().max().item()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-4, atol=1e-5 * max(scale, 1.0))
    for (name, p1), p2 in zip(fused.named_parameters(), plain.parameters()):
        torch.testing.assert_close(p1.grad, p2.grad, rtol=1e-4, atol=1e-4, msg=name)
    for b1, b2 in zip(fused.buffers(), plain.buffers()):
        torch.testing.assert_close(b1, b2)  # BatchNorm running statistics updated once


@pytest.mark.parametrize("arrangement", ARRANGEMENTS)
def test_fused_equals_plain_in_eval_and_without_grad(arrangement):
    fused, plain = twins(32, reduction=8, arrangement=arrangement)
    fused.eval(), plain.eval()
    x = torch.randn(2, 32, 9, 9).to(memory_format=torch.channels_last)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), plain(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("arrangement", ARRANGEMENTS)
def test_fused_bfloat16_is_close_to_float32(arrangement):
    fused, plain = twins(32, reduction=8, arrangement=arrangement)
    x = torch.randn(4, 32, 16, 16).to(memory_format=torch.channels_last)
    xb = x.to(torch.bfloat16).requires_grad_()
    out = fused(xb)
    assert out.dtype == torch.bfloat16 and out.is_contiguous(memory_format=torch.channels_last)
    x32 = xb.detach().float().requires_grad_()
    reference = plain(x32)
    torch.testing.assert_close(out.float(), reference, rtol=2e-2, atol=2e-2)
    grad = torch.randn_like(reference)
    out.backward(grad.to(torch.bfloat16))
    reference.backward(grad)
    assert xb.grad.dtype == torch.bfloat16
    # compare directions: bf16 rounding moves single elements, not the gradient
    cosine = torch.nn.functional.cosine_similarity(xb.grad.float().flatten(), x32.grad.flatten(), dim=0)
    assert cosine > 0.999


def test_fused_under_autocast_matches_plain_under_autocast():
    fused, plain = twins(16, reduction=4)
    x = torch.randn(4, 16, 8, 8).to(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a, b = fused(x.to(torch.bfloat16)), plain(x.to(torch.bfloat16))
    torch.testing.assert_close(a.float(), b.float(), rtol=2e-2, atol=2e-2)


def test_ties_send_the_gradient_to_one_maximum():
    # a constant map: every position ties for the global max of each channel
    fused, plain = twins(16, reduction=4)
    x = torch.ones(2, 16, 4, 4).to(memory_format=torch.channels_last).requires_grad_()
    fused(x).sum().backward()
    # the total gradient equals amax's (which splits it over the ties)
    x2 = x.detach().clone().requires_grad_()
    plain(x2).sum().backward()
    torch.testing.assert_close(x.grad.sum(), x2.grad.sum(), rtol=1e-4, atol=1e-4)


def test_plain_path_where_the_kernels_do_not_apply():
    module = CBAM(16, reduction=4)
    assert not fused_applies(module, torch.randn(2, 16, 8, 8))  # not channels_last
    assert not fused_applies(module, torch.randn(2, 16, 8, 8, dtype=torch.float64)
                             .to(memory_format=torch.channels_last))
    assert not fused_applies(CBAM(16, reduction=4, spatial_pooling="conv1x1"),
                             torch.randn(2, 16, 8, 8).to(memory_format=torch.channels_last))


@pytest.mark.parametrize("arrangement", ARRANGEMENTS)
def test_a_module_cast_to_bfloat16_runs_the_plain_path(arrangement):
    # model.bfloat16() casts the gates' weights; the kernels' gates compute in float32
    fused, plain = twins(16, reduction=4, arrangement=arrangement)
    fused, plain = fused.bfloat16(), plain.bfloat16()
    x = torch.randn(2, 16, 8, 8).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    assert not fused_applies(fused, x)
    torch.testing.assert_close(fused(x), plain(x))


def kernel_inputs(channels: int, size: int, dtype, kernel_size: int = 7, seed: int = 0):
    """Arguments for every kernel of the extension, from one random activation."""
    generator = torch.Generator().manual_seed(seed)
    batch, pixels = 5, size * size

    def rand(*shape):
        return torch.randn(*shape, generator=generator)

    x = rand(batch, channels, size, size).to(dtype).contiguous(memory_format=torch.channels_last)
    g = rand(batch, channels, size, size).to(dtype).contiguous(memory_format=torch.channels_last)
    ca, sa = torch.rand(batch, channels, generator=generator), torch.rand(batch, pixels, generator=generator)
    argmax_c = torch.randint(0, pixels, (batch, channels), generator=generator, dtype=torch.int32)
    argmax_s = torch.randint(0, channels, (batch, pixels), generator=generator, dtype=torch.int32)
    maps, weight = rand(batch, 2, size, size), rand(1, 2, kernel_size, kernel_size)
    return {
        "channel_pool": (x, sa),
        "spatial_pool": (x, ca),
        "apply_gates": (x, ca, sa),
        "backward_gates": (g, x, ca, sa),
        "backward_channel_through_maps": (x, rand(batch, pixels), rand(batch, pixels), argmax_s),
        "backward_spatial_through_pools": (x, rand(batch, channels), rand(batch, channels), argmax_c),
        "backward_input": (g, ca, sa, torch.rand(batch, channels, generator=generator), rand(batch, pixels),
                           rand(batch, pixels), argmax_s, torch.rand(batch, pixels, generator=generator),
                           rand(batch, channels), rand(batch, channels), argmax_c),
        "gate_conv_forward": (maps, weight),
        "gate_conv_backward": (rand(batch, 1, size, size), maps, weight),
        "gate_norm_forward": (rand(batch, 1, size, size), rand(1), rand(1), 1e-5),
        "gate_norm_backward": (rand(batch, 1, size, size), rand(batch, 1, size, size), rand(1),
                               rand(1), torch.rand(1, generator=generator), 1e-5),
    }


@pytest.mark.parametrize("kernel_size", [1, 3, 5, 7, 9])  # 3, 5, 7 have register-blocked loops
@pytest.mark.parametrize("height, width", [(32, 32), (8, 8), (12, 20), (7, 5)])
def test_gate_convolution_equals_torch_conv2d(height, width, kernel_size):
    """The gate's k x k convolution and both its gradients against torch's conv2d and autograd."""
    generator = torch.Generator().manual_seed(height * width + kernel_size)
    maps = torch.randn(3, 2, height, width, generator=generator, requires_grad=True)
    weight = torch.randn(1, 2, kernel_size, kernel_size, generator=generator, requires_grad=True)
    grad_out = torch.randn(3, 1, height, width, generator=generator)
    expected = torch.nn.functional.conv2d(maps, weight, padding=kernel_size // 2)
    expected_grad_maps, expected_grad_weight = torch.autograd.grad(expected, (maps, weight), grad_out)
    kernels = load_extension()
    torch.testing.assert_close(kernels.gate_conv_forward(maps.detach(), weight.detach()), expected)
    grad_maps, grad_weight = kernels.gate_conv_backward(grad_out, maps.detach(), weight.detach())
    torch.testing.assert_close(grad_maps, expected_grad_maps)
    torch.testing.assert_close(grad_weight, expected_grad_weight, rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def portable_kernels():
    if torch.backends.cpu.get_cpu_capability() not in ("AVX512", "AVX2"):
        pytest.skip("this CPU has neither AVX-512 nor AVX2: the extension already runs the portable loops")
    # without AVX2 (and so without AVX-512) neither set of intrinsic loops is compiled
    return compile_kernels("cbam_tutorial_gate_portable", extra_cflags=("-mno-avx512f", "-mno-avx2"))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("channels, size, kernel_size", [(16, 32, 7), (32, 16, 3), (64, 8, 7), (24, 7, 5), (24, 20, 3)])
def test_intrinsic_loops_equal_the_portable_loops(portable_kernels, channels, size, kernel_size, dtype):
    vector_kernels = load_extension()
    tolerance = 1e-2 if dtype == torch.bfloat16 else 1e-5  # bf16 outputs round to 8 bits
    for name, args in kernel_inputs(channels, size, dtype, kernel_size).items():
        expected, got = getattr(portable_kernels, name)(*args), getattr(vector_kernels, name)(*args)
        expected, got = ((expected,), (got,)) if torch.is_tensor(expected) else (expected, got)
        for e, o in zip(expected, got):
            if e.dtype == torch.int32:  # positions of maxima: ties are rare in random data
                assert (e != o).float().mean() < 1e-3, name
            else:
                torch.testing.assert_close(o.float(), e.float(), rtol=tolerance, atol=tolerance, msg=name)


@pytest.mark.parametrize("channels", [16, 24, 64])
@pytest.mark.parametrize("pixels", [5, 6])  # the vector loops visit even and odd pixels apart
def test_channel_argmax_is_the_first_maximum(channels, pixels):
    kernels = load_extension()
    x = torch.zeros(1, channels, 1, pixels)
    x[0, 0, 0, [2, 3]] = 2.0  # channel 0: a tie between pixels 2 and 3 (even, odd)
    x[0, 1, 0, [1, 4]] = 2.0  # channel 1: a tie between pixels 1 and 4 (odd, even)
    x[0, 2, 0, pixels - 1] = 5.0  # channel 2: the last pixel
    x[0, 3] = -1.0
    x[0, 3, 0, 1] = float("nan")  # channel 3: a NaN is never the maximum
    x = x.contiguous(memory_format=torch.channels_last)
    avg, mx, argmax = kernels.channel_pool(x, torch.ones(1, pixels))
    assert argmax[0, :4].tolist() == [2, 1, pixels - 1, 0]
    assert argmax[0, 4:].tolist() == [0] * (channels - 4)  # all zeros: a tie everywhere
    assert mx[0, :4].tolist() == [2.0, 2.0, 5.0, -1.0]
    torch.testing.assert_close(avg[0, :3], x[0, :3].flatten(1).mean(1))


@pytest.mark.parametrize("channels", [16, 24, 64])
def test_spatial_argmax_is_the_first_maximum_and_stays_in_range(channels):
    kernels = load_extension()
    x = torch.zeros(1, channels, 1, 3)
    x[0, [3, 9], 0, 0] = 2.0  # a tie between channels 3 and 9
    x[0, :, 0, 2] = float("nan")  # no channel equals a NaN maximum
    x = x.contiguous(memory_format=torch.channels_last)
    _, _, argmax = kernels.spatial_pool(x, torch.ones(1, channels))
    assert argmax.tolist() == [[3, 0, 0]]  # the all-zero pixel ties everywhere: channel 0


@pytest.mark.parametrize("momentum", [0.01, None], ids=["momentum", "cumulative"])
def test_spatial_norm_on_the_kernels_is_batch_norm(momentum):
    """The spatial gate's one-channel BatchNorm against nn.BatchNorm2d in float64."""
    from cbam_tutorial.fused import _normalized

    ours, reference = torch.nn.BatchNorm2d(1, momentum=momentum), torch.nn.BatchNorm2d(1, momentum=momentum)
    with torch.no_grad():
        ours.weight.fill_(1.7), ours.bias.fill_(-0.3)
    reference.load_state_dict(ours.state_dict())
    reference.double()
    for step in range(3):  # the running statistics follow step after step
        z = (torch.randn(6, 1, 11, 13) * 3 + step).requires_grad_()
        z64 = z.detach().double().requires_grad_()
        y, y64 = _normalized(ours, z), reference(z64)
        torch.testing.assert_close(y.double(), y64, rtol=1e-5, atol=1e-5)
        grad = torch.randn_like(y)
        y.backward(grad)
        y64.backward(grad.double())
        torch.testing.assert_close(z.grad.double(), z64.grad, rtol=1e-4, atol=1e-5)
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p.grad.double(), getattr(reference, name).grad, rtol=1e-4, atol=1e-4)
    for name, b in ours.named_buffers():
        torch.testing.assert_close(b.double(), getattr(reference, name).double(), rtol=1e-5, atol=1e-6, msg=name)
    ours.eval()  # evaluation normalizes with the running statistics, as BatchNorm does
    reference.eval()
    z = torch.randn(2, 1, 5, 5)
    torch.testing.assert_close(_normalized(ours, z).double(), reference(z.double()), rtol=1e-5, atol=1e-6)


def test_spatial_norm_kernels_reject_a_wrong_plane():
    kernels = load_extension()
    with pytest.raises(RuntimeError, match="contiguous float32 \\(B, 1, H, W\\)"):
        kernels.gate_norm_forward(torch.randn(2, 2, 4, 4), torch.ones(1), torch.zeros(1), 1e-5)


def test_a_second_checkout_of_the_same_code_reuses_the_compiled_kernels(tmp_path):
    """Two copies of the package at different paths (a second clone, a Colab runtime's
    fresh checkout) load one compiled module; torch alone would rebuild it for each path."""
    compiled = Path(load_extension().__file__)  # this process's build: the one to reuse
    built_at = compiled.stat().st_mtime_ns
    probe = ("import cbam_tutorial, cbam_tutorial.fused as f; "
             "print(cbam_tutorial.__file__); print(f.load_extension().__file__)")
    for copy_name in ("first", "second"):
        shutil.copytree(Path(cbam_tutorial.__file__).parent, tmp_path / copy_name / "cbam_tutorial",
                        ignore=shutil.ignore_patterns("__pycache__"))
        done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path / copy_name, capture_output=True,
                              text=True, timeout=300, env={**os.environ, "PYTHONPATH": ""})
        assert done.returncode == 0, done.stderr
        imported_from, module_file = done.stdout.split()
        assert Path(imported_from).parent == tmp_path / copy_name / "cbam_tutorial"
        assert Path(module_file) == compiled
    assert compiled.stat().st_mtime_ns == built_at, "the kernels were compiled again"


def test_the_build_folder_is_named_by_what_the_build_depends_on():
    flags, source = ["-O3"], b"int f() { return 1; }"
    folder = build_folder("kernels", flags, source)
    assert folder == build_folder("kernels", list(flags), bytes(source))
    assert folder.name.startswith("kernels-")
    assert folder != build_folder("kernels", flags, source + b"\n")
    assert folder != build_folder("kernels", ["-O2"], source)


def test_a_build_for_another_cpu_is_not_reused(monkeypatch):
    flags, source = ["-O3", "-march=native"], b"int f() { return 1; }"
    here = build_folder("kernels", flags, source)
    monkeypatch.setattr("cbam_tutorial.fused._cpu_features", lambda: b"flags : fpu sse2")
    assert build_folder("kernels", flags, source) != here
