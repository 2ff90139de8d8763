"""The probe: how good are frozen features for the real task? Same protocol for every method.

1. The backbone is frozen and in ``eval()`` mode (BatchNorm statistics do not move).
2. Each block's feature map is average-pooled to a small fixed grid and flattened.
3. Features are standardised with the mean and std of the training split.
4. A multinomial logistic regression is fitted by L-BFGS (at most :data:`MAX_ITER` iterations,
   warm-started along the L2 grid); its L2 strength is chosen on a validation part of the
   training split, then refitted on the whole training split.
5. Test accuracy is reported per block, together with a k-NN (cosine) accuracy.

**Model selection never sees the test set.** The L2 strength and the "best block" are chosen
on validation data carved from the labelled training images; the test split only reports.
With very few labels (fewer than :data:`MIN_VALIDATION_PER_CLASS` in some class) nothing is
held out, and a fixed rule decides instead: the strongest L2 of the grid and the last block.

A probe number means little alone: always read it next to the random-init and supervised
baselines of the same backbone, probed the same way (:func:`probe_methods`).
"""

from __future__ import annotations

import contextlib
import dataclasses

import torch
from torch import nn

from .data import Dataset, to_float
from .train import inference_batch, inference_dtype, select_device

L2_GRID = (1e-4, 1e-3, 1e-2, 1e-1)
"""Candidate L2 strengths for the logistic regression (chosen on the validation split)."""

MAX_ITER = 50
"""L-BFGS iterations per fit at most. Each fit along the L2 grid starts from the previous
one's solution (strongest L2 first), so later fits start close to their optimum."""

MIN_VALIDATION_PER_CLASS = 4
"""A labelled subset is split into training and validation parts only when every class has
at least this many images; below that, holding one out would take a large share of the few
labels, and choices follow a fixed rule instead (see the module docstring)."""


def pooled_grid(channels: int, spatial: int, *, max_features: int = 1024) -> int:
    """Side of the pooling grid for a block: the largest g with channels * g**2 <= max_features
    and g <= the map's size (at least 1), so every block gives a similar number of features."""
    return max(1, min(spatial, int((max_features / channels) ** 0.5)))


def extract_features(backbone: nn.Module, images: torch.Tensor, *, prepare=None,
                     batch_size: int | None = None, device: str | torch.device = "auto",
                     max_features: int = 1024, precision: str | None = None
                     ) -> dict[str, torch.Tensor]:
    """Frozen features of every block: {"block1": (N, D1), ...}, pooled to a fixed grid.

    ``prepare`` maps a float batch in [0, 1] to what the backbone expects (a task's
    ``probe_inputs``); by default the images go in as they are. Forward passes only, in
    ``eval()`` mode under ``torch.inference_mode``, channels_last, ``batch_size`` images at a
    time (default: :func:`ssl_teach.train.inference_batch`), in the backbone's own precision
    unless ``precision`` ("auto", "float32", "bfloat16") is given (see
    :func:`ssl_teach.train.inference_dtype`); pooled in float32.
    """
    dev = select_device(device)
    amp = inference_dtype(getattr(backbone, "trained_precision", "float32"), dev, precision)
    batch_size = batch_size or inference_batch(images, dev)
    was_training = backbone.training
    weights = [p for p in backbone.parameters() if p.ndim == 4]
    was_channels_last = bool(weights) and not weights[0].is_contiguous() and \
        weights[0].is_contiguous(memory_format=torch.channels_last)
    channels_last = dev.type in ("cpu", "cuda")
    backbone = backbone.to(dev).eval()  # eval(): BatchNorm uses its running statistics
    if channels_last:
        backbone = backbone.to(memory_format=torch.channels_last)
    out: dict[str, list[torch.Tensor]] = {}
    try:
        with torch.inference_mode(), (torch.autocast(dev.type, dtype=amp) if amp
                                      else contextlib.nullcontext()):
            for i in range(0, len(images), batch_size):
                batch = to_float(images[i:i + batch_size]).to(dev)
                if prepare is not None:
                    batch = prepare(batch)
                if channels_last:
                    batch = batch.contiguous(memory_format=torch.channels_last)
                for b, fmap in enumerate(backbone(batch)):
                    grid = pooled_grid(fmap.shape[1], fmap.shape[-1], max_features=max_features)
                    pooled = nn.functional.adaptive_avg_pool2d(fmap.float(), grid).flatten(1)
                    out.setdefault(f"block{b + 1}", []).append(pooled.cpu())
    finally:
        fmt = torch.channels_last if was_channels_last else torch.contiguous_format
        backbone.to("cpu", memory_format=fmt).train(was_training)
    # concatenated outside inference mode: ordinary tensors the caller may change in place
    return {k: torch.cat(v) for k, v in out.items()}


def pixel_features(images: torch.Tensor, *, grid: int = 8) -> torch.Tensor:
    """Raw pixels average-pooled to a grid x grid image and flattened: (N, C * grid**2).
    The "no network at all" baseline of the probe."""
    return nn.functional.adaptive_avg_pool2d(to_float(images), grid).flatten(1)


def standardise(train: torch.Tensor, *others: torch.Tensor):
    """Subtract the training mean and divide by the training std (per feature)."""
    mean, std = train.mean(0), train.std(0).clamp_min(1e-6)
    return [(x - mean) / std for x in (train, *others)]


def fit_logistic(x: torch.Tensor, y: torch.Tensor, *, num_classes: int, l2: float,
                 max_iter: int = MAX_ITER, init: nn.Linear | None = None) -> nn.Linear:
    """Multinomial logistic regression by full-batch L-BFGS: minimises
    mean cross-entropy + l2/2 * ||W||^2. Deterministic: starts from zero, or from ``init``
    (a warm start from a neighbouring L2 strength converges in fewer steps)."""
    x, y = x.float(), y.long()
    lin = nn.Linear(x.shape[1], num_classes)
    with torch.no_grad():
        lin.weight.copy_(init.weight if init is not None else torch.zeros_like(lin.weight))
        lin.bias.copy_(init.bias if init is not None else torch.zeros_like(lin.bias))
    opt = torch.optim.LBFGS(lin.parameters(), lr=1, max_iter=max_iter, history_size=20,
                            tolerance_grad=1e-6, tolerance_change=1e-9,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(lin(x), y) + 0.5 * l2 * lin.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return lin


def accuracy(lin: nn.Linear, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (lin(x.float()).argmax(1) == y).float().mean().item()


def split_validation(n: int, *, share: float = 0.2, seed: int = 0):
    """Indices (train, validation) of a seeded random split of range(n)."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = max(1, int(round(n * share)))
    return perm[n_val:], perm[:n_val]


def validation_split(labels: torch.Tensor, *, share: float = 0.25, max_per_class: int = 50,
                     seed: int = 0, min_per_class: int = MIN_VALIDATION_PER_CLASS):
    """Positions (train, validation) into ``labels``: a seeded split with the same number of
    validation images in every class, ``round(share * n_c)`` (at least 1, at most
    ``max_per_class``) of a class with n_c images. When some class has fewer than
    ``min_per_class`` images, or ``share`` is 0, nothing is held out (validation is empty)."""
    labels = torch.as_tensor(labels).long()
    classes = labels.unique()
    counts = torch.stack([(labels == c).sum() for c in classes]) if len(classes) else None
    if share <= 0 or counts is None or counts.min().item() < min_per_class:
        return torch.arange(len(labels)), torch.zeros(0, dtype=torch.long)
    n_val = min(max(1, int(round(share * counts.min().item()))), max_per_class)
    g = torch.Generator().manual_seed(7_919 * seed + 17)
    train, val = [], []
    for c in classes:
        idx = (labels == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return torch.cat(train).sort().values, torch.cat(val).sort().values


def labelled_subset(labels: torch.Tensor, per_class, *, seed: int,
                    num_classes: int | None = None) -> torch.Tensor:
    """Indices of a class-balanced random subset with ``per_class`` images of every class
    ("all": every index). Different seeds give different subsets."""
    if per_class == "all":
        return torch.arange(len(labels))
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise ValueError(f"labels per class must be a positive int or 'all', got {per_class!r}")
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


def _validate_l2(xs_tr, y_tr, xs_va, y_va, *, num_classes: int, l2_grid) -> tuple[dict, dict]:
    """Validation accuracy of every L2 strength, and the fits: ({l2: acc}, {l2: linear})."""
    val, fits, lin = {}, {}, None
    for l2 in sorted(l2_grid, reverse=True):  # strongest first: each fit warm-starts the next
        lin = fits[l2] = fit_logistic(xs_tr, y_tr, num_classes=num_classes, l2=l2, init=lin)
        val[l2] = accuracy(lin, xs_va, y_va)
    return val, fits


def linear_probe(train_x, train_y, test_x, test_y, *, num_classes: int,
                 l2_grid=L2_GRID, seed: int = 0) -> dict:
    """Linear probe with L2 chosen on a validation split of the training features:
    {"accuracy" (test), "l2", "val" ({l2: validation accuracy}), "val_accuracy" (the chosen
    L2's)}. The test features and labels are used for nothing but the reported accuracy."""
    tr, va = split_validation(len(train_x), seed=seed)
    xs_tr, xs_va = standardise(train_x[tr], train_x[va])
    val, fits = _validate_l2(xs_tr, train_y[tr], xs_va, train_y[va], num_classes=num_classes,
                             l2_grid=l2_grid)
    best = max(l2_grid, key=lambda l2: (val[l2], l2))  # ties go to the stronger L2
    xs_train, xs_test = standardise(train_x, test_x)
    lin = fit_logistic(xs_train, train_y, num_classes=num_classes, l2=best, init=fits[best])
    return {"accuracy": accuracy(lin, xs_test, test_y), "l2": best, "val": val,
            "val_accuracy": val[best]}


def select_probe(train_f: dict, train_y, test_f: dict, test_y, *, num_classes: int,
                 l2_grid=L2_GRID, seed: int = 0, share: float = 0.25,
                 max_per_class: int = 50) -> dict:
    """Linear probe of a (small) labelled subset that chooses its block *and* L2 on a
    validation part of the subset (:func:`validation_split`), then refits the choice on the
    whole subset: {"accuracy" (test), "block", "l2", "val" (validation accuracy of the
    choice, None when nothing could be held out)}.

    ``train_f``/``test_f`` map block names to features. With fewer than
    :data:`MIN_VALIDATION_PER_CLASS` labels in some class the rule is fixed in advance: the
    last block and the strongest L2 of the grid (strong regularisation is the safe choice).
    """
    blocks = list(train_f)
    tr, va = validation_split(train_y, share=share, max_per_class=max_per_class, seed=seed)
    if len(va):
        scores = {}
        for block in blocks:
            xs_tr, xs_va = standardise(train_f[block][tr], train_f[block][va])
            val, _ = _validate_l2(xs_tr, train_y[tr], xs_va, train_y[va],
                                  num_classes=num_classes, l2_grid=l2_grid)
            for l2, acc in val.items():
                scores[block, l2] = acc
        # ties go to the stronger L2, then to the earlier block
        block, l2 = max(scores, key=lambda k: (scores[k], k[1], -blocks.index(k[0])))
        val_acc = scores[block, l2]
    else:
        block, l2, val_acc = blocks[-1], max(l2_grid), None
    xs_train, xs_test = standardise(train_f[block], test_f[block])
    lin = fit_logistic(xs_train, train_y, num_classes=num_classes, l2=l2)
    return {"accuracy": accuracy(lin, xs_test, test_y), "block": block, "l2": l2,
            "val": val_acc}


def knn_accuracy(train_x, train_y, test_x, test_y, *, num_classes: int, k: int = 20,
                 temperature: float = 0.1, batch_size: int = 1024) -> float:
    """Weighted k-nearest-neighbour accuracy with cosine similarity on standardised features
    (each neighbour votes with weight exp(similarity / temperature))."""
    xs_train, xs_test = standardise(train_x, test_x)
    a = nn.functional.normalize(xs_train, dim=1)
    b = nn.functional.normalize(xs_test, dim=1)
    k = min(k, len(a))
    correct = 0
    for i in range(0, len(b), batch_size):
        sim, idx = (b[i:i + batch_size] @ a.T).topk(k, dim=1)
        votes = torch.zeros(len(sim), num_classes)
        votes.scatter_add_(1, train_y[idx], (sim / temperature).exp())
        correct += (votes.argmax(1) == test_y[i:i + batch_size]).sum().item()
    return correct / len(b)


@dataclasses.dataclass
class ProbeResult:
    """Probe accuracies of one method, per block: ``linear`` and ``knn`` on the test split,
    ``l2`` the chosen strength and ``val`` the validation accuracy behind that choice (on a
    part of the labelled training images). The best block is chosen on ``val``, never on a
    test accuracy."""

    linear: dict[str, float]
    knn: dict[str, float]
    l2: dict[str, float]
    val: dict[str, float]

    @property
    def best_block(self) -> str:
        """The block with the highest validation accuracy (ties: the earlier block)."""
        return max(self.val, key=self.val.get)

    @property
    def best_linear(self) -> float:
        """Test accuracy of the linear probe on the best block (chosen on validation)."""
        return self.linear[self.best_block]


def probe_features(train_f: dict, train_y, test_f: dict, test_y, *, num_classes: int,
                   seed: int = 0, knn_k: int = 20, blocks=None) -> ProbeResult:
    """The linear and k-NN probes of features already extracted ({block: (N, D)})."""
    linear, knn, l2, val = {}, {}, {}, {}
    for block in blocks or train_f:
        res = linear_probe(train_f[block], train_y, test_f[block], test_y,
                           num_classes=num_classes, seed=seed)
        linear[block], l2[block], val[block] = res["accuracy"], res["l2"], res["val_accuracy"]
        knn[block] = knn_accuracy(train_f[block], train_y, test_f[block], test_y,
                                  num_classes=num_classes, k=knn_k)
    return ProbeResult(linear, knn, l2, val)


def probe(backbone: nn.Module, dataset: Dataset, *, prepare=None, device="auto",
          seed: int = 0, knn_k: int = 20, blocks=None) -> ProbeResult:
    """Run the whole probe protocol on one frozen backbone."""
    train_f = extract_features(backbone, dataset.train_images, prepare=prepare, device=device)
    test_f = extract_features(backbone, dataset.test_images, prepare=prepare, device=device)
    return probe_features(train_f, dataset.train_labels, test_f, dataset.test_labels,
                          num_classes=dataset.num_classes, seed=seed, knn_k=knn_k,
                          blocks=blocks)


def probe_methods(methods: dict, dataset: Dataset, **kwargs) -> dict[str, ProbeResult]:
    """Probe several trained models the same way: ``methods`` maps a name to a
    :class:`~ssl_teach.train.Trained` (its task says how whole images are fed in)."""
    return {name: probe(t.backbone, dataset, prepare=t.task.probe_inputs, **kwargs)
            for name, t in methods.items()}


def format_table(results: dict[str, ProbeResult], *, metric: str = "linear") -> str:
    """A plain-text table: one row per method, one column per block, accuracies in %.

    ``metric``: "linear" or "knn" (test accuracies), or "val" (the validation accuracies the
    choices were made on). The "best" column is the best block's (chosen on validation, the
    same block for every metric) and names it."""
    blocks = list(next(iter(results.values())).linear)
    width = {b: max(9, len(b) + 2) for b in blocks}  # "block1" or a longer name ("projection")
    head = (f"{metric + ' probe':<16}" + "".join(f"{b:>{width[b]}}" for b in blocks)
            + f"{'best':>9}  (block chosen on validation)")
    lines = [head, "-" * len(head)]
    for name, r in results.items():
        vals = getattr(r, metric)
        best = r.best_block
        lines.append(f"{name:<16}" + "".join(f"{100 * vals[b]:>{width[b] - 1}.1f}%"
                                             for b in blocks)
                     + f"{100 * vals[best]:>8.1f}%  {best}")
    return "\n".join(lines)
