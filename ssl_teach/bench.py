"""Training speed of every pretext task: ``python -m ssl_teach bench``.

For each task (and the supervised baseline) it trains the profile's model on the profile's
batches for a number of steps, without the checkpoint cache, and reports what the training
loop measured itself:

- throughput: training samples (network inputs with a target) and source images per second;
- the share of the loop spent making batches (``batch / (batch + step)``): cutting, shuffling
  and transforming on the device, or, with DataLoader workers, waiting for the next batch.

On a GPU a short warm-up run comes first, so that the timed run does not include CUDA's
start-up. The numbers depend on the machine: they are printed with the device they came from.
"""

from __future__ import annotations

import dataclasses
import platform
import time

import torch

from .data import load_dataset
from .pretext import TASKS, get_task
from .profiles import get_profile
from .train import SupervisedTask, select_device, train


def bench(tasks=(*TASKS, "supervised"), *, profile: str = "quick", images: int | None = None,
          steps: int | None = None, workers: int | str | None = None, device="auto",
          seed: int = 0) -> dict:
    """Time the training loop of ``tasks`` under ``profile`` on the embedded scenes.

    ``images``: unlabeled (and labelled) scenes to render (default: the profile's counts, at
    most 20,000); ``steps``: training steps per task (default: the profile's whole budget);
    ``workers``: DataLoader workers or "auto" (default: the profile's).
    """
    prof = get_profile(profile)
    dev = select_device(device)
    workers = prof.workers if workers is None else workers
    if steps is not None and steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if images is not None and images < 100:
        raise ValueError(f"images must be at least 100, got {images}")
    n = images or min(prof.n_unlabeled, 20_000)
    data = load_dataset("scenes", size=prof.image_size, n_unlabeled=n,
                        n_train=images or min(prof.n_train, 20_000), n_test=100)
    out = {"profile": prof.name, "device": _device_name(dev), "workers": workers,
           "image_size": prof.image_size, "tasks": {}}
    for name in tasks:
        task = (SupervisedTask(num_classes=data.num_classes) if name == "supervised"
                else get_task(name))
        config = prof.train_config(None if name == "supervised" else name, seed=seed)
        if steps is not None:
            config = dataclasses.replace(config, budget_samples=steps * config.batch_size)
        if dev.type == "cuda":  # CUDA start-up, cuDNN's choices and the allocator's first blocks
            train(task, data, dataclasses.replace(config, budget_samples=10 * config.batch_size),
                  device=dev, cache=False, progress=False, workers=workers)
        t0 = time.perf_counter()
        trained = train(task, data, config, device=dev, cache=False, progress=False,
                        workers=workers)
        wall = time.perf_counter() - t0
        sec = trained.seconds
        samples = trained.history["samples"][-1]
        out["tasks"][name] = {
            "samples": samples, "images": samples / task.samples_per_image,
            "seconds": wall, "samples_per_s": samples / sec["total"],
            "images_per_s": samples / task.samples_per_image / sec["total"],
            "batch_share": sec["batch"] / max(sec["batch"] + sec["step"], 1e-12),
            "loop_seconds": sec,
        }
    return out


def _device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return f"{torch.cuda.get_device_name(dev)} (CUDA)"
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def format_bench(results: dict) -> str:
    """The bench results as a table."""
    lines = [f"{results['profile']} profile, {results['image_size']}x{results['image_size']} "
             f"scenes, {results['device']}, loader workers: {results['workers']}", ""]
    head = (f"{'task':<16}{'samples':>9}{'seconds':>9}{'samples/s':>11}{'images/s':>10}"
            f"{'making batches':>16}")
    lines += [head, "-" * len(head)]
    for name, r in results["tasks"].items():
        lines.append(f"{name:<16}{r['samples']:>9}{r['loop_seconds']['total']:>9.1f}"
                     f"{r['samples_per_s']:>11.0f}{r['images_per_s']:>10.0f}"
                     f"{100 * r['batch_share']:>15.1f}%")
    return "\n".join(lines)
