"""Training speed of every pretext task: ``python -m ssl_teach bench``.

For each task (and the supervised baseline) it trains the profile's model on the profile's
batches for a number of steps, without the checkpoint cache, and reports what the training
loop measured itself:

- throughput in float32 and in the precision "auto" chooses here (bfloat16 autocast on a CPU
  that computes bfloat16 in hardware, CUDA's mixed precision on a GPU), and the speed-up;
- the share of the loop spent making batches (``batch / (batch + step)``): cutting, shuffling
  and transforming on the device, or, with DataLoader workers, waiting for the next batch;
- inference: held-out pretext samples per second through :func:`ssl_teach.train.predict`
  (making the batch included), and how many times a training step's rate that is.

Against the machine's own limit: the achieved GFLOP/s of the supervised step (the FLOPs of
its convolutions and matrix products, forward and backward, counted by
``torch.utils.flop_counter``, divided by the loop's step time) next to the GFLOP/s of large
matrix products that it measures in both precisions on the same device.

On a GPU a short warm-up run comes first, so that the timed run does not include CUDA's
start-up. The numbers depend on the machine: they are printed with the device they came from.
"""

from __future__ import annotations

import dataclasses
import platform
import time

import torch
from torch import nn

from .data import load_dataset
from .preflight import preflight
from .pretext import TASKS
from .profiles import get_profile
from .train import (
    SupervisedTask, _new_model, autocast_dtype, check_precision, cpu_has_native_bfloat16,
    evaluation_data, precision_name, predict, train,
)

INFERENCE_IMAGES = 1000
"""Held-out images (or seeds) behind each inference rate."""


def bench(tasks=(*TASKS, "supervised"), *, profile: str = "quick", images: int | None = None,
          steps: int | None = None, workers: int | str | None = None, device="auto",
          seed: int = 0, precision: str = "auto") -> dict:
    """Time the training loop of ``tasks`` under ``profile`` on the embedded scenes, in
    float32 and in what ``precision`` means on this device (once when that is float32).

    ``images``: unlabeled (and labelled) scenes to render (default: the profile's counts, at
    most 20,000); ``steps``: training steps per task (default: the profile's whole budget);
    ``workers``: DataLoader workers or "auto" (default: the profile's).
    """
    prof = get_profile(profile)
    dev = preflight(profile=prof, device=device, seeds=[seed], tasks=tasks,
                    samples=None if steps is None else steps * prof.train.batch_size)
    workers = prof.workers if workers is None else workers
    if steps is not None and steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if images is not None and images < 100:
        raise ValueError(f"images must be at least 100, got {images}")
    chosen = precision_name(autocast_dtype(check_precision(precision), dev))
    n = images or min(prof.n_unlabeled, 20_000)
    data = load_dataset("scenes", size=prof.image_size, n_unlabeled=n,
                        n_train=images or min(prof.n_train, 20_000), n_test=INFERENCE_IMAGES)
    preflight(data, device=None, tasks=tasks)  # e.g. enough images for exemplar's seeds
    out = {"profile": prof.name, "device": _device_name(dev), "workers": workers,
           "image_size": prof.image_size,
           "precision": {"asked": precision, "chosen": chosen,
                         "native_bfloat16": dev.type == "cpu" and cpu_has_native_bfloat16()},
           "tasks": {}}
    precisions = ["float32"] if chosen == "float32" else ["float32", chosen]
    for name in tasks:
        task = (SupervisedTask(num_classes=data.num_classes) if name == "supervised"
                else prof.task(name))
        config = prof.train_config(None if name == "supervised" else name, seed=seed)
        if steps is not None:
            config = dataclasses.replace(config, budget_samples=steps * config.batch_size)
        # "auto" as the profile means it for this task (the quick profile keeps SimCLR in
        # float32), else the precision asked for
        asked = config.precision if precision == "auto" else precision
        task_chosen = precision_name(autocast_dtype(asked, dev))
        runs = {}
        for prec in dict.fromkeys(["float32", task_chosen]):
            # the precision asked for, which resolves to ``prec`` here
            cfg = dataclasses.replace(config, precision="float32" if prec == "float32"
                                      else asked)
            runs[prec] = _time_training(task, data, cfg, dev, workers)
        r = out["tasks"][name] = {**runs[task_chosen], "precision": task_chosen,
                                  "float32": runs["float32"],
                                  "speedup": runs[task_chosen]["samples_per_s"]
                                  / runs["float32"]["samples_per_s"]}
        r["inference_per_s"] = _inference_rate(r.pop("trained"), data, dev)
        r["float32"].pop("trained", None)
        r["inference_vs_training"] = r["inference_per_s"] / r["samples_per_s"]
    if "supervised" in out["tasks"]:
        sup = out["tasks"]["supervised"]
        config = prof.train_config(None, seed=seed)
        flops = step_flops(SupervisedTask(num_classes=data.num_classes), data, config)
        out["supervised_step"] = {"gflop_per_sample": flops / 1e9}
        for prec in precisions:
            run = sup if prec == chosen else sup["float32"]
            out["supervised_step"][prec] = (flops * run["samples"]
                                            / run["loop_seconds"]["step"] / 1e9)
    out["matmul"] = {name: matmul_gflops(dtype, dev) for name, dtype in
                     (("float32", torch.float32), ("bfloat16", torch.bfloat16))}
    return out


def _time_training(task, data, config, dev, workers) -> dict:
    """Train once without the cache: throughput and the loop's own timings."""
    if dev.type == "cuda":  # CUDA start-up, cuDNN's choices and the allocator's first blocks
        train(task, data, dataclasses.replace(config, budget_samples=10 * config.batch_size),
              device=dev, cache=False, progress=False, workers=workers)
    t0 = time.perf_counter()
    trained = train(task, data, config, device=dev, cache=False, progress=False,
                    workers=workers)
    wall = time.perf_counter() - t0
    sec = trained.seconds
    samples = trained.history["samples"][-1]
    return {
        "samples": samples, "images": samples / task.samples_per_image,
        "seconds": wall, "samples_per_s": samples / sec["total"],
        "images_per_s": samples / task.samples_per_image / sec["total"],
        "batch_share": sec["batch"] / max(sec["batch"] + sec["step"], 1e-12),
        "loop_seconds": sec, "trained": trained,
    }


def _inference_rate(trained, data, dev) -> float:
    """Held-out pretext samples per second through ``predict`` (batches made included), in
    the model's own precision; the second of two passes (the first warms up)."""
    images, labels = evaluation_data(trained.task, data)
    images = images[:INFERENCE_IMAGES]
    labels = None if labels is None else labels[:INFERENCE_IMAGES]
    predict(trained, images[:64], None if labels is None else labels[:64], device=dev)
    _sync(dev)
    t0 = time.perf_counter()
    logits, _, _ = predict(trained, images, labels, device=dev)
    _sync(dev)
    return len(logits) / (time.perf_counter() - t0)


def step_flops(task, data, config, *, batch: int = 16) -> float:
    """FLOPs per sample of one training step of ``task``'s model (forward and backward of its
    convolutions and matrix products, as ``torch.utils.flop_counter`` counts them; the
    memory-bound layers — BatchNorm, ReLU, pooling — and the update are not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    images, labels = task.training_data(data) if hasattr(task, "training_data") else (
        data.unlabeled, None)
    g = torch.Generator().manual_seed(0)
    if labels is None:
        inputs, targets = task.make_batch(images[:batch], generator=g)
    else:
        inputs, targets = task.make_batch(images[:batch], generator=g, labels=labels[:batch])
    model = _new_model(task, data, config).train()
    with FlopCounterMode(display=False) as counter:
        nn.functional.cross_entropy(model(inputs), targets).backward()
    return counter.get_total_flops() / len(targets)


def matmul_gflops(dtype: torch.dtype, device, *, size: int = 2048, seconds: float = 1.0
                  ) -> dict:
    """GFLOP/s of square matrix products in ``dtype`` on ``device``: the practical limit of
    dense arithmetic there. {"size", "gflops"}: ``size`` x ``size`` products, smaller (down to
    256) where one product would take more than half of ``seconds`` (bfloat16 emulated on a
    CPU without it is that slow), repeated for about ``seconds``."""
    dev = torch.device(device)
    g = torch.Generator().manual_seed(0)
    n = 256
    while True:
        a = torch.randn(n, n, generator=g).to(dev, dtype)
        b = torch.randn(n, n, generator=g).to(dev, dtype)
        a @ b  # warm-up (library start-up, workspace)
        _sync(dev)
        t0 = time.perf_counter()
        a @ b
        _sync(dev)
        once = time.perf_counter() - t0
        if n >= size or once * 8 > seconds / 2:  # the next size takes about 8 times longer
            break
        n *= 2
    reps = max(1, int(seconds / max(once, 1e-6)))
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync(dev)
    return {"size": n, "gflops": 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9}


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return f"{torch.cuda.get_device_name(dev)} (CUDA)"
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def format_bench(results: dict) -> str:
    """The bench results as tables: training and inference speed per task, then the
    supervised step against the matrix-product limit."""
    prec = results.get("precision", {"chosen": "float32", "asked": "auto"})
    chosen = prec["chosen"]
    lines = [f"{results['profile']} profile, {results['image_size']}x{results['image_size']} "
             f"scenes, {results['device']}, loader workers: {results['workers']}",
             f"precision {prec['asked']!r} chose {chosen}"
             + (f" (native bfloat16 on this CPU: {'yes' if prec['native_bfloat16'] else 'no'})"
                if "native_bfloat16" in prec and "CPU" in results["device"] else ""), ""]
    col = f"{chosen}/s" if prec["asked"] == chosen else f"{prec['asked']}: {chosen}/s"
    head = (f"{'task':<16}{'samples':>9}{'float32/s':>11}{col:>18}{'speed-up':>10}"
            f"{'infer/s':>10}{'x train':>9}{'making batches':>16}")
    lines += ["training samples per second; inference: held-out samples per second "
              f"({chosen})", head, "-" * len(head)]
    own = []  # tasks whose profile keeps another precision than the one chosen
    for name, r in results["tasks"].items():
        f32 = r.get("float32", r)
        mark = "*" if r.get("precision", chosen) != chosen else ""
        own += [f"{name}: {r['precision']}"] if mark else []
        lines.append(f"{name:<16}{r['samples']:>9}{f32['samples_per_s']:>11.0f}"
                     f"{r['samples_per_s']:>17.0f}{mark or ' '}{r.get('speedup', 1.0):>9.2f}x"
                     f"{r.get('inference_per_s', float('nan')):>10.0f}"
                     f"{r.get('inference_vs_training', float('nan')):>8.1f}x"
                     f"{100 * r['batch_share']:>15.1f}%")
    if own:
        lines.append(f"* the profile keeps this task in its own precision ({', '.join(own)})")
    mm = results.get("matmul")
    if mm:
        lines += ["", "matrix products (the limit): " + ", ".join(
            f"{name} {_rate(m['gflops'])} GFLOP/s ({m['size']}x{m['size']})"
            for name, m in mm.items())]
    step = results.get("supervised_step")
    if step and mm:
        parts = [f"{name} {_rate(step[name])} GFLOP/s = "
                 f"{100 * step[name] / mm[name]['gflops']:.0f}%"
                 f" of the {name} matrix products" for name in mm if name in step]
        lines.append(f"supervised step ({step['gflop_per_sample']:.3f} GFLOP per sample, "
                     "forward + backward): " + "; ".join(parts))
    return "\n".join(lines)


def _rate(x: float) -> str:
    """A rate with three significant digits at most (0.412, 17.3, 173)."""
    return f"{x:.0f}" if x >= 100 else f"{x:.3g}"
