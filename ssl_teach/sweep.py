"""Longer pretraining: does a task's feature quality keep growing with its budget?

:func:`sweep` trains every pretext task at 1x, 2x, 4x and 8x its budget in the profile (each a
checkpoint of its own), and records per budget the held-out pretext accuracy, the linear probe
(best block chosen on validation) and the accuracy of fine-tuning with 16 labels per class
(:func:`ssl_teach.finetune.finetune`, over several labelled subsets) -- next to fine-tuning
from scratch with the same labels and recipe, which no pretraining budget changes.
``python -m ssl_teach sweep`` calls it; ``--record`` commits its output to
``ssl_teach/results/`` (see :mod:`ssl_teach.results`).
"""

from __future__ import annotations

import dataclasses
import time

from .experiment import baselines, pretrain, probe_cached, setup
from .finetune import SCRATCH, finetune_label_efficiency, recipe
from .pretext import TASKS
from .train import pretext_accuracy

MULTIPLIERS = (1, 2, 4, 8)
"""Pretraining budgets of the sweep, as multiples of each task's budget in the profile."""

SWEEP_LABELS = 16
"""Labelled images per class of the sweep's fine-tuning runs."""

EVAL_IMAGES = 1000
"""Held-out images (or Exemplar-CNN seeds) behind each pretext accuracy."""


def scaled_profile(profile, task_name: str, multiplier: int):
    """``profile`` with ``task_name``'s pretraining budget multiplied by ``multiplier``."""
    if isinstance(multiplier, bool) or not isinstance(multiplier, int) or multiplier < 1:
        raise ValueError(f"budget multipliers must be positive integers, got {multiplier!r}")
    budget = profile.train_config(task_name).budget_samples * multiplier
    return dataclasses.replace(profile, task_budget={**profile.task_budget, task_name: budget})


def sweep(tasks=tuple(TASKS), *, profile="quick", dataset="scenes", multipliers=MULTIPLIERS,
          seeds=(0, 1, 2), size: int = SWEEP_LABELS, device="auto", progress: bool = True,
          train_seed: int = 0, data_dir=None, download: bool = False,
          workers: int | None = None) -> dict:
    """Train every task at every budget multiplier (or load it from the checkpoint cache);
    probe it and fine-tune it with ``size`` labels per class over ``seeds``. Returns a JSON-able
    dict: {"runs": {task: [{"multiplier", "budget_samples", "pretext", "probe", "finetune"},
    ...]}, "scratch": fine-tuning from scratch, ...}."""
    for t in tasks:
        if t not in TASKS:
            raise ValueError(f"unknown pretext task {t!r}; choose from: {', '.join(TASKS)}")
    if not multipliers:
        raise ValueError("give at least one budget multiplier (e.g. 1,2,4,8)")
    for m in multipliers:
        if isinstance(m, bool) or not isinstance(m, int) or m < 1:
            raise ValueError(f"budget multipliers must be positive integers, got {m!r}")
    if len(seeds) < 1:
        raise ValueError("give at least one seed for the labelled subsets")
    t0 = time.perf_counter()
    prof, data = setup(profile, dataset, seed=0, data_dir=data_dir, download=download,
                       device=device, tasks=list(tasks), label_sizes=[size],
                       needs_labels=True, train_seeds=[train_seed, *seeds])
    config = recipe(prof)
    seconds = {"data": time.perf_counter() - t0}
    t0 = time.perf_counter()
    random = baselines(data, prof, seed=train_seed, device=device, progress=progress,
                       workers=workers)[SCRATCH]
    scratch = finetune_label_efficiency(random, data, sizes=[size], seeds=seeds,
                                        config=config, device=device, progress=progress,
                                        name="from scratch")[str(size)]
    seconds["scratch"] = time.perf_counter() - t0
    runs = {}
    for name in tasks:
        task = prof.task(name)  # with the profile's options
        rows = []
        for m in multipliers:
            t0 = time.perf_counter()
            scaled = scaled_profile(prof, name, m)
            model = pretrain(task, data, scaled, seed=train_seed, device=device,
                             progress=progress, workers=workers)
            probe = probe_cached(model, data, device=device)
            ft = finetune_label_efficiency(model, data, sizes=[size], seeds=seeds,
                                           config=config, device=device, progress=progress,
                                           name=f"{name} x{m}")[str(size)]
            best = probe.best_block
            rows.append({
                "multiplier": m,
                "budget_samples": scaled.train_config(name).budget_samples,
                "pretext": {"accuracy": pretext_accuracy(model, data, device=device,
                                                         limit=EVAL_IMAGES),
                            "chance": task.chance},
                "probe": {"best_block": best, "linear": probe.linear[best],
                          "val": probe.val[best], "per_block": probe.linear},
                "finetune": ft,
                "train_seconds": model.seconds.get("total", 0.0),
            })
            seconds[f"{name}_x{m}"] = time.perf_counter() - t0
        runs[name] = rows
    return {"profile": prof.name, "dataset": dataset, "tasks": list(tasks),
            "multipliers": list(multipliers), "seeds": list(seeds), "size": size,
            "train_seed": train_seed, "finetune_recipe": dataclasses.asdict(config),
            "scratch": scratch, "runs": runs, "seconds": seconds}


def format_sweep(results: dict) -> str:
    """The sweep as a plain-text table: one row per task and budget."""
    size = results["size"]
    s = results["scratch"]
    lines = [f"sweep on {results['dataset']} ({results['profile']} profile): pretraining "
             f"budget x{', x'.join(map(str, results['multipliers']))}; fine-tuned with "
             f"{size} labels/class over seeds {results['seeds']}", "",
             f"from scratch, {size} labels/class: {100 * s['mean']:.1f} ± {100 * s['std']:.1f}%",
             ""]
    head = (f"{'task':<16}{'budget':>7}{'samples':>11}{'pretext':>9}{'probe':>8}{'block':>8}"
            f"{'fine-tuned':>16}{'vs scratch':>12}")
    lines += [head, "-" * len(head)]
    for name, rows in results["runs"].items():
        for r in rows:
            ft = r["finetune"]
            lines.append(
                f"{name:<16}{'x' + str(r['multiplier']):>7}{r['budget_samples']:>11,}"
                f"{100 * r['pretext']['accuracy']:>8.1f}%{100 * r['probe']['linear']:>7.1f}%"
                f"{r['probe']['best_block']:>8}"
                f"{100 * ft['mean']:>9.1f} ± {100 * ft['std']:<4.1f}%"
                f"{100 * (ft['mean'] - s['mean']):>+11.1f}")
    return "\n".join(lines)
