"""Pre-flight checks: what would make a run fail (or mean nothing) is found before it trains.

A run that fails after minutes of training loses the learner's time; one that "succeeds" on a
single class reports 100% for every method. :func:`preflight` checks, in one place:

- settings: the device exists here, every seed lies in 0..:data:`MAX_SEED`, the results file
  (``--out``) can be written; a long profile on a CPU warns how long it will take;
- data (once loaded): as many labels as images, every label one of the classes, at least two
  classes where labels are needed, enough labelled images of every class for each label
  count asked for, enough images (and large enough ones) for every task.

``run``, ``compare``, ``bench`` and the notebooks' :func:`ssl_teach.experiment.setup` call it
twice: the settings before the data is loaded, the data before anything trains. Every problem
is a ValueError whose message says what is wrong and how to fix it.
"""

from __future__ import annotations

import numbers
import os
import tempfile
import time
import warnings
from pathlib import Path

import torch

MAX_SEED = 2**31 - 1
"""The largest seed: seeds are combined with step numbers and offsets into torch generator
seeds (64 bits), which larger ones would overflow."""

SLOW_BUDGET = 1_000_000
"""Training budgets (samples per model) from which a run on the CPU warns how long it takes."""

DEVICES = "auto, cpu, cuda, cuda:N (N: the number of a GPU) or mps"


def check_device(device) -> torch.device:
    """The torch device that ``device`` ("auto", "cpu", "cuda", "cuda:1", "mps") means here,
    or a ValueError saying why it cannot be used."""
    from .train import select_device

    if isinstance(device, str) and device.strip() == "auto":
        return select_device("auto")
    try:
        dev = device if isinstance(device, torch.device) else torch.device(str(device).strip())
    except (RuntimeError, ValueError):
        raise ValueError(f"unknown device {str(device)!r}; use {DEVICES}") from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device {str(device)!r} is not supported; use {DEVICES}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r} asked for, but CUDA is not available "
                             "here; use --device cpu or auto")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"device {str(device)!r} asked for, but this machine has {count} "
                             f"GPU(s): cuda:0 to cuda:{count - 1}")
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if not (mps and mps.is_available()):
            raise ValueError(f"device {str(device)!r} asked for, but Apple's MPS is not "
                             "available here; use --device cpu or auto")
    return dev


def check_seed(seed, what: str = "seed") -> int:
    """``seed`` if it is an int in 0..MAX_SEED, else a ValueError."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not (
            0 <= seed <= MAX_SEED):
        raise ValueError(f"{what} must be an integer from 0 to {MAX_SEED:,} (2**31 - 1), got "
                         f"{seed!r}")
    return int(seed)


def check_out(path) -> Path | None:
    """Raise a ValueError unless a results file can be written at ``path`` (None: nothing to
    check): not a folder, not under a file, in a folder (or under one) that we can write in.
    Nothing is created: a test file is made and removed in the nearest existing folder."""
    if path is None:
        return None
    path = Path(path).expanduser()
    if path.is_dir():
        raise ValueError(f"--out {path} is a folder; give the name of a file to write the "
                         f"results to, such as {path / 'results.json'}")
    existing = path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"--out {path}: {existing} is a file, so nothing can be written "
                         "under it; choose another path for the results")
    try:
        fd, probe = tempfile.mkstemp(prefix=".ssl_teach-write-check-", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ValueError(f"--out {path}: cannot write in {existing} ({err.strerror or err}); "
                         "choose a folder you can write to") from None
    return path


def _seconds_per_sample(profile, channels: int = 3, batch: int = 8) -> float:
    """Seconds one training sample of ``profile``'s backbone takes on this CPU (forward and
    backward of a small batch, timed after one warm-up)."""
    from .models import build_backbone

    config = profile.train
    net = build_backbone(in_channels=channels, width=config.width, depth=config.depth,
                         convs_per_block=config.convs_per_block)
    x = torch.rand(batch, channels, profile.image_size, profile.image_size,
                   generator=torch.Generator().manual_seed(0))
    x = x.contiguous(memory_format=torch.channels_last)
    net = net.to(memory_format=torch.channels_last)
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        sum(f.float().mean() for f in net(x)).backward()
        times.append(time.perf_counter() - t0)
    return times[-1] / batch


def _duration(seconds: float) -> str:
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.0f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.0f} hours"
    return f"{max(1, round(seconds / 60))} minutes"


def _name(task) -> str:
    """The name of a task given by name or object (None: the supervised baseline)."""
    return "supervised" if task is None else task if isinstance(task, str) else task.name


def warn_if_slow(profile, device: torch.device, *, tasks=(), samples: int | None = None
                 ) -> None:
    """On a CPU, warn how long ``profile``'s training budget will take (estimated from one
    timed step of its backbone here) when it is :data:`SLOW_BUDGET` samples or more."""
    if device.type != "cpu":
        return
    names = [_name(t) for t in tasks] or [None]
    budgets = [samples if samples is not None else profile.train_config(
        None if n == "supervised" else n).budget_samples for n in names]
    if max(budgets) < SLOW_BUDGET:
        return
    rate = _seconds_per_sample(profile)
    per_model = ", ".join(f"{n or 'each model'} {b:,} samples" for n, b in zip(names, budgets))
    warnings.warn(
        f"the {profile.name} profile on a CPU will take a long time: about "
        f"{_duration(rate * sum(budgets))} of training ({per_model}; estimated from a timed "
        f"step of its backbone on this machine, patch tasks somewhat less); use a GPU "
        "(--device cuda, or DEVICE in the notebook), or the quick profile", stacklevel=3)


def min_images(task) -> int:
    """The fewest unlabeled images ``task`` can train on: Exemplar-CNN cuts one seed patch
    (one surrogate class) from each of ``num_classes`` different images."""
    need = getattr(task, "min_images", None)
    if need is None and getattr(task, "name", None) == "exemplar":
        need = task.num_classes
    return int(need or 1)


def _tasks(tasks):
    """Task objects from names or objects ("supervised" or None stand for the baseline:
    None)."""
    from .pretext import get_task

    return [None if t == "supervised" else get_task(t) if isinstance(t, str) else t
            for t in tasks]


def check_data(data, *, tasks=(), label_sizes=(), needs_labels: bool = False) -> None:
    """Raise a ValueError when ``data`` (a :class:`~ssl_teach.data.Dataset`) cannot serve
    ``tasks``, the labelled-subset sizes ``label_sizes`` (images per class, or "all") or,
    with ``needs_labels``, a probe or the supervised baseline."""
    name, k = data.name, data.num_classes
    if len(data.unlabeled) == 0:
        raise ValueError(f"dataset {name!r} has no unlabeled images to train on")
    for part, images, labels in (("train", data.train_images, data.train_labels),
                                 ("test", data.test_images, data.test_labels)):
        if len(images) != len(labels):
            raise ValueError(f"dataset {name!r}: {len(images)} {part} images but "
                             f"{len(labels)} {part} labels; every image needs one label")
        if len(labels):
            bad = (labels < 0) | (labels >= k)
            if bad.any():
                values = sorted(set(labels[bad].tolist()))
                raise ValueError(
                    f"dataset {name!r}: {int(bad.sum())} {part} labels lie outside 0..{k - 1} "
                    f"(its {k} classes): {values[:5]}; fix the label files, or give the "
                    "dataset the class names of every label")
    tasks = _tasks(tasks)
    needs_labels = needs_labels or bool(label_sizes) or None in tasks
    if needs_labels:
        data.require_labels("the probe and the supervised baseline")
        if k < 2:
            raise ValueError(f"dataset {name!r} has {k} class; the probe needs at least two "
                             "classes (with one, every method is always right)")
    counts = torch.bincount(data.train_labels, minlength=k) if needs_labels else None
    for size in label_sizes:
        if size == "all":
            continue
        if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
            raise ValueError(f"labels per class must be a positive int or 'all', got {size!r}")
        short = [(c, int(n)) for c, n in enumerate(counts.tolist()) if n < size]
        if short:
            c, n = min(short, key=lambda cn: cn[1])
            raise ValueError(
                f"dataset {name!r}: {size} labelled images per class asked for, but "
                f"{len(short)} class(es) have fewer (class {data.class_names[c]!r} has {n}); "
                f"ask for at most {int(counts.min())} per class, or use more labelled "
                "images (a larger n_train / profile, or more images in each class)")
    for task in tasks:
        if task is None:
            continue
        need = getattr(task, "min_image_size", 1)
        if data.image_size < need:
            raise ValueError(
                f"pretext task {task.name!r} needs images of at least {need}x{need} pixels, "
                f"but dataset {name!r} is loaded at {data.image_size}x{data.image_size}: load "
                f"it at a larger size (a profile with image_size >= {need}, or "
                f"load_dataset(..., size={need}))")
        need = min_images(task)
        if len(data.unlabeled) < need:
            raise ValueError(
                f"pretext task {task.name!r} needs at least {need:,} unlabeled images, but "
                f"dataset {name!r} has {len(data.unlabeled):,}: use more images (n_unlabeled, "
                f"--images), or configure the task for fewer (e.g. exemplar's num_classes)")


def preflight(data=None, *, profile=None, tasks=(), label_sizes=(), needs_labels: bool = False,
              device="auto", seeds=(), out=None, samples: int | None = None):
    """Check everything a run needs before it trains; returns the device (None when
    ``device`` is None, which skips that check).

    Without ``data``, the settings: ``device``, ``seeds``, ``out`` (the results file) and,
    with a ``profile`` on a CPU, a warning when its budget (``samples`` per model, else the
    profile's for ``tasks``) will take long. With ``data``, also the data: see
    :func:`check_data` (``label_sizes``: images per class of the labelled subsets, as the
    caller will ask for them).
    """
    dev = None if device is None else check_device(device)
    for seed in seeds:
        check_seed(seed)
    check_out(out)
    if profile is not None and dev is not None:
        warn_if_slow(profile, dev, tasks=tasks, samples=samples)
    if data is not None:
        check_data(data, tasks=tasks, label_sizes=label_sizes, needs_labels=needs_labels)
    return dev
