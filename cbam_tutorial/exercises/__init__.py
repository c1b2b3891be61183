"""Automatic checks for the book's implementation exercises: they grade behaviour, not form.

    check_channel_attention(MyChannelAttention)    # built as MyChannelAttention(channels, reduction)
    check_spatial_attention(MySpatialAttention)    # built as MySpatialAttention(kernel_size)
    check_cbam(MyCBAM)                             # built as MyCBAM(channels, reduction, kernel_size)
    check_grad_cam(my_grad_cam)                    # called as my_grad_cam(model, images, targets, layer)

How a check grades:

1. It builds the student's class with two different sets of constructor arguments, so a
   hard-coded size is caught (`attention_checks`).
2. It finds the student's weights by what they can do, in any storage: an MLP layer as
   nn.Linear, a 1x1 nn.Conv2d, a kernel-1 nn.Conv1d or a raw parameter used either way
   round (W or its transpose); a convolution as nn.Conv2d or F.conv2d with its own bias,
   with any spelling of its padding. Every reading of the parameters that fits the shapes is
   tried, and the one under which the paper's formula reproduces the student's output wins
   (`readings`).
3. It compares forward values on several random inputs and shapes, and gradients: to the
   input and to every parameter. A parameter that never receives a gradient (a gate under
   no_grad or .detach()ed, an unused layer) is a mistake with its own message (`grading`).
4. When the output is wrong, it computes each known mistake with the same weights and
   names the one that matches, with what to change (`formulas`). Only what no diagnosis
   explains gets a general message, and that one says which step differs.

A student's code runs with a time limit (`harness.TIME_LIMIT` seconds; a forward that never
returns is reported as such), and an exception in it is reported with the line of the
student's code that raised it (`harness`).
"""
from .attention_checks import check_cbam, check_channel_attention, check_spatial_attention
from .grad_cam_check import check_grad_cam
from .harness import ExerciseError

__all__ = ["ExerciseError", "check_cbam", "check_channel_attention", "check_grad_cam", "check_spatial_attention"]
