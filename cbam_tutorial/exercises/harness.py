"""Running a student's code for a check: build it, call it under a time limit, and turn
whatever goes wrong into an ExerciseError whose message says what to change.

A student's code runs with a time limit (a forward that never returns is reported as
such), and an exception in it is reported with the line of the student's code that
raised it.
"""
from __future__ import annotations

import signal
import threading
import traceback
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

# Seconds one call of the student's code may take; a correct solution takes milliseconds.
TIME_LIMIT = 20.0
_PACKAGE = Path(__file__).resolve().parents[1]  # all of cbam_tutorial
_TORCH = Path(torch.__file__).resolve().parent


class ExerciseError(AssertionError):
    """The solution does not do what the exercise asks; the message says what is wrong."""


def fail(message: str):
    raise ExerciseError(message)


def passed(what: str, how: str = "in values and gradients, on several inputs and with two sets of "
                                   "constructor arguments") -> str:
    message = f"Correct: your {what} matches the reference {how}."
    print(message)
    return message


class _StudentCodeTimedOut(BaseException):
    """Raised into the student's code by the timer; a BaseException, so that an
    `except Exception` in their code cannot swallow it."""


@contextmanager
def time_limit(what: str, seconds: float | None = None):
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
        fail(f"{what} did not finish within {seconds:g} s, so it was stopped: it probably never returns "
             "(a loop whose condition never changes?). Fix it and run the check again.")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def failing_line(error: BaseException) -> str:
    """' (in `code`, line N)' for the last line of the student's own code in the traceback."""
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        path = Path(frame.filename).resolve() if frame.filename and not frame.filename.startswith("<") else None
        inside_library = path is not None and (_PACKAGE in path.parents or _TORCH in path.parents
                                               or "site-packages" in path.parts)
        if not inside_library and frame.line:
            return f" (in `{frame.line.strip()}`, line {frame.lineno})"
    return ""


def explain_exception(error: Exception) -> str:
    text = f"{type(error).__name__}: {error}"
    if isinstance(error, TypeError) and ("tuple" in str(error) or "max" in str(error)):
        text += (" (torch.max(x, dim=...) returns (values, indices): use .values, or x.amax(dim=...))")
    if isinstance(error, RuntimeError) and ("size" in str(error) or "shape" in str(error)):
        text += " (print the shapes after every step and compare them with the chapter's walk-through)"
    return text


def build_student_module(student_class, args: tuple, what: str) -> nn.Module:
    try:
        with time_limit(f"building {what}{args}"):
            module = student_class(*args)
    except ExerciseError:
        raise
    except Exception as error:  # the student's constructor: report whatever went wrong
        fail(f"{what}{args} could not be built{failing_line(error)}: {explain_exception(error)}")
    if not isinstance(module, nn.Module):
        fail(f"{what} must be an nn.Module subclass (class {what}(nn.Module): ...)")
    return module.eval()


def run_student_forward(module: nn.Module, x: torch.Tensor,
                        shapes_that_worked: list) -> tuple[torch.Tensor, torch.Tensor]:
    """(leaf input, output) of the student's forward on a copy of x, with x itself checked untouched."""
    leaf = x.detach().clone().requires_grad_(True)
    given = leaf.clone()
    convolutions = []  # (kernel size, output size) of every Conv2d, to explain a crash
    handles = [m.register_forward_hook(lambda m, i, o: convolutions.append((m.kernel_size, tuple(o.shape[-2:]))))
               for m in module.modules() if isinstance(m, nn.Conv2d)]
    try:
        with time_limit("your forward"):
            out = module(given)
    except ExerciseError:
        raise
    except Exception as error:
        for kernel, size in convolutions:
            if kernel[0] > 1 and size != tuple(x.shape[-2:]):
                fail(f"the {kernel[0]}x{kernel[1]} convolution turns {tuple(x.shape[-2:])} maps into {size}, so "
                     "the map no longer lines up with the features: pad the convolution by kernel_size // 2 "
                     "(or padding='same') so the map keeps the input's H x W")
        fixed = ""
        if shapes_that_worked:
            fixed = (f" It ran on an input of shape {shapes_that_worked[0]} but not on {tuple(x.shape)}: "
                     "something depends on the input's size (a pooling window of fixed size such as "
                     "avg_pool2d(x, 7)? pool over the whole map: x.mean(dim=(2, 3)), x.amax(dim=(2, 3)))")
        fail(f"forward raised {explain_exception(error)}{failing_line(error)}.{fixed}")
    finally:
        for handle in handles:
            handle.remove()
    if not torch.equal(given.detach(), x):
        fail("forward changed its input in place (e.g. x *= w or x.mul_(w)); the block's input is "
             "still needed by the residual shortcut and by autograd: return x * w instead")
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        out = out[0]
    if not isinstance(out, torch.Tensor):
        fail(f"forward must return a tensor, got {type(out).__name__}")
    shapes_that_worked.append(tuple(x.shape))
    return leaf, out


def randomise(module: nn.Module, seed: int) -> None:
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

