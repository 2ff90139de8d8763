"""Checkers for the notebooks' exercises: they say what is wrong and give a hint.

A checker returns quietly (after printing a short "correct") when the answer is right, and
raises :class:`ExerciseError` when it is not, with a message that names the value that differs
(the shape, the index, the label) and a hint. An unanswered stub (``raise
NotImplementedError``) is reported as "not answered yet".

The general helpers come first; then one section per notebook.
"""

from __future__ import annotations

import torch


class ExerciseError(AssertionError):
    """An answer that is not right yet; the message says what differs and how to look for it."""


def _fail(exercise: str, what: str, hint: str | None = None):
    msg = f"[{exercise}] {what}"
    if hint:
        msg += f"\nHint: {hint}"
    raise ExerciseError(msg)


def _ok(exercise: str, extra: str = "") -> bool:
    print(f"✓ {exercise}: correct.{(' ' + extra) if extra else ''}")
    return True


def call_answer(exercise: str, fn, *args, **kwargs):
    """Call a learner's function; a stub that raises NotImplementedError becomes a clear
    'not answered yet' message instead of a traceback."""
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        _fail(exercise, "not answered yet: replace `raise NotImplementedError` with your code.")


def expect_tensor(exercise: str, name: str, got, expected: torch.Tensor, *,
                  atol: float = 1e-6, hint: str | None = None) -> None:
    """``got`` must be a tensor of the expected shape whose values match ``expected``."""
    if not isinstance(got, torch.Tensor):
        _fail(exercise, f"{name} should be a torch.Tensor, got {type(got).__name__}.", hint)
    if tuple(got.shape) != tuple(expected.shape):
        _fail(exercise, f"{name} has shape {tuple(got.shape)}, expected "
                        f"{tuple(expected.shape)}.", hint)
    diff = (got.float() - expected.float()).abs()
    if diff.max() > atol:
        where = tuple(int(i) for i in torch.nonzero(diff > atol)[0])
        _fail(exercise, f"{name} differs at index {where}: got {got[where].item():.4g}, "
                        f"expected {expected[where].item():.4g} "
                        f"({int((diff > atol).sum())} of {diff.numel()} values differ).", hint)


def expect_value(exercise: str, name: str, got, expected, *, hint: str | None = None) -> None:
    """``got`` must equal ``expected`` (for choices, labels, small integers)."""
    if got != expected:
        _fail(exercise, f"{name}: your answer is {got!r}, which is not right.", hint)


def expect_in_range(exercise: str, name: str, got: float, low: float, high: float, *,
                    hint: str | None = None) -> None:
    """``got`` must be a number in [low, high]."""
    if not isinstance(got, (int, float)) or not low <= got <= high:
        _fail(exercise, f"{name} = {got!r} is outside the expected range [{low}, {high}].", hint)


# --------------------------------------------------------------------------------------------
# 01_rotation


def check_rotate_quarter(rotate_quarter) -> bool:
    """Exercise: turn one image (C, S, S) by k quarter turns anticlockwise, without rot90."""
    from .pretext.rotation import rotate

    ex = "rotate_quarter"
    image = torch.arange(2 * 5 * 5, dtype=torch.float32).view(2, 5, 5)
    for k in range(4):
        got = call_answer(ex, rotate_quarter, image.clone(), k)
        expect_tensor(ex, f"rotate_quarter(image, k={k})", got, rotate(image[None], k)[0],
                      hint="one quarter turn anticlockwise is a transpose of the two spatial "
                           "axes followed by flipping the rows upside down; repeat it k times.")
    return _ok(ex, "Exact quarter turns only move pixels: nothing is interpolated.")


def check_rotation_batch(rotation_batch) -> bool:
    """Exercise: all four rotations of every image plus their labels."""
    from .pretext.rotation import all_rotations

    ex = "rotation_batch"
    images = torch.rand(3, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    result = call_answer(ex, rotation_batch, images.clone())
    if not (isinstance(result, tuple) and len(result) == 2):
        _fail(ex, "return a pair (inputs, targets).")
    inputs, targets = result
    ref_inputs, ref_targets = all_rotations(images)
    expect_tensor(ex, "targets", targets, ref_targets,
                  hint="targets are [0]*N + [1]*N + [2]*N + [3]*N for images ordered "
                       "[all at 0°, all at 90°, all at 180°, all at 270°].")
    expect_tensor(ex, "inputs", inputs, ref_inputs,
                  hint="concatenate torch.rot90(images, k, dims=(2, 3)) for k = 0, 1, 2, 3.")
    return _ok(ex, "All four rotations of each image sit in one batch, as in the paper.")


def check_best_block(answer: str, probe_results: dict) -> bool:
    """Exercise: which block of the rotation network gives the best linear probe?"""
    ex = "best_block"
    if answer is NotImplemented or answer is None:
        _fail(ex, "not answered yet: set `answer` to a block name such as 'block2'.")
    best = probe_results["rotation"].best_block
    expect_value(ex, "best block", answer, best,
                 hint="look at the rotation row of the probe table: which column is highest? "
                      "The paper also found a middle block beats the last one.")
    return _ok(ex, "Later blocks specialise in the pretext task; middle blocks stay general.")
