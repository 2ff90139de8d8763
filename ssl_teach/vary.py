"""What one setting of a pretext task does to its features.

:func:`vary` trains a task once per value of one of its options (the others as the profile sets
them), with each of several training seeds, and records per value the held-out pretext accuracy
and the linear probe (best block chosen on validation), mean and spread over the seeds, next to
the random-init network's probe with the same seeds. One seed cannot separate two settings
whose probes lie a few points apart: the spread over seeds says which differences are real.
``python -m ssl_teach vary`` calls it; ``--record`` commits its output to
``ssl_teach/results/`` as ``vary-TASK-PROFILE-DATASET.json`` (see :mod:`ssl_teach.results`).
Notebook 06 reads SimCLR's record: its temperature and its batch (images per group).
"""

from __future__ import annotations

import dataclasses
import time

from .experiment import pretrain, probe_cached, setup
from .finetune import difference, summary
from .pretext import TASKS, task_class
from .sweep import EVAL_IMAGES
from .train import SupervisedTask, pretext_accuracy, untrained

TRAIN_SEEDS = (0, 1, 2)
"""Training seeds of every setting."""


def parse_value(text: str):
    """A setting's value from the command line: an int, a float, true/false, or the text."""
    t = text.strip()
    if t.lower() in ("true", "false"):
        return t.lower() == "true"
    for kind in (int, float):
        try:
            return kind(t)
        except ValueError:
            pass
    return t


def parse_options(items) -> dict[str, list]:
    """``["temperature=0.1,0.5", "group=16"]`` -> {"temperature": [0.1, 0.5], "group": [16]}."""
    out: dict[str, list] = {}
    for item in items or ():
        name, sep, values = item.partition("=")
        if not sep or not name.strip() or not values.strip():
            raise ValueError(f"--option takes NAME=VALUE[,VALUE...], e.g. temperature=0.1,0.5; "
                             f"got {item!r}")
        out.setdefault(name.strip(), []).extend(
            parse_value(v) for v in values.split(",") if v.strip())
    return out


def _check(task: str, options: dict, profile) -> dict[str, list]:
    """The values to train per option, the profile's own value added where missing (in sorted
    place for numbers); a ValueError names what is wrong before anything trains."""
    if task not in TASKS:
        raise ValueError(f"unknown pretext task {task!r}; choose from: {', '.join(TASKS)}")
    if not options:
        raise ValueError("give at least one option to vary, e.g. temperature=0.1,0.5")
    fields = {f.name for f in dataclasses.fields(task_class(task))}
    default = profile.task(task).options()
    out = {}
    for name, values in options.items():
        if name not in fields:
            raise ValueError(f"{task} has no option {name!r}; its options: "
                             f"{', '.join(sorted(fields))}")
        if not values:
            raise ValueError(f"give at least one value for {name}")
        for v in values:
            profile.task(task, **{name: v})  # the task's own check of the value
        values = list(dict.fromkeys(values))
        if default[name] not in values:
            values.append(default[name])
            if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                values.sort()
        out[name] = values
    return out


def vary(task: str, options: dict, *, profile="quick", dataset: str = "scenes",
         train_seeds=TRAIN_SEEDS, device="auto", progress: bool = True, data_dir=None,
         download: bool = False, workers: int | None = None) -> dict:
    """Train ``task`` with every value in ``options`` ({option: [values]}, one option varied
    at a time; the profile's own value is always included) and every training seed, or load it
    from the checkpoint cache; probe each. Returns a JSON-able dict: {"runs": {option: [{"value",
    "default", "pretext": {"mean", "std", "runs"}, "chance", "probe": {...}, "blocks",
    "train_seconds"}, ...]}, "random": the random-init probe over the same seeds, ...}."""
    from .profiles import get_profile

    prof = get_profile(profile) if isinstance(profile, str) else profile
    options = _check(task, options, prof)
    train_seeds = list(train_seeds)
    if not train_seeds or len(set(train_seeds)) != len(train_seeds):
        raise ValueError(f"give one or more different training seeds, got {train_seeds}")
    t0 = time.perf_counter()
    prof, data = setup(prof, dataset, seed=0, data_dir=data_dir, download=download,
                       device=device, tasks=[task], needs_labels=True, train_seeds=train_seeds)
    seconds = {"data": time.perf_counter() - t0}
    default = prof.task(task).options()
    t0 = time.perf_counter()
    random = []
    for s in train_seeds:
        base = untrained(SupervisedTask(num_classes=data.num_classes), data,
                         prof.train_config(None, seed=s))
        p = probe_cached(base, data, device=device)
        random.append(p.linear[p.best_block])
    seconds["random"] = time.perf_counter() - t0
    runs = {}
    for name, values in options.items():
        rows = []
        for value in values:
            t0 = time.perf_counter()
            variant = prof.task(task, **{name: value})
            pretext, probes, blocks, train_seconds = [], [], [], []
            for s in train_seeds:
                model = pretrain(variant, data, prof, seed=s, device=device, progress=progress,
                                 workers=workers)
                pretext.append(pretext_accuracy(model, data, device=device, limit=EVAL_IMAGES))
                p = probe_cached(model, data, device=device)
                probes.append(p.linear[p.best_block])
                blocks.append(p.best_block)
                train_seconds.append(model.seconds.get("total", 0.0))
            rows.append({"value": value, "default": value == default[name],
                         "pretext": summary(pretext), "chance": variant.chance,
                         "probe": summary(probes), "blocks": blocks,
                         "train_seconds": sum(train_seconds) / len(train_seconds)})
            seconds[f"{name}={value}"] = time.perf_counter() - t0
        runs[name] = rows
    return {"profile": prof.name, "dataset": dataset, "task": task,
            "options": {k: list(v) for k, v in options.items()},
            "default": {k: default[k] for k in options}, "train_seeds": train_seeds,
            "random": summary(random), "runs": runs, "seconds": seconds}


def differs(row: dict, base: dict) -> bool:
    """Whether a setting's mean probe differs from ``base``'s by more than the spread of the
    difference (the course's rule, as in :func:`ssl_teach.finetune.difference`)."""
    gap, spread = difference(row["probe"], base["probe"])
    return abs(gap) > spread


def format_vary(results: dict) -> str:
    """The settings as a plain-text table: one row per option and value, the probe's mean ±
    std over the training seeds and its difference from the profile's setting."""
    r = results["random"]
    lines = [f"{results['task']} on {results['dataset']} ({results['profile']} profile), "
             f"training seeds {results['train_seeds']}; random init probes "
             f"{100 * r['mean']:.1f} ± {100 * r['std']:.1f}%", ""]
    head = (f"{'option':<14}{'value':>10}{'pretext (chance)':>20}{'probe':>17}"
            f"{'vs default':>13}  beyond the spread?")
    lines += [head, "-" * len(head)]
    for name, rows in results["runs"].items():
        base = next(row for row in rows if row["default"])
        for row in rows:
            value = f"{row['value']}{'*' if row['default'] else ''}"
            pre, pr = row["pretext"], row["probe"]
            verdict = "(the profile's)" if row["default"] else (
                "yes" if differs(row, base) else "no")
            lines.append(
                f"{name:<14}{value:>10}{100 * pre['mean']:>10.1f}% ({100 * row['chance']:.1f}%)"
                f"{100 * pr['mean']:>10.1f} ± {100 * pr['std']:<4.1f}%"
                f"{100 * (pr['mean'] - base['probe']['mean']):>+12.1f}  {verdict}")
    lines.append("* the profile's setting")
    return "\n".join(lines)
