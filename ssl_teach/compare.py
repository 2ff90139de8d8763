"""All pretext tasks side by side: same backbone, same budget, same probe, same baselines.

:func:`compare` trains every task (or loads it from the checkpoint cache), probes every block
of every method, and measures **label efficiency**: the best-block linear probe fitted on only
1, 4, 16, 64 or all labels per class, over several seeds of the labelled subset — next to the
baseline a learner asks about, the same backbone trained supervised from scratch on only those
labels. ``python -m ssl_teach compare`` and ``05_comparing_pretext_tasks`` both call it.
"""

from __future__ import annotations

import dataclasses
import time

import torch

from .data import Dataset
from .experiment import baselines, pretrain, probe_cached, setup
from .pretext import TASKS, get_task
from .probe import L2_GRID, accuracy, extract_features, fit_logistic, split_validation, standardise
from .train import SupervisedTask, pretext_accuracy, predict, train

LABELS_PER_CLASS = (1, 4, 16, 64, "all")
"""Labelled images per class in the label-efficiency table ("all": the whole train split)."""

SCRATCH_MAX_EPOCHS = 50
"""Supervised training on a few labels stops after this many passes over them (or at the
profile's budget, whichever comes first): more passes over ten images only memorise them."""

SCRATCH_ONE_SUBSET_FROM = 64
"""From this many labels per class on, training from scratch uses one labelled subset instead of
one per seed: each such run costs as much as a pretext task, and runs on hundreds of labelled
images differ little between subsets (three subsets of 64 per class: 90.4 ± 1.8%)."""

EVAL_IMAGES = 1000
"""Held-out images (or Exemplar-CNN seeds) behind each pretext accuracy in the comparison."""


def labelled_subset(labels: torch.Tensor, per_class, *, seed: int,
                    num_classes: int | None = None) -> torch.Tensor:
    """Indices of a class-balanced random subset with ``per_class`` images of every class
    ("all": every index). Different seeds give different subsets."""
    if per_class == "all":
        return torch.arange(len(labels))
    num_classes = num_classes or int(labels.max()) + 1
    g = torch.Generator().manual_seed(10_007 * seed + int(per_class))
    picks = []
    for c in range(num_classes):
        idx = (labels == c).nonzero().flatten()
        if len(idx) < per_class:
            raise ValueError(f"class {c} has only {len(idx)} labelled images; "
                             f"cannot take {per_class} per class")
        picks.append(idx[torch.randperm(len(idx), generator=g)[:per_class]])
    return torch.cat(picks).sort().values


def subset_probe(train_x, train_y, test_x, test_y, *, num_classes: int, seed: int = 0) -> float:
    """Linear probe on a (small) labelled subset: L2 chosen on a validation part of the subset
    when it has at least 4 images per class, else the strongest L2 of the grid (with fewer
    labels there is nothing to validate on, and strong regularisation is the safe choice)."""
    per_class = len(train_y) / num_classes
    if per_class >= 4:
        tr, va = split_validation(len(train_x), seed=seed)
        a, b = standardise(train_x[tr], train_x[va])
        val, lin = {}, None
        for l2 in sorted(L2_GRID, reverse=True):  # strongest first, each fit warm-starts the next
            lin = fit_logistic(a, train_y[tr], num_classes=num_classes, l2=l2, init=lin)
            val[l2] = accuracy(lin, b, train_y[va])
        l2 = max(L2_GRID, key=lambda l2: (val[l2], l2))  # ties go to the stronger L2
    else:
        l2 = max(L2_GRID)
    xs_train, xs_test = standardise(train_x, test_x)
    lin = fit_logistic(xs_train, train_y, num_classes=num_classes, l2=l2)
    return accuracy(lin, xs_test, test_y)


def _summary(runs: list[float]) -> dict:
    t = torch.tensor(runs)
    return {"mean": t.mean().item(), "std": t.std().item() if len(runs) > 1 else 0.0,
            "runs": runs}


def label_efficiency(trained, dataset: Dataset, block: str, *, sizes=LABELS_PER_CLASS,
                     seeds=(0, 1, 2), device="auto", all_labels: float | None = None) -> dict:
    """Best-block linear probe accuracy with few labels: {size: {"mean", "std", "runs"}}.

    ``all_labels``: the probe's accuracy on this block with every label, when already known
    (it is the "all" entry: the same protocol on the whole train split)."""
    prepare = trained.task.probe_inputs
    subsets = {}  # (size, seed) -> indices into the train split
    for size in sizes:
        if size == "all" and all_labels is not None:
            continue
        for seed in (seeds if size != "all" else seeds[:1]):
            subsets[size, seed] = labelled_subset(dataset.train_labels, size, seed=seed,
                                                  num_classes=dataset.num_classes)
    # features of the labelled images that some subset uses, not of the whole train split
    used = torch.cat(list(subsets.values())).unique() if subsets else torch.zeros(0).long()
    position = torch.full((len(dataset.train_labels),), -1, dtype=torch.long)
    position[used] = torch.arange(len(used))
    train_f = extract_features(trained.backbone, dataset.train_images[used], prepare=prepare,
                               device=device)[block] if len(used) else None
    test_f = extract_features(trained.backbone, dataset.test_images, prepare=prepare,
                              device=device)[block] if subsets else None
    out = {}
    for size in sizes:
        if size == "all" and all_labels is not None:
            out["all"] = _summary([all_labels])
            continue
        runs = [subset_probe(train_f[position[idx]], dataset.train_labels[idx], test_f,
                             dataset.test_labels, num_classes=dataset.num_classes, seed=seed)
                for (s, seed), idx in subsets.items() if s == size]
        out[str(size)] = _summary(runs)
    return out


def with_train_subset(dataset: Dataset, idx: torch.Tensor, *, per_class, seed: int) -> Dataset:
    """The dataset with its labelled train split cut to ``idx`` (the spec says so, so the
    checkpoint cache keeps the runs apart)."""
    return dataclasses.replace(
        dataset, train_images=dataset.train_images[idx], train_labels=dataset.train_labels[idx],
        spec={**dataset.spec, "train_subset": {"per_class": per_class, "seed": seed}})


def scratch_supervised(dataset: Dataset, profile, *, sizes=LABELS_PER_CLASS, seeds=(0, 1, 2),
                       device="auto", progress: bool = False, train_seed: int = 0,
                       one_subset_from=SCRATCH_ONE_SUBSET_FROM) -> dict:
    """Test accuracy of the backbone trained supervised from scratch on only ``size`` labels
    per class (its own classifier head): {size: {"mean", "std", "runs"}}, over one labelled
    subset per seed — one subset only from ``one_subset_from`` labels per class on."""
    out = {}
    sup = SupervisedTask(num_classes=dataset.num_classes)
    for size in sizes:
        runs = []
        many = size == "all" or (one_subset_from is not None and size >= one_subset_from)
        for seed in (seeds[:1] if many else seeds):
            idx = labelled_subset(dataset.train_labels, size, seed=seed,
                                  num_classes=dataset.num_classes)
            subset = with_train_subset(dataset, idx, per_class=size, seed=seed)
            config = profile.train_config(None, seed=train_seed)
            budget = min(config.budget_samples, SCRATCH_MAX_EPOCHS * len(idx))
            config = dataclasses.replace(config, budget_samples=max(budget, config.batch_size))
            model = train(sup, subset, config, device=device, progress=progress,
                          desc=f"supervised from scratch, {size} labels/class, seed {seed}")
            logits, targets, _ = predict(model, dataset.test_images, dataset.test_labels,
                                         device=device)
            runs.append((logits.argmax(1) == targets).float().mean().item())
        out[str(size)] = _summary(runs)
    return out


def compare(tasks=tuple(TASKS), *, profile="quick", dataset="scenes", seeds=(0, 1, 2),
            sizes=LABELS_PER_CLASS, device="auto", progress: bool = True, train_seed: int = 0,
            data_dir=None, download: bool = False, workers: int | None = None) -> dict:
    """Train (or load) every task and both baselines; probe them all the same way; measure
    label efficiency over ``seeds`` of the labelled subsets. Returns a JSON-able dict."""
    if len(seeds) < 1:
        raise ValueError("give at least one seed for the labelled subsets")
    for t in tasks:
        if t not in TASKS:
            raise ValueError(f"unknown pretext task {t!r}; choose from: {', '.join(TASKS)}")
    seconds = {}
    t0 = time.perf_counter()
    prof, data = setup(profile, dataset, seed=0, data_dir=data_dir, download=download)
    seconds["data"] = time.perf_counter() - t0
    methods, info = {}, {}
    for name in tasks:
        t0 = time.perf_counter()
        task = get_task(name)
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
    for name, model in methods.items():
        r = probe_cached(model, data, device=device)
        samples = model.history["samples"][-1] if model.history["samples"] else 0
        images = len(model.task.training_data(data)[0]) if hasattr(
            model.task, "training_data") else len(data.unlabeled)
        per_epoch = images * model.task.samples_per_image
        info[name].update({
            "linear": r.linear, "knn": r.knn, "best_block": r.best_block,
            "cost": {"train_seconds": model.seconds.get("total", 0.0), "samples_seen": samples,
                     "epochs": samples / per_epoch if samples else 0.0,
                     "seconds_per_epoch": (model.seconds.get("total", 0.0) * per_epoch / samples
                                           if samples else 0.0)},
        })
    seconds["probe"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    for name, model in methods.items():
        best = info[name]["best_block"]  # with every label: the probe table's own number
        info[name]["label_efficiency"] = label_efficiency(
            model, data, best, sizes=sizes, seeds=seeds, device=device,
            all_labels=info[name]["linear"][best])
    seconds["label_efficiency"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    scratch = scratch_supervised(data, prof, sizes=[s for s in sizes if s != "all"],
                                 seeds=seeds, device=device, progress=progress,
                                 train_seed=train_seed)
    if "all" in [str(s) for s in sizes]:  # all labels: the supervised baseline itself
        scratch["all"] = _summary([pretext_accuracy(methods["supervised"], data, device=device)])
    seconds["scratch_supervised"] = time.perf_counter() - t0
    return {"profile": prof.name, "dataset": dataset, "tasks": list(tasks),
            "seeds": list(seeds), "train_seed": train_seed,
            "sizes": [str(s) for s in sizes], "methods": info,
            "scratch_supervised": scratch, "seconds": seconds}


def format_compare(results: dict) -> str:
    """The comparison as plain-text tables: probe per block, pretext accuracy, label
    efficiency (mean ± std over the seeds), and compute cost."""
    methods = results["methods"]
    blocks = list(next(iter(methods.values()))["linear"])
    lines = [f"compare on {results['dataset']} ({results['profile']} profile; label subsets "
             f"over seeds {results['seeds']})", ""]
    head = f"{'linear probe':<16}" + "".join(f"{b:>9}" for b in blocks) + \
        f"{'best':>9}{'k-NN':>9}{'pretext':>10}{'chance':>9}"
    lines += [head, "-" * len(head)]
    for name, m in methods.items():
        best = m["best_block"]
        pre = m["pretext"]
        lines.append(
            f"{name:<16}" + "".join(f"{100 * m['linear'][b]:>8.1f}%" for b in blocks)
            + f"{100 * m['linear'][best]:>8.1f}%{100 * m['knn'][best]:>8.1f}%"
            + (f"{100 * pre['accuracy']:>9.1f}%{100 * pre['chance']:>8.1f}%" if pre
               else f"{'-':>10}{'-':>9}"))
    lines.append("")
    sizes = results["sizes"]
    head = f"{'labels/class':<24}" + "".join(f"{s:>14}" for s in sizes)
    lines += [head, "-" * len(head)]
    rows = [(f"{name} (probe)", m["label_efficiency"]) for name, m in methods.items()]
    rows.append(("supervised from scratch", results["scratch_supervised"]))
    for name, le in rows:
        cells = []
        for s in sizes:
            v = le.get(s)
            if not v:
                cells.append(f"{'-':>14}")
            elif len(v["runs"]) == 1:  # one run: no spread to show
                cells.append(f"{100 * v['mean']:>7.1f}% 1 run")
            else:
                cells.append(f"{100 * v['mean']:>7.1f}±{100 * v['std']:<4.1f}%")
        lines.append(f"{name:<24}" + "".join(f"{c:>14}" for c in cells))
    lines.append("")
    head = f"{'compute':<16}{'seconds':>10}{'samples':>10}{'epochs':>8}{'s/epoch':>9}"
    lines += [head, "-" * len(head)]
    for name, m in methods.items():
        c = m["cost"]
        lines.append(f"{name:<16}{c['train_seconds']:>10.1f}{c['samples_seen']:>10,}"
                     f"{c['epochs']:>8.2f}{c['seconds_per_epoch']:>9.1f}")
    return "\n".join(lines)
