"""The fused CPU kernels compute the same function as CBAM's plain code."""
import copy

import pytest
import torch

from cbam_tutorial import CBAM
from cbam_tutorial.fused import fused_applies, load_extension

pytestmark = pytest.mark.skipif(load_extension() is None, reason="fused kernels did not compile")


def twins(channels: int, **options):
    fused = CBAM(channels, **options)
    with torch.no_grad():
        for p in fused.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    plain = copy.deepcopy(fused)
    plain.fused = False
    return fused, plain


@pytest.mark.parametrize("channels, size", [(16, 32), (24, 7), (64, 8), (256, 4)])
@pytest.mark.parametrize("options", [{}, {"map_order": "mean-max", "mlp_bias": False, "batch_norm": False},
                                     {"kernel_size": 3}], ids=["reference", "variant", "k3"])
def test_fused_equals_plain_in_training(channels, size, options):
    fused, plain = twins(channels, reduction=4, **options)
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
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-4, atol=1e-5)
    for (name, p1), p2 in zip(fused.named_parameters(), plain.parameters()):
        torch.testing.assert_close(p1.grad, p2.grad, rtol=1e-4, atol=1e-4, msg=name)
    for b1, b2 in zip(fused.buffers(), plain.buffers()):
        torch.testing.assert_close(b1, b2)  # BatchNorm running statistics updated once


def test_fused_equals_plain_in_eval_and_without_grad():
    fused, plain = twins(32, reduction=8)
    fused.eval(), plain.eval()
    x = torch.randn(2, 32, 9, 9).to(memory_format=torch.channels_last)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), plain(x), rtol=1e-5, atol=1e-5)


def test_fused_bfloat16_is_close_to_float32():
    fused, plain = twins(32, reduction=8)
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
