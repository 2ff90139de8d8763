"""All pretext tasks side by side: same backbone, same budget, same probe, same fine-tuning.

:func:`compare` trains every task (or loads it from the checkpoint cache) and the two
baselines, probes every block of every method, and asks the question the course is about:
**does pretraining pay off when labels are few?** With 4, 16, 64, 256 and all labels per
class, over several seeds of the labelled subset (mean ± std), it measures for every method

- the **linear probe** of frozen features (block and L2 chosen on a validation part of each
  labelled subset, :func:`ssl_teach.probe.select_probe`), and
- **fine-tuning** (:func:`ssl_teach.finetune.finetune`): the whole backbone trained with a
  fresh linear head by one recipe, the same step budget for every initialisation. From the
  random initialisation ("random") this *is* training from scratch; from the supervised
  baseline it is the reference that saw every label during pretraining.

Per method it then states the label count up to which fine-tuning from it beats fine-tuning
from scratch by more than the spread (:func:`pretraining_helps`). Nothing is chosen on the test
split. ``python -m ssl_teach compare`` and ``05_comparing_pretext_tasks`` both call it.

All of that trains each method with one seed. :func:`seed_spread` (``compare --train-seeds
0,1,2``) asks how much that seed decides: every task and both baselines trained with each of
several training seeds, the pretext accuracy and the best-block probe of each, their mean ± std,
and which pairs of tasks that spread can rank (:func:`rank_tasks`).
"""

from __future__ import annotations

import dataclasses
import time

import torch

from .cache import cached_json
from .data import Dataset
from .experiment import PROBE_VERSION, baselines, pretrain, probe_cached, setup
from .finetune import (
    SCRATCH, FinetuneConfig, counts_that_help, difference, finetune_label_efficiency,
    pretraining_helps, recipe, summary,
)
from .pretext import TASKS
from .probe import L2_GRID, extract_features, labelled_subset, select_probe
from .train import data_fingerprint, pretext_accuracy, select_device

__all__ = ["EVAL_IMAGES", "LABELS_PER_CLASS", "SCRATCH", "TRAIN_SEEDS", "check_sizes", "compare",
           "format_compare", "format_seed_spread", "label_efficiency", "labelled_subset",
           "pretraining_helps", "rank_tasks", "seed_spread", "subset_probe"]

LABELS_PER_CLASS = (4, 16, 64, 256, "all")
"""Labelled images per class in the label-efficiency tables ("all": the whole train split)."""

EVAL_IMAGES = 1000
"""Held-out images (or Exemplar-CNN seeds) behind each pretext accuracy in the comparison."""


def check_sizes(sizes) -> list:
    """Label counts per class as given (positive ints or "all", in increasing order), or a
    ValueError that says what is wrong."""
    out = []
    for s in sizes:
        if isinstance(s, str) and s != "all":
            try:
                s = int(s)
            except ValueError:
                raise ValueError(f"labels per class must be positive integers or 'all', got "
                                 f"{s!r}") from None
        if s != "all" and (isinstance(s, bool) or not isinstance(s, int) or s < 1):
            raise ValueError(f"labels per class must be positive integers or 'all', got {s!r}")
        out.append(s)
    numeric = [s for s in out if s != "all"]
    if not out or numeric != sorted(set(numeric)) or ("all" in out and out[-1] != "all"):
        raise ValueError(f"give label counts per class in increasing order, 'all' last, without "
                         f"repeats (e.g. 4,16,64,256,all), got {list(sizes)}")
    return out


def subset_probe(train_f: dict, train_y, test_f: dict, test_y, *, num_classes: int,
                 seed: int = 0) -> dict:
    """Linear probe on a (small) labelled subset, block and L2 chosen on a validation part of
    the subset (:func:`ssl_teach.probe.select_probe`): {"accuracy", "block", "l2", "val"}."""
    return select_probe(train_f, train_y, test_f, test_y, num_classes=num_classes, seed=seed)


LABEL_EFFICIENCY_VERSION = 1
"""Bumped whenever :func:`label_efficiency` changes what it measures (part of its cache key)."""


def label_efficiency(trained, dataset: Dataset, *, sizes=LABELS_PER_CLASS, seeds=(0, 1, 2),
                     device="auto", all_labels=None, cache: bool = True) -> dict:
    """Linear probe accuracy with few labels: {size: {"mean", "std", "runs", "blocks",
    "l2"}}, one labelled subset per seed, block and L2 chosen within each subset.

    ``all_labels``: the method's :class:`~ssl_teach.probe.ProbeResult` on the whole train split,
    when already known: its best block (chosen on validation) is the "all" entry, one run (with
    every label there is one subset, and the probe is deterministic).

    The subsets' probes are cached under the cache folder by what they depend on (the
    network's weights, the task, the dataset's images and labels, the sizes and seeds, the L2
    grid); ``cache=False`` neither reads nor writes."""
    measured = [s for s in sizes if not (s == "all" and all_labels is not None)]

    def compute() -> dict:
        return _subset_probes(trained, dataset, sizes=measured, seeds=seeds, device=device)

    parts = (LABEL_EFFICIENCY_VERSION, PROBE_VERSION, L2_GRID, trained.model, trained.task,
             data_fingerprint(dataset), [str(s) for s in measured], list(seeds),
             select_device(device).type)
    runs = cached_json("label_efficiency", parts, compute, cache=cache) if measured else {}
    out = {}
    for size in sizes:
        if size == "all" and all_labels is not None:
            best = all_labels.best_block
            out["all"] = {**summary([all_labels.linear[best]]), "blocks": [best],
                          "l2": [all_labels.l2[best]]}
        else:
            out[str(size)] = runs[str(size)]
    return out


def _subset_probes(trained, dataset: Dataset, *, sizes, seeds, device) -> dict:
    """The probes of :func:`label_efficiency`'s labelled subsets: {str(size): {"mean", "std",
    "runs", "blocks", "l2"}}; "all" here is the whole train split, probed once."""
    prepare = trained.task.probe_inputs
    subsets = {}  # (size, seed) -> indices into the train split
    for size in sizes:
        for seed in (seeds if size != "all" else seeds[:1]):
            subsets[size, seed] = labelled_subset(dataset.train_labels, size, seed=seed,
                                                  num_classes=dataset.num_classes)
    # features of the labelled images that some subset uses, not of all of them
    used = torch.cat(list(subsets.values())).unique()
    position = torch.full((len(dataset.train_labels),), -1, dtype=torch.long)
    position[used] = torch.arange(len(used))
    train_f = extract_features(trained.backbone, dataset.train_images[used], prepare=prepare,
                               device=device)
    test_f = extract_features(trained.backbone, dataset.test_images, prepare=prepare,
                              device=device)
    out = {}
    for size in sizes:
        runs = [subset_probe({b: f[position[idx]] for b, f in train_f.items()},
                             dataset.train_labels[idx], test_f, dataset.test_labels,
                             num_classes=dataset.num_classes, seed=seed)
                for (s, seed), idx in subsets.items() if s == size]
        out[str(size)] = {**summary([r["accuracy"] for r in runs]),
                          "blocks": [r["block"] for r in runs], "l2": [r["l2"] for r in runs]}
    return out


def compare(tasks=tuple(TASKS), *, profile="quick", dataset="scenes", seeds=(0, 1, 2),
            sizes=LABELS_PER_CLASS, device="auto", progress: bool = True, train_seed: int = 0,
            data_dir=None, download: bool = False, workers: int | None = None,
            finetune: FinetuneConfig | None = None, finetune_sizes=None) -> dict:
    """Train (or load) every task and both baselines; probe them all the same way; measure
    probe and fine-tuning accuracy with few labels over ``seeds`` of the labelled subsets.
    ``finetune``: the recipe (default: the profile's, :func:`ssl_teach.finetune.recipe`);
    ``finetune_sizes``: the label counts fine-tuned (default: ``sizes``; () skips fine-tuning,
    whose runs cost as much as a pretext task each, e.g. where a notebook must stay short).
    Returns a JSON-able dict (see :func:`format_compare`)."""
    if len(seeds) < 1:
        raise ValueError("give at least one seed for the labelled subsets")
    for t in tasks:
        if t not in TASKS:
            raise ValueError(f"unknown pretext task {t!r}; choose from: {', '.join(TASKS)}")
    sizes = check_sizes(sizes)
    finetune_sizes = sizes if finetune_sizes is None else check_sizes(finetune_sizes) \
        if finetune_sizes else []
    seconds = {}
    t0 = time.perf_counter()
    # the pre-flight check: what would fail after training fails here
    prof, data = setup(profile, dataset, seed=0, data_dir=data_dir, download=download,
                       device=device, tasks=[*tasks, None], label_sizes=sizes,
                       needs_labels=True, train_seeds=[train_seed, *seeds])
    config = finetune or recipe(prof)
    seconds["data"] = time.perf_counter() - t0
    methods, info = {}, {}
    for name in tasks:
        t0 = time.perf_counter()
        task = prof.task(name)  # with the profile's options (the full profile's: the papers')
        model = pretrain(task, data, prof, seed=train_seed, device=device, progress=progress,
                         workers=workers)
        methods[name] = model
        acc = pretext_accuracy(model, data, device=device, limit=EVAL_IMAGES)
        info[name] = {"pretext": {"accuracy": acc, "chance": task.chance}}
        seconds[f"train_{name}"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for name, model in baselines(data, prof, seed=train_seed, device=device,
                                 progress=progress, workers=workers).items():
        methods[name] = model
        info[name] = {"pretext": None}
    seconds["train_baselines"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    probes = {}
    for name, model in methods.items():
        r = probes[name] = probe_cached(model, data, device=device)
        samples = model.history["samples"][-1] if model.history["samples"] else 0
        images = len(model.task.training_data(data)[0]) if hasattr(
            model.task, "training_data") else len(data.unlabeled)
        per_epoch = images * model.task.samples_per_image
        info[name].update({
            "linear": r.linear, "knn": r.knn, "val": r.val, "l2": r.l2,
            "best_block": r.best_block,
            "cost": {"train_seconds": model.seconds.get("total", 0.0), "samples_seen": samples,
                     "epochs": samples / per_epoch if samples else 0.0,
                     "seconds_per_epoch": (model.seconds.get("total", 0.0) * per_epoch / samples
                                           if samples else 0.0)},
        })
    seconds["probe"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    for name, model in methods.items():
        info[name]["label_efficiency"] = label_efficiency(
            model, data, sizes=sizes, seeds=seeds, device=device, all_labels=probes[name])
    seconds["label_efficiency"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    for name, model in methods.items():
        ft = finetune_label_efficiency(model, data, sizes=finetune_sizes, seeds=seeds,
                                       config=config,
                                       device=device, progress=progress,
                                       name="from scratch" if name == SCRATCH else name)
        info[name]["finetune"] = ft
    seconds["finetune"] = time.perf_counter() - t0
    helps = pretraining_helps({n: m["finetune"] for n, m in info.items()}, finetune_sizes)
    return {"profile": prof.name, "dataset": dataset, "tasks": list(tasks),
            "seeds": list(seeds), "train_seed": train_seed,
            "sizes": [str(s) for s in sizes], "finetune_sizes": [str(s) for s in finetune_sizes],
            "labels_per_class_all": len(data.train_labels) // data.num_classes,
            "finetune_recipe": dataclasses.asdict(config), "methods": info,
            "pretraining_helps": helps,
            # from scratch = fine-tuned from the random initialisation (the plots' name)
            "scratch_supervised": info[SCRATCH]["finetune"], "seconds": seconds}


TRAIN_SEEDS = (0, 1, 2)
"""Training seeds of ``compare --train-seeds`` (model initialisation, batch order, pretext
parameters)."""


def rank_tasks(methods: dict, tasks) -> list[dict]:
    """Every pair of tasks by their best-block probe over training seeds, the better first:
    [{"pair": [better, worse], "difference", "spread", "ranked"}]. ``ranked`` is False where
    the difference is within the spread: those two cannot be ordered by this measurement."""
    out = []
    tasks = list(tasks)
    for i, a in enumerate(tasks):
        for b in tasks[i + 1:]:
            diff, spread = difference(methods[a]["probe"], methods[b]["probe"])
            pair = [a, b] if diff >= 0 else [b, a]
            out.append({"pair": pair, "difference": abs(diff), "spread": spread,
                        "ranked": abs(diff) > spread})
    return out


def seed_spread(tasks=tuple(TASKS), *, profile="quick", dataset="scenes",
                train_seeds=TRAIN_SEEDS, device="auto", progress: bool = True, data_dir=None,
                download: bool = False, workers: int | None = None) -> dict:
    """How much do the results move with the training seed? Every task and both baselines
    trained (or loaded) with each of ``train_seeds``; for each, the held-out pretext accuracy
    and the linear probe of the best block (block and L2 chosen on validation, all labels);
    per method the mean ± std over the seeds, and which pairs of tasks the spread can rank
    (:func:`rank_tasks`). ``python -m ssl_teach compare --train-seeds 0,1,2``."""
    train_seeds = [int(s) for s in train_seeds]
    if len(set(train_seeds)) < 3 or len(set(train_seeds)) != len(train_seeds):
        raise ValueError(f"give at least three different training seeds to measure a spread "
                         f"(e.g. 0,1,2), got {train_seeds}")
    for t in tasks:
        if t not in TASKS:
            raise ValueError(f"unknown pretext task {t!r}; choose from: {', '.join(TASKS)}")
    t0 = time.perf_counter()
    prof, data = setup(profile, dataset, seed=0, data_dir=data_dir, download=download,
                       device=device, tasks=[*tasks, None], needs_labels=True,
                       train_seeds=train_seeds)
    runs: dict[str, list[dict]] = {}
    for seed in train_seeds:
        for name in tasks:
            model = pretrain(prof.task(name), data, prof, seed=seed, device=device,
                             progress=progress, workers=workers)
            r = probe_cached(model, data, device=device)
            runs.setdefault(name, []).append({
                "seed": seed, "probe": r.best_linear, "block": r.best_block,
                "pretext": pretext_accuracy(model, data, device=device, limit=EVAL_IMAGES)})
        for name, model in baselines(data, prof, seed=seed, device=device, progress=progress,
                                     workers=workers).items():
            r = probe_cached(model, data, device=device)
            runs.setdefault(name, []).append({"seed": seed, "probe": r.best_linear,
                                              "block": r.best_block, "pretext": None})
    methods = {}
    for name, rs in runs.items():
        methods[name] = {"probe": summary([r["probe"] for r in rs]),
                         "blocks": [r["block"] for r in rs],
                         "pretext": (summary([r["pretext"] for r in rs])
                                     if rs[0]["pretext"] is not None else None)}
    return {"profile": prof.name, "dataset": dataset, "tasks": list(tasks),
            "train_seeds": train_seeds, "methods": methods,
            "ranking": rank_tasks(methods, tasks),
            "seconds": {"total": time.perf_counter() - t0}}


def format_seed_spread(results: dict) -> str:
    """The spread over training seeds as plain text: per method the best-block probe and the
    pretext accuracy (mean ± std), then which tasks the spread can rank."""
    seeds = results["train_seeds"]
    lines = [f"spread over training seeds {seeds} on {results['dataset']} ({results['profile']} "
             f"profile; best block chosen on validation, all labels)", ""]
    head = f"{'method':<16}{'probe':>16}{'blocks':>26}{'pretext':>16}"
    lines += [head, "-" * len(head)]
    for name, m in results["methods"].items():
        pre = m["pretext"]
        lines.append(f"{name:<16}{_cell(m['probe']):>16}{', '.join(m['blocks']):>26}"
                     f"{_cell(pre) if pre else '-':>16}")
    lines += ["", "which tasks can be ranked (probe difference > its spread over the seeds):"]
    for r in results["ranking"]:
        a, b = r["pair"]
        verdict = f"{a} > {b}" if r["ranked"] else f"{a} and {b}: within the spread, no ranking"
        lines.append(f"  {verdict} (difference {100 * r['difference']:.1f}, spread "
                     f"{100 * r['spread']:.1f} points)")
    return "\n".join(lines)


def _cell(v) -> str:
    if not v:
        return f"{'-':>14}"
    if len(v["runs"]) == 1:  # one run: no spread to show
        return f"{100 * v['mean']:>7.1f}% 1 run"
    return f"{100 * v['mean']:>7.1f}±{100 * v['std']:<4.1f}%"


def describe_helps(name: str, h: dict, *, all_count: int | None = None) -> str:
    """One line: up to which label count fine-tuning from ``name`` beats from scratch."""
    gains = ", ".join(f"{'+' if h['gain'][s] >= 0 else ''}{100 * h['gain'][s]:.1f}"
                      f"±{100 * h['spread'][s]:.1f}" for s in h["gain"])
    sizes = ", ".join(h["gain"])
    later = counts_that_help(h)
    if h["up_to"] is None and later:  # not with the fewest labels, but with more
        verdict = (f"not beyond the spread at {next(iter(h['helps']))} labels per class, but at "
                   f"{', '.join(later)}")
    elif h["up_to"] is None:
        verdict = "does not beat from scratch by more than the spread at any label count"
    elif h["up_to"] == "all":
        n = f" ({all_count} per class)" if all_count else ""
        verdict = f"helps at every label count, up to all labels{n}"
    else:
        verdict = f"helps up to {h['up_to']} labels per class"
    return f"{name:<16}{verdict} (gain {gains} points at {sizes} labels/class)"


def format_compare(results: dict) -> str:
    """The comparison as plain-text tables: probe per block, pretext accuracy, probe and
    fine-tuning with few labels (mean ± std over the seeds), where pretraining pays off, and
    compute cost."""
    methods = results["methods"]
    blocks = list(next(iter(methods.values()))["linear"])
    lines = [f"compare on {results['dataset']} ({results['profile']} profile; label subsets "
             f"over seeds {results['seeds']}; every choice made on validation data)", ""]
    head = f"{'linear probe':<16}" + "".join(f"{b:>9}" for b in blocks) + \
        f"{'best':>9}{'block':>8}{'k-NN':>9}{'pretext':>10}{'chance':>9}"
    lines += [head, "-" * len(head)]
    for name, m in methods.items():
        best = m["best_block"]
        pre = m["pretext"]
        lines.append(
            f"{name:<16}" + "".join(f"{100 * m['linear'][b]:>8.1f}%" for b in blocks)
            + f"{100 * m['linear'][best]:>8.1f}%{best:>8}{100 * m['knn'][best]:>8.1f}%"
            + (f"{100 * pre['accuracy']:>9.1f}%{100 * pre['chance']:>8.1f}%" if pre
               else f"{'-':>10}{'-':>9}"))
    lines.append("")
    sizes = results["sizes"]
    r = results.get("finetune_recipe") or {}
    for title, key in (("linear probe, frozen features", "label_efficiency"),
                       (f"fine-tuned, all layers ({r.get('steps', '?')} steps of "
                        f"{r.get('batch_size', '?')} images)", "finetune")):
        if key == "finetune" and not results.get("finetune_sizes", sizes):
            continue  # fine-tuning was not asked for
        head = f"{'labels/class':<24}" + "".join(f"{s:>14}" for s in sizes)
        lines += [title, head, "-" * len(head)]
        for name, m in methods.items():
            label = "random = scratch" if (key == "finetune" and name == SCRATCH) else name
            le = m.get(key) or {}
            lines.append(f"{label:<24}" + "".join(f"{_cell(le.get(s)):>14}" for s in sizes))
        lines.append("")
    helps = results.get("pretraining_helps") or {}
    if helps:
        lines.append("does pretraining pay off? fine-tuned vs from scratch, gain > spread:")
        for name, h in helps.items():
            lines.append(describe_helps(name, h, all_count=results.get("labels_per_class_all")))
        lines.append("")
    head = f"{'compute':<16}{'seconds':>10}{'samples':>10}{'epochs':>8}{'s/epoch':>9}"
    lines += [head, "-" * len(head)]
    for name, m in methods.items():
        c = m["cost"]
        lines.append(f"{name:<16}{c['train_seconds']:>10.1f}{c['samples_seen']:>10,}"
                     f"{c['epochs']:>8.2f}{c['seconds_per_epoch']:>9.1f}")
    return "\n".join(lines)
