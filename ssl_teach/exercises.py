"""Checkers for the notebooks' exercises: they say what is wrong and give a hint.

Every answer is a function the learner writes (for a question, a function that returns the
answer). A checker calls it first — so an unanswered stub (``raise NotImplementedError``) is
reported as "not answered yet" before anything else is looked at — then returns after printing
a short "correct" when the answer is right, or raises :class:`ExerciseError` with a message that
names the value that differs (the shape, the index, the label) and a hint.

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
# 00_introduction


def check_standardise(standardise) -> bool:
    """Exercise: standardise train and test features with the *training* mean and std."""
    from .probe import standardise as reference

    ex = "standardise"
    g = torch.Generator().manual_seed(0)
    train = torch.randn(50, 4, generator=g) * torch.tensor([1.0, 5.0, 0.1, 2.0]) + 3
    test = torch.randn(20, 4, generator=g) * 2 - 1
    result = call_answer(ex, standardise, train.clone(), test.clone())
    if not (isinstance(result, (tuple, list)) and len(result) == 2):
        _fail(ex, "return a pair (train_standardised, test_standardised).")
    ref_train, ref_test = reference(train, test)
    expect_tensor(ex, "standardised train", result[0], ref_train, atol=1e-4,
                  hint="subtract train.mean(0) and divide by train.std(0), feature by feature.")
    expect_tensor(ex, "standardised test", result[1], ref_test, atol=1e-4,
                  hint="the test split uses the TRAINING mean and std: statistics of the test "
                       "set are not known when the probe is fitted.")
    return _ok(ex, "Test features are scaled with training statistics only.")


def check_random_beats_chance(random_beats_chance, random_accuracy: float, chance: float
                              ) -> bool:
    """Exercise: is a random, untrained network's probe above chance? (returns True / False)"""
    ex = "random_beats_chance"
    answer = call_answer(ex, random_beats_chance)
    if not isinstance(answer, bool):
        _fail(ex, f"return True or False, got {answer!r}.")
    expect_value(ex, "random-init above chance", answer, random_accuracy > chance + 0.05,
                 hint=f"compare the random-init probe ({100 * random_accuracy:.1f}%) with "
                      f"chance ({100 * chance:.1f}%).")
    return _ok(ex, "Random convolutions keep colour and layout: that is why baselines matter.")


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


def check_best_block_prediction(predict_best_block, probe_results: dict) -> bool:
    """Predict, then run: which block of the rotation network gives the best linear probe (the
    block the probe chooses on validation)? ``probe_results`` maps methods to their
    :class:`~ssl_teach.probe.ProbeResult`."""
    ex = "predict_best_block"
    answer = call_answer(ex, predict_best_block)
    result = probe_results["rotation"]
    per_block = ", ".join(f"{block} {100 * acc:.1f}%" for block, acc in result.linear.items())
    return judge_prediction(ex, answer, result.best_block, tuple(result.linear),
                            f"test accuracy {per_block}; {result.best_block} has the best "
                            "validation accuracy")


MIRROR_LEARNED = 0.10
"""How far above chance (in accuracy) the mirror network must get on held-out images for the
answer to "does it learn to tell a scene from its mirror image?" to be "yes"."""


def check_mirror_prediction(predict_mirror, accuracy: float, chance: float = 0.5) -> bool:
    """Diagnose, predict first: does a network learn whether a scene was mirrored left-right
    ("yes": held-out accuracy more than :data:`MIRROR_LEARNED` above chance) or not ("no")?
    ``accuracy`` is the mirror network's held-out pretext accuracy."""
    ex = "predict_mirror"
    answer = call_answer(ex, predict_mirror)
    measured = "yes" if accuracy > chance + MIRROR_LEARNED else "no"
    return judge_prediction(ex, answer, measured, ("yes", "no"),
                            f"held-out accuracy {100 * accuracy:.1f}% against a chance of "
                            f"{100 * chance:.0f}%")


def check_rotation_ablation_prediction(predict_rotation_ablation, ablation: dict) -> bool:
    """Predict, then run (05): of 2, 4 and 8 rotations, which is the easiest pretext task (the
    highest chance-corrected pretext accuracy), and which gives the worst probe? ``ablation``
    maps each number of rotations to {"pretext": chance-corrected accuracy, "probe": test
    accuracy}; the answer is a pair of those numbers."""
    ex = "predict_rotation_ablation"
    answer = call_answer(ex, predict_rotation_ablation)
    counts = tuple(ablation)
    if not (isinstance(answer, tuple) and len(answer) == 2):
        _fail(ex, f"return a pair (easiest, worst probe) of numbers of rotations from {counts}, "
                  f"got {answer!r}.")
    easiest = max(counts, key=lambda n: ablation[n]["pretext"])
    worst = min(counts, key=lambda n: ablation[n]["probe"])
    evidence = "; ".join(f"{n} rotations: pretext {ablation[n]['pretext']:.3f} chance-corrected, "
                         f"probe {100 * ablation[n]['probe']:.1f}%" for n in counts)
    judge_prediction(ex + " (easiest pretext task)", answer[0], easiest, counts, evidence)
    return judge_prediction(ex + " (worst probe)", answer[1], worst, counts, evidence)


# --------------------------------------------------------------------------------------------
# 04_relative_patch_location


def check_label_to_offset(label_to_offset) -> bool:
    """Exercise: the (row, column) step from the centre cell to neighbour ``label`` (0..7)."""
    from .pretext.relative_patch import offset_of

    ex = "label_to_offset"
    for label in range(8):
        got = call_answer(ex, label_to_offset, label)
        got = tuple(int(v) for v in got) if isinstance(got, (tuple, list)) else got
        expect_value(ex, f"label_to_offset({label})", got, offset_of(label),
                     hint="number the 9 cells of the 3x3 grid row by row (0..8), skip the "
                          "centre cell 4, then subtract the centre (1, 1) from the cell's "
                          "(row, column).")
    return _ok(ex, "Row-major, centre skipped: label 0 is top-left, label 7 bottom-right.")


def check_project_out(project_out) -> bool:
    """Exercise: remove the green-magenta component from every pixel of (N, 3, H, W)."""
    from .pretext.relative_patch import project_out_green_magenta

    ex = "project_out"
    images = torch.rand(2, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    got = call_answer(ex, project_out, images.clone())
    expect_tensor(ex, "project_out(images)", got, project_out_green_magenta(images), atol=1e-5,
                  hint="v = (-0.5, 1, -0.5) / its norm; per pixel, subtract (x . v) v, where "
                       "x . v sums over the channel axis (dim 1).")
    return _ok(ex, "What is left of each pixel has no green-magenta component.")


def check_row_or_column_prediction(predict_row_or_column, clean: dict) -> bool:
    """Predict, then run: on clean scenes, does one patch alone tell its "row" or its "column"
    better, or both "equally" (within 5 points)? ``clean`` is the clean row of the shortcut lab
    ({"cell", "row", "column", ...}: accuracies of the absolute-position network)."""
    ex = "predict_row_or_column"
    answer = call_answer(ex, predict_row_or_column)
    gap = clean["row"] - clean["column"]
    measured = "equally" if abs(gap) <= 0.05 else "row" if gap > 0 else "column"
    return judge_prediction(ex, answer, measured, ("row", "column", "equally"),
                            f"row {100 * clean['row']:.0f}%, column {100 * clean['column']:.0f}% "
                            "(chance 33% each)")


MYSTERY_VIGNETTING = 0.1
"""How much the planted cue of :func:`mystery_datasets` darkens the corners (a share)."""

MYSTERY_CAST = (1.0, 0.9, 0.8)
"""The warm colour cast of the other mystery dataset: a factor per channel, the same at every
pixel (a change of about the same size, with no position in it)."""


def _planted(seed: int) -> str:
    """Which mystery dataset ("A" or "B") holds the planted cue, drawn from ``seed``."""
    g = torch.Generator().manual_seed(10_007 + seed)
    return "AB"[int(torch.randint(2, (1,), generator=g))]


def mystery_datasets(dataset, *, seed: int = 0) -> dict:
    """Two copies of ``dataset``, "A" and "B", each with a hidden change to every image: one is
    vignetted (darker towards the corners, as a wide-open lens makes them: a cue to where a
    patch was cut), the other has a warm colour cast (the same at every pixel: no such cue).
    Which is which is drawn from ``seed``. Diagnosis exercise: find the planted cue."""
    import dataclasses

    from .data import like, to_float
    from .pretext.relative_patch import vignetting

    cast = torch.tensor(MYSTERY_CAST).view(1, 3, 1, 1)

    def tint(images):
        if images.shape[1] != 3:
            raise ValueError("the mystery datasets need colour images (3 channels)")
        return like(to_float(images) * cast, images)

    def vignette(images):
        return vignetting(images, strength=MYSTERY_VIGNETTING)

    planted = _planted(seed)
    out = {}
    for name in "AB":
        change = vignette if name == planted else tint
        out[name] = dataclasses.replace(
            dataset, unlabeled=change(dataset.unlabeled),
            train_images=change(dataset.train_images), test_images=change(dataset.test_images))
    return out


def check_planted_cue(find_the_planted_cue, seed: int = 0) -> bool:
    """Diagnosis: which mystery dataset (:func:`mystery_datasets` with ``seed``) lets one patch
    tell where it was cut better than the clean scenes do?"""
    ex = "find_the_planted_cue"
    answer = call_answer(ex, find_the_planted_cue)
    if answer not in ("A", "B"):
        _fail(ex, f"return \"A\" or \"B\", got {answer!r}.")
    planted = _planted(seed)
    expect_value(ex, "the dataset with the planted cue", answer, planted,
                 hint="train the absolute-position network on each mystery dataset and compare "
                      "its cell accuracy with the clean row of the lab; a change that is the same "
                      "at every pixel cannot tell a patch where it was cut.")
    other = "B" if planted == "A" else "A"
    return _ok(ex, f"{planted} was vignetted: its corners are darker, so a patch's fall-off "
                   f"in brightness tells which corner or edge it came from. {other} had a colour "
                   "cast, the same at every pixel.")


# --------------------------------------------------------------------------------------------
# 02_exemplar


def check_power_multiply_shift(power_multiply_shift) -> bool:
    """Exercise: x -> clamp(clamp(x, 0, 1) ** power * factor + shift, 0, 1), without NaNs."""
    ex = "power_multiply_shift"
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 6, 6, generator=g) * 1.2 - 0.1  # a little outside [0, 1], like real data
    power = torch.tensor([0.25, 1.0, 2.0, 4.0])
    factor = torch.tensor([0.7, 1.0, 1.2, 1.4])
    shift = torch.tensor([-0.1, 0.0, 0.05, 0.1])
    got = call_answer(ex, power_multiply_shift, x.clone(), power, factor, shift)
    if isinstance(got, torch.Tensor) and torch.isnan(got).any():
        _fail(ex, f"{int(torch.isnan(got).sum())} values are NaN.",
              "a negative number to a fractional power is NaN: clamp x to [0, 1] *before* "
              "the power.")
    expected = (x.clamp(0, 1).pow(power.view(-1, 1, 1)) * factor.view(-1, 1, 1)
                + shift.view(-1, 1, 1)).clamp(0, 1)
    expect_tensor(ex, "power_multiply_shift(x, power, factor, shift)", got, expected, atol=1e-6,
                  hint="one power, factor and shift per sample: reshape them to (N, 1, 1) so "
                       "they broadcast over the pixels; clamp the result to [0, 1] too.")
    return _ok(ex, "Clamping first keeps every power finite.")


def check_patch_probabilities(patch_probabilities) -> bool:
    """Exercise: probability of every patch position ~ mean squared gradient inside it."""
    from .pretext.exemplar import gradient_magnitude, patch_scores

    ex = "patch_probabilities"
    image = torch.rand(1, 3, 20, 20, generator=torch.Generator().manual_seed(1))
    image[..., :10] = 0.5  # a flat left half
    got = call_answer(ex, patch_probabilities, gradient_magnitude(image)[0], 8)
    scores = patch_scores(image, patch_size=8)[0]
    expect_tensor(ex, "patch_probabilities(magnitude, 8)", got, scores / scores.sum(),
                  atol=1e-5,
                  hint="square the magnitude, average it over every 8x8 window "
                       "(avg_pool2d with stride 1 on a (1, 1, H, W) tensor), then divide by "
                       "the sum so the map sums to 1; the result is (H - 7, W - 7).")
    return _ok(ex, "Flat windows get (almost) no probability; textured ones most of it.")


# --------------------------------------------------------------------------------------------
# 05_comparing_pretext_tasks


def check_best_pretext_task(best_pretext_task, results: dict) -> bool:
    """Exercise: the self-supervised task with the highest best-block linear probe."""
    ex = "best_pretext_task"
    answer = call_answer(ex, best_pretext_task)
    tasks = results["tasks"]
    if answer not in tasks:
        _fail(ex, f"{answer!r} is not one of the compared pretext tasks {tasks}.",
              "the baselines 'random' and 'supervised' are not pretext tasks.")
    m = results["methods"]
    best = max(tasks, key=lambda t: m[t]["linear"][m[t]["best_block"]])
    expect_value(ex, "best pretext task", answer, best,
                 hint="compare the 'best' column of the linear probe table, task rows only.")
    return _ok(ex)


def check_pretraining_helps(tasks_that_help, results: dict, labels_per_class: int = 16) -> bool:
    """Exercise: the pretext tasks whose fine-tuning beats fine-tuning from scratch by more
    than the spread with ``labels_per_class`` labels per class (a set of task names)."""
    ex = "tasks_that_help"
    answer = call_answer(ex, tasks_that_help)
    tasks = results["tasks"]
    if isinstance(answer, str) or not isinstance(answer, (set, frozenset, list, tuple)):
        _fail(ex, f"return a set of task names, got {answer!r}.")
    unknown = set(answer) - set(tasks)
    if unknown:
        _fail(ex, f"{sorted(unknown)} are not compared pretext tasks {tasks}.",
              "'random' (from scratch) and 'supervised' are not pretext tasks.")
    size = str(labels_per_class)
    helps = results["pretraining_helps"]
    expected = {t for t in tasks if helps.get(t, {}).get("helps", {}).get(size)}
    gains = ", ".join(f"{t} {100 * helps[t]['gain'][size]:+.1f} ± "
                      f"{100 * helps[t]['spread'][size]:.1f}" for t in tasks
                      if size in helps.get(t, {}).get("gain", {}))
    expect_value(ex, "tasks that help", set(answer), expected,
                 hint=f"a task helps when its gain over from scratch is larger than the spread "
                      f"(gain ± spread in points: {gains}).")
    return _ok(ex, "A gain smaller than its spread names no winner: another choice of the "
                   "labelled images could reverse it.")


def check_balanced_subset(balanced_subset) -> bool:
    """Exercise: indices of a class-balanced random subset, seeded, without repeats."""
    ex = "balanced_subset"
    labels = torch.arange(120) % 6
    idx = call_answer(ex, balanced_subset, labels.clone(), 4, 0)
    if not isinstance(idx, torch.Tensor) or idx.dtype not in (torch.int64, torch.int32):
        _fail(ex, f"return a tensor of integer indices, got {type(idx).__name__}"
                  f"{'' if not isinstance(idx, torch.Tensor) else ' of ' + str(idx.dtype)}.")
    if len(idx) != 24:
        _fail(ex, f"expected 4 indices for each of the 6 classes (24), got {len(idx)}.")
    if len(set(idx.tolist())) != len(idx):
        _fail(ex, "some indices repeat.", "draw without replacement: torch.randperm.")
    counts = labels[idx].bincount(minlength=6)
    for c, n in enumerate(counts.tolist()):
        if n != 4:
            _fail(ex, f"class {c} got {n} images, expected 4.",
                  "pick within each class separately: (labels == c).nonzero().")
    again = call_answer(ex, balanced_subset, labels.clone(), 4, 0)
    if not torch.equal(torch.as_tensor(again).sort().values, idx.sort().values):
        _fail(ex, "the same seed gave a different subset.",
              "use torch.Generator().manual_seed(seed), never the global random state.")
    other = call_answer(ex, balanced_subset, labels.clone(), 4, 1)
    if torch.equal(torch.as_tensor(other).sort().values, idx.sort().values):
        _fail(ex, "seeds 0 and 1 gave the same subset: the seed is not used.")
    return _ok(ex)


def ranked_pairs(results: dict, spread: dict | None) -> list[tuple[str, str]]:
    """The pairs of tasks (better first, by the best-block probe) that a measurement can rank:
    those the spread over training seeds ranks (``spread``: the results of
    ``compare --train-seeds``, which may hold more tasks: only pairs of ``results``' tasks
    count), or, without it, every pair as the single run orders them."""
    m, tasks = results["methods"], results["tasks"]
    if spread is not None:
        return [tuple(r["pair"]) for r in spread["ranking"]
                if r["ranked"] and set(r["pair"]) <= set(tasks)]
    best = {t: m[t]["linear"][m[t]["best_block"]] for t in tasks}
    return [(a, b) if best[a] > best[b] else (b, a)
            for i, a in enumerate(tasks) for b in tasks[i + 1:]]


def check_same_order(same_order, results: dict, spread: dict | None = None) -> bool:
    """Exercise: on every pair of tasks that the spread over training seeds ranks by the probe,
    does the chance-corrected pretext accuracy put the same task ahead?"""
    from .viz import chance_corrected

    ex = "same_order"
    answer = call_answer(ex, same_order)
    if not isinstance(answer, bool):
        _fail(ex, f"return True or False, got {answer!r}.")
    m = results["methods"]
    score = {t: chance_corrected(m[t]["pretext"]["accuracy"], m[t]["pretext"]["chance"])
             for t in results["tasks"]}
    pairs = ranked_pairs(results, spread)
    against = [(a, b) for a, b in pairs if not score[a] > score[b]]
    expect_value(ex, "same order", answer, not against,
                 hint=f"the pairs the probe ranks (better first): {pairs}; the pretext score "
                      + (f"orders these the other way: {against}." if against
                         else "puts the same task ahead in every one."))
    return _ok(ex, "Pairs within the spread say nothing either way; Kolesnikov et al. 2019 "
                   "found, across architectures, that pretext accuracy is no feature score.")


# --------------------------------------------------------------------------------------------
# 03_jigsaw


def judge_prediction(exercise: str, answer, measured: str, choices: tuple[str, ...],
                     evidence: str) -> bool:
    """A predict-then-run answer, written before the run: it must be one of ``choices`` and is
    compared with the choice the run measured; ``evidence`` (the numbers) is shown either way."""
    if answer not in choices:
        _fail(exercise, f"return one of {', '.join(map(repr, choices))}, got {answer!r}.")
    if answer != measured:
        _fail(exercise, f"you predicted {answer!r}; the run measured {measured!r}: {evidence}.",
              "a wrong prediction is worth keeping: which assumption behind it do the numbers "
              "contradict?")
    return _ok(exercise, f"The run measured {measured!r}: {evidence}.")


SAME_POINTS = 0.03
"""A change counts as "about the same" within 3 points, or within the spread over training
seeds where that is larger (:func:`change_word`)."""

CHANGES = ("up", "down", "about the same")


def change_word(before: float, after: float, spread: float = 0.0) -> str:
    """How ``after`` compares with ``before``: "about the same" within the larger of
    :data:`SAME_POINTS` and ``spread``, else "up" or "down"."""
    if abs(after - before) <= max(SAME_POINTS, spread):
        return "about the same"
    return "up" if after > before else "down"


def seed_spreads(task: str, profile: str = "quick", dataset: str = "scenes") -> dict:
    """The spread over training seeds of a difference between two runs of ``task`` ("pretext"
    and "probe", sqrt(2) x the std in the committed ``compare --train-seeds`` record), or {}
    where no record was committed for this profile and dataset."""
    from . import results as records

    name = f"seeds-{profile}-{dataset}"
    if name not in [p.stem for p in records.committed()]:
        return {}
    methods = records.check(name)["results"]["methods"]
    if task not in methods:
        return {}
    return {k: 2 ** 0.5 * methods[task][k]["std"] for k in ("pretext", "probe")
            if methods[task].get(k)}


def check_change_prediction(predict, before: dict, after: dict, spreads: dict | None = None
                            ) -> bool:
    """Predict, then run: how do the pretext accuracy and the probe of a changed run compare
    with the notebook's run? The answer is a pair (pretext, probe), each "up", "down" or
    "about the same" (within the larger of 3 points and the spread over training seeds,
    ``spreads``); ``before`` and ``after`` map "pretext" and "probe" to accuracies. Messages
    name the exercise by the learner's function."""
    exercise = getattr(predict, "__name__", "prediction")
    answer = call_answer(exercise, predict)
    keys = ("pretext", "probe")
    if not (isinstance(answer, tuple) and len(answer) == 2 and set(answer) <= set(CHANGES)):
        choices = ", ".join(map(repr, CHANGES))
        _fail(exercise, f"return a pair (pretext, probe), each one of {choices}; got {answer!r}.")
    spreads = spreads or {}
    measured = tuple(change_word(before[k], after[k], spreads.get(k, 0.0)) for k in keys)
    evidence = "; ".join(
        f"{k} {100 * before[k]:.1f}% -> {100 * after[k]:.1f}% "
        f"({100 * (after[k] - before[k]):+.1f} points; 'about the same' means within "
        f"{100 * max(SAME_POINTS, spreads.get(k, 0.0)):.1f})" for k in keys)
    return judge_prediction(exercise, answer, measured,
                            tuple((a, b) for a in CHANGES for b in CHANGES), evidence)


SWAP = ("gap and jitter", "touching tiles")
"""The two jigsaw networks (and puzzle kinds) of 03's swap test."""


def check_swap_prediction(predict_swap, swap: dict) -> bool:
    """Predict, then run: shown gapped puzzles, does the network trained on touching tiles
    solve "most" (more than half) of what it solves on touching tiles, or "little"?
    ``swap[(trained on, tested on)]`` holds the four puzzle accuracies."""
    ex = "predict_swap"
    answer = call_answer(ex, predict_swap)
    gapped, touching = SWAP
    kept = swap[touching, gapped] / swap[touching, touching]
    measured = "most" if kept > 0.5 else "little"
    return judge_prediction(
        ex, answer, measured, ("most", "little"),
        f"{100 * swap[touching, gapped]:.1f}% of gapped puzzles against "
        f"{100 * swap[touching, touching]:.1f}% of touching ones, {100 * kept:.0f}% kept")


def check_hamming(hamming_distance) -> bool:
    """Exercise: the Hamming distance between two orders of the nine tiles."""
    ex = "hamming_distance"
    g = torch.Generator().manual_seed(0)
    pairs = [(torch.randperm(9, generator=g), torch.randperm(9, generator=g)) for _ in range(20)]
    pairs.append((torch.arange(9), torch.arange(9)))
    for p, q in pairs:
        got = call_answer(ex, hamming_distance, p.clone(), q.clone())
        expected = int((p != q).sum())
        expect_value(ex, f"hamming_distance({p.tolist()}, {q.tolist()})", int(got), expected,
                     hint="count the positions i where p[i] != q[i]; (p != q) is a tensor of "
                          "booleans you can .sum().")
    return _ok(ex, "Two different orders always differ in at least 2 positions (a swap).")


def check_unshuffle(unshuffle) -> bool:
    """Exercise: put shuffled tiles back in grid order."""
    from .pretext.jigsaw import shuffle

    ex = "unshuffle"
    g = torch.Generator().manual_seed(1)
    tiles = torch.rand(4, 9, 1, 3, 3, generator=g)
    orders = torch.stack([torch.randperm(9, generator=g) for _ in range(4)])
    shuffled = shuffle(tiles, orders)
    got = call_answer(ex, unshuffle, shuffled.clone(), orders.clone())
    expect_tensor(ex, "unshuffled tiles", got, tiles,
                  hint="position i holds the tile of cell order[n, i]: so out[n, order[n, i]] "
                       "= shuffled[n, i]; or gather with order.argsort(1), the inverse order.")
    return _ok(ex, "Applying the inverse permutation rebuilds the grid.")


def check_closest_pair_prediction(predict_closest_pair, stats: dict) -> bool:
    """Predict, then run: is the closest pair of orders in the paper's set (greedy by the
    average distance) "further" apart than in a random set of as many orders, "closer", or "as
    close"? ``stats`` maps each set's name to its :func:`ssl_teach.pretext.jigsaw.hamming_stats`;
    it holds "greedy, average (default)" and "random"."""
    ex = "predict_closest_pair"
    answer = call_answer(ex, predict_closest_pair)
    paper, random = stats["greedy, average (default)"]["min"], stats["random"]["min"]
    measured = "further" if paper > random else "closer" if paper < random else "as close"
    return judge_prediction(ex, answer, measured, ("further", "closer", "as close"),
                            f"the closest pair differs in {paper:.0f} positions in the paper's "
                            f"set and in {random:.0f} in the random one (mean distance "
                            f"{stats['greedy, average (default)']['mean']:.2f} against "
                            f"{stats['random']['mean']:.2f})")


# --------------------------------------------------------------------------------------------
# 06_contrastive_learning


def check_nt_xent(nt_xent) -> bool:
    """Exercise: the NT-Xent loss of projections z (2N, D), partners at rows 2k and 2k + 1,
    every view against the other 2N - 1 of the batch, averaged over all 2N views."""
    from .pretext.simclr import nt_xent as reference

    ex = "nt_xent"
    g = torch.Generator().manual_seed(0)
    hint = ("three things to look at: sim is the cosine similarity (normalise each row of z "
            "to length 1 first); a view is never its own candidate (set the diagonal of the "
            "similarity matrix to -inf before the softmax); the partner of row i is row i + 1 "
            "for even i and i - 1 for odd i (i ^ 1 in Python).")
    cases = [(torch.randn(8, 5, generator=g), 0.5), (3 * torch.randn(12, 16, generator=g), 0.1),
             (torch.randn(2, 3, generator=g), 1.0)]
    for z, t in cases:
        got = call_answer(ex, nt_xent, z.clone(), t)
        expected = reference(z, temperature=t, group=len(z) // 2)
        if not isinstance(got, torch.Tensor) or got.numel() != 1:
            _fail(ex, f"return the loss as a scalar tensor, got {got!r}.")
        if abs(float(got) - float(expected)) > 1e-4:
            _fail(ex, f"for z of shape {tuple(z.shape)} and temperature {t}: got "
                      f"{float(got):.4f}, expected {float(expected):.4f}.", hint)
    return _ok(ex, "Every view against 2N - 1 candidates: a cross-entropy whose classes are the "
                   "other views of the batch.")


def check_crop_prediction(predict_without_crops, runs: dict, spread: float) -> bool:
    """Predict, then run: switching the random crops off, is the pretext accuracy "higher" or
    "lower" than with them; and is the probe "higher" or "lower" by more than ``spread`` (the
    spread of such a difference over training seeds), or "within the spread"? ``runs`` maps
    "with crops" and "without crops" to {"pretext": partner found, "probe": best-block probe};
    the answer is a pair (pretext, probe)."""
    ex = "predict_without_crops"
    answer = call_answer(ex, predict_without_crops)
    pretext_choices, probe_choices = ("higher", "lower"), ("higher", "lower", "within the spread")
    if not (isinstance(answer, tuple) and len(answer) == 2 and answer[0] in pretext_choices
            and answer[1] in probe_choices):
        _fail(ex, f"return a pair (pretext, probe): the first 'higher' or 'lower', the second "
                  f"'higher', 'lower' or 'within the spread'; got {answer!r}.")
    on, off = runs["with crops"], runs["without crops"]
    change = off["probe"] - on["probe"]
    measured = ("higher" if off["pretext"] > on["pretext"] else "lower",
                "within the spread" if abs(change) <= spread else
                "higher" if change > 0 else "lower")
    evidence = (f"without crops the partner is found {100 * off['pretext']:.1f}% of the time "
                f"({100 * on['pretext']:.1f}% with them) and the probe changes by "
                f"{100 * change:+.1f} points (spread {100 * spread:.1f})")
    return judge_prediction(ex, answer, measured,
                            tuple((a, b) for a in pretext_choices for b in probe_choices),
                            evidence)


# --------------------------------------------------------------------------------------------
# 07_predicting_pixels


def check_annealed_mean(annealed_mean) -> bool:
    """Exercise: the annealed mean of colorization, logits (N, Q, h, w) and bin centres (Q, 2)
    -> ab (N, 2, h, w): the mean of softmax(log p / T), p the softmax of the logits."""
    from .pretext.colorization import annealed_mean as reference

    ex = "annealed_mean"
    g = torch.Generator().manual_seed(0)
    hint = ("p = softmax of the logits over the bins (dim 1); sharpen it as softmax(log p / T) "
            "-- not softmax(logits) ** (1 / T) without normalising again; then every pixel's "
            "colour is the sum over bins of its weights times the bins' ab centres.")
    centres = torch.randn(7, 2, generator=g) * 40
    for logits, t in [(torch.randn(2, 7, 3, 4, generator=g), 0.38),
                      (3 * torch.randn(1, 7, 2, 2, generator=g), 1.0),
                      (torch.randn(3, 7, 1, 5, generator=g), 0.1)]:
        got = call_answer(ex, annealed_mean, logits.clone(), centres.clone(), t)
        expect_tensor(ex, f"the colours at temperature {t}", got,
                      reference(logits, centres, temperature=t), atol=1e-3, hint=hint)
    return _ok(ex, "T = 1 gives the mean of the distribution, the greyish answer an L2 loss "
                   "trains towards; T -> 0 gives its most likely bin.")
