"""The probe: how good are frozen features for the real task? Same protocol for every method.

1. The backbone is frozen and in ``eval()`` mode (BatchNorm statistics do not move).
2. Each block's feature map is average-pooled to a small fixed grid and flattened.
3. Features are standardised with the mean and std of the training split.
4. A multinomial logistic regression is fitted by L-BFGS; its L2 strength is chosen on a
   validation part of the training split, then refitted on the whole training split.
5. Test accuracy is reported per block, together with a k-NN (cosine) accuracy.

A probe number means little alone: always read it next to the random-init and supervised
baselines of the same backbone, probed the same way (:func:`probe_methods`).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from .data import Dataset, to_float
from .train import select_device

L2_GRID = (1e-4, 1e-3, 1e-2, 1e-1)
"""Candidate L2 strengths for the logistic regression (chosen on the validation split)."""


def pooled_grid(channels: int, spatial: int, *, max_features: int = 1024) -> int:
    """Side of the pooling grid for a block: the largest g with channels * g**2 <= max_features
    and g <= the map's size (at least 1), so every block gives a similar number of features."""
    return max(1, min(spatial, int((max_features / channels) ** 0.5)))


@torch.no_grad()
def extract_features(backbone: nn.Module, images: torch.Tensor, *, prepare=None,
                     batch_size: int = 256, device: str | torch.device = "auto",
                     max_features: int = 1024) -> dict[str, torch.Tensor]:
    """Frozen features of every block: {"block1": (N, D1), ...}, pooled to a fixed grid.

    ``prepare`` maps a float batch in [0, 1] to what the backbone expects (a task's
    ``probe_inputs``); by default the images go in as they are.
    """
    dev = select_device(device)
    was_training = backbone.training
    backbone = backbone.to(dev).eval()  # eval(): BatchNorm uses its running statistics
    channels_last = dev.type == "cpu"
    if channels_last:
        backbone = backbone.to(memory_format=torch.channels_last)
    out: dict[str, list[torch.Tensor]] = {}
    try:
        for i in range(0, len(images), batch_size):
            batch = to_float(images[i:i + batch_size]).to(dev)
            if prepare is not None:
                batch = prepare(batch)
            if channels_last:
                batch = batch.contiguous(memory_format=torch.channels_last)
            for b, fmap in enumerate(backbone(batch)):
                grid = pooled_grid(fmap.shape[1], fmap.shape[-1], max_features=max_features)
                pooled = nn.functional.adaptive_avg_pool2d(fmap, grid).flatten(1)
                out.setdefault(f"block{b + 1}", []).append(pooled.float().cpu())
    finally:
        backbone.to("cpu", memory_format=torch.contiguous_format).train(was_training)
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
                 max_iter: int = 100, init: nn.Linear | None = None) -> nn.Linear:
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


def linear_probe(train_x, train_y, test_x, test_y, *, num_classes: int,
                 l2_grid=L2_GRID, seed: int = 0) -> dict:
    """Linear probe with L2 chosen on a validation split: {"accuracy", "l2", "val"}."""
    tr, va = split_validation(len(train_x), seed=seed)
    xs_tr, xs_va = standardise(train_x[tr], train_x[va])
    val, fits, lin = {}, {}, None
    for l2 in sorted(l2_grid, reverse=True):  # strongest first: each fit warm-starts the next
        lin = fits[l2] = fit_logistic(xs_tr, train_y[tr], num_classes=num_classes, l2=l2,
                                      init=lin)
        val[l2] = accuracy(lin, xs_va, train_y[va])
    best = max(l2_grid, key=lambda l2: (val[l2], l2))  # ties go to the stronger L2
    xs_train, xs_test = standardise(train_x, test_x)
    lin = fit_logistic(xs_train, train_y, num_classes=num_classes, l2=best, init=fits[best])
    return {"accuracy": accuracy(lin, xs_test, test_y), "l2": best, "val": val}


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
    """Probe accuracies of one method, per block."""

    linear: dict[str, float]
    knn: dict[str, float]
    l2: dict[str, float]

    @property
    def best_block(self) -> str:
        return max(self.linear, key=self.linear.get)

    @property
    def best_linear(self) -> float:
        return self.linear[self.best_block]


def probe(backbone: nn.Module, dataset: Dataset, *, prepare=None, device="auto",
          seed: int = 0, knn_k: int = 20, blocks=None) -> ProbeResult:
    """Run the whole probe protocol on one frozen backbone."""
    train_f = extract_features(backbone, dataset.train_images, prepare=prepare, device=device)
    test_f = extract_features(backbone, dataset.test_images, prepare=prepare, device=device)
    linear, knn, l2 = {}, {}, {}
    for block in blocks or train_f:
        res = linear_probe(train_f[block], dataset.train_labels, test_f[block],
                           dataset.test_labels, num_classes=dataset.num_classes, seed=seed)
        linear[block], l2[block] = res["accuracy"], res["l2"]
        knn[block] = knn_accuracy(train_f[block], dataset.train_labels, test_f[block],
                                  dataset.test_labels, num_classes=dataset.num_classes, k=knn_k)
    return ProbeResult(linear, knn, l2)


def probe_methods(methods: dict, dataset: Dataset, **kwargs) -> dict[str, ProbeResult]:
    """Probe several trained models the same way: ``methods`` maps a name to a
    :class:`~ssl_teach.train.Trained` (its task says how whole images are fed in)."""
    return {name: probe(t.backbone, dataset, prepare=t.task.probe_inputs, **kwargs)
            for name, t in methods.items()}


def format_table(results: dict[str, ProbeResult], *, metric: str = "linear") -> str:
    """A plain-text table: one row per method, one column per block, accuracies in %."""
    blocks = list(next(iter(results.values())).linear)
    head = f"{metric + ' probe':<16}" + "".join(f"{b:>9}" for b in blocks) + f"{'best':>9}"
    lines = [head, "-" * len(head)]
    for name, r in results.items():
        vals = getattr(r, metric)
        lines.append(f"{name:<16}" + "".join(f"{100 * vals[b]:>8.1f}%" for b in blocks)
                     + f"{100 * max(vals.values()):>8.1f}%")
    return "\n".join(lines)
