"""Plotting helpers: image grids, training curves, probe charts, confusion matrices, saliency.

Every function draws with matplotlib and returns the figure (or axes), so notebooks can show or
save it; none of them changes a model's weights or mode for good.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from .data import to_float

# --------------------------------------------------------------------------------------------
# Images


def to_display(image: torch.Tensor) -> np.ndarray:
    """One image (C, H, W), uint8 or float, to an array matplotlib shows: (H, W, 3) or (H, W)."""
    img = to_float(image.detach().cpu())
    if img.min() < 0 or img.max() > 1:  # normalised input (per-patch standardised): rescale
        img = (img - img.min()) / (img.max() - img.min()).clamp_min(1e-8)
    img = img.clamp(0, 1)
    return img[0].numpy() if img.shape[0] == 1 else img.permute(1, 2, 0).numpy()


def show_images(images, *, titles=None, ncols: int = 8, size: float = 1.4, suptitle=None,
                title_colors=None):
    """A grid of images (N, C, H, W) with optional titles; returns the figure."""
    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = (n + ncols - 1) // ncols
    height = size * nrows + (0.3 if titles is not None else 0.0)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, height), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(to_display(images[i]), cmap="gray", vmin=0, vmax=1,
                      interpolation="nearest")
            if titles is not None:
                color = title_colors[i] if title_colors is not None else "black"
                ax.set_title(str(titles[i]), fontsize=8, color=color)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# Training and probe results


def smooth(values, window: int = 10) -> np.ndarray:
    """Moving average (the first values average over what is there)."""
    v = np.asarray(values, dtype=float)
    if len(v) == 0:
        return v
    c = np.cumsum(np.insert(v, 0, 0.0))
    idx = np.arange(1, len(v) + 1)
    lo = np.maximum(0, idx - window)
    return (c[idx] - c[lo]) / (idx - lo)


def plot_history(histories: dict, *, window: int = 10, chance: dict | float | None = None):
    """Loss and pretext accuracy against samples seen, one line per run; returns the figure.

    ``histories`` maps a run's name to a ``Trained.history`` (or a ``Trained``).
    """
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.4))
    for name, h in histories.items():
        h = getattr(h, "history", h)
        if not h.get("samples"):
            continue
        ax_loss.plot(h["samples"], smooth(h["loss"], window), label=name)
        ax_acc.plot(h["samples"], smooth(h["accuracy"], window), label=name)
        c = chance.get(name) if isinstance(chance, dict) else chance
        if c is not None:
            ax_acc.axhline(c, ls=":", color=ax_acc.lines[-1].get_color(), lw=1)
    ax_loss.set(xlabel="training samples seen", ylabel="loss (smoothed)", title="loss")
    ax_acc.set(xlabel="training samples seen", ylabel="batch accuracy (smoothed)",
               title="pretext accuracy (dotted: chance)", ylim=(0, 1.02))
    ax_loss.legend()
    fig.tight_layout()
    return fig


def _probe_table(results, metric):
    """{method: {block: acc}} from either ProbeResult objects or a results dict."""
    if "linear" in results and isinstance(results["linear"], dict):  # a results["probe"] dict
        return results[metric]
    return {name: getattr(r, metric) for name, r in results.items()}


def plot_probe(results, *, metric: str = "linear", ax=None, title=None):
    """Grouped bars: probe accuracy per block, one colour per method; returns the axes.

    ``results`` is {method: ProbeResult} or the ``probe`` part of a results dict.
    """
    table = _probe_table(results, metric)
    methods = list(table)
    blocks = list(table[methods[0]])
    if ax is None:
        _, ax = plt.subplots(figsize=(1.6 + 1.4 * len(blocks), 3.4))
    width = 0.8 / len(methods)
    x = np.arange(len(blocks))
    for i, m in enumerate(methods):
        vals = [100 * table[m][b] for b in blocks]
        bars = ax.bar(x + (i - (len(methods) - 1) / 2) * width, vals, width, label=m)
        for bar, v in zip(bars, vals):
            ax.text(bar.get_x() + bar.get_width() / 2, v + 1, f"{v:.0f}", ha="center",
                    fontsize=7)
    ax.set_xticks(x, blocks)
    ax.set_ylim(0, 105)
    ax.set_ylabel(f"{metric} probe test accuracy (%)")
    ax.set_title(title or f"{metric} probe on frozen features, per block")
    ax.legend(fontsize=8, loc="upper left")
    return ax


def confusion_matrix(predictions: torch.Tensor, targets: torch.Tensor, num_classes: int
                     ) -> torch.Tensor:
    """Counts (true class, predicted class) as a (K, K) tensor."""
    idx = targets.long() * num_classes + predictions.long()
    return torch.bincount(idx, minlength=num_classes**2).view(num_classes, num_classes)


def plot_confusion(predictions, targets, class_names, *, ax=None, title=None):
    """Row-normalised confusion matrix (rows: true class) with the shares written in; returns
    the axes."""
    k = len(class_names)
    cm = confusion_matrix(predictions, targets, k).float()
    cm = cm / cm.sum(1, keepdim=True).clamp_min(1)
    if ax is None:
        _, ax = plt.subplots(figsize=(1.0 + 0.55 * k, 0.8 + 0.5 * k))
    ax.imshow(cm.numpy(), cmap="Blues", vmin=0, vmax=1)
    if k <= 12:
        for i in range(k):
            for j in range(k):
                ax.text(j, i, f"{cm[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if cm[i, j] > 0.5 else "black")
    ax.set_xticks(range(k), class_names, rotation=45 if k > 6 else 0, fontsize=8)
    ax.set_yticks(range(k), class_names, fontsize=8)
    ax.set(xlabel="predicted", ylabel="true", title=title or "confusion matrix")
    return ax


# --------------------------------------------------------------------------------------------
# What the network looks at


def grad_cam(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, *,
             block: int = -1) -> torch.Tensor:
    """Grad-CAM maps (N, H, W) in [0, 1] for a backbone + head model (``model.backbone``,
    ``model.head``, logits = head(mean over space of the last block)).

    Selvaraju et al. 2017, https://arxiv.org/abs/1610.02391: weight each channel of a block's
    feature map by the mean gradient of the target logit, sum, keep the positive part, upsample.
    """
    was_training = model.training
    model.eval()
    try:
        x = inputs.detach().clone()
        feats = model.backbone(x)
        logits = model.head(feats[-1].mean(dim=(2, 3)))
        chosen = logits.gather(1, targets.view(-1, 1).long()).sum()
        fmap = feats[block]
        grads, = torch.autograd.grad(chosen, fmap)
        weights = grads.mean(dim=(2, 3), keepdim=True)
        cam = torch.relu((weights * fmap).sum(1, keepdim=True))
        cam = nn.functional.interpolate(cam, size=inputs.shape[-2:], mode="bilinear",
                                        align_corners=False)[:, 0]
        cam = cam / cam.flatten(1).amax(1).clamp_min(1e-8).view(-1, 1, 1)
        return cam.detach()
    finally:
        model.train(was_training)


def saliency(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Gradient saliency (N, H, W): |d logit_target / d pixel|, max over channels, scaled to
    [0, 1] per image (Simonyan et al. 2014, https://arxiv.org/abs/1312.6034)."""
    was_training = model.training
    model.eval()
    try:
        x = inputs.detach().clone().requires_grad_(True)
        logits = model(x)
        logits.gather(1, targets.view(-1, 1).long()).sum().backward()
        sal = x.grad.abs().amax(1)
        return sal / sal.flatten(1).amax(1).clamp_min(1e-8).view(-1, 1, 1)
    finally:
        model.train(was_training)


def show_maps(images, maps, *, titles=None, ncols: int = 8, size: float = 1.4, alpha=0.5,
              suptitle=None):
    """Images with a heat map on top (maps (N, H, W) in [0, 1]); returns the figure."""
    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(2 * nrows, ncols, figsize=(size * ncols, 2 * size * nrows + 0.3),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i in range(n):
        r, c = 2 * (i // ncols), i % ncols
        axes[r, c].imshow(to_display(images[i]), cmap="gray", interpolation="nearest")
        if titles is not None:
            axes[r, c].set_title(str(titles[i]), fontsize=8)
        axes[r + 1, c].imshow(to_display(images[i]), cmap="gray", interpolation="nearest")
        axes[r + 1, c].imshow(maps[i].cpu().numpy(), cmap="jet", alpha=alpha, vmin=0, vmax=1)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def plot_filters(backbone: nn.Module, *, ncols: int = 12, size: float = 0.6):
    """The first convolution's filters as small colour images; returns the figure."""
    w = next(m for m in backbone.modules() if isinstance(m, nn.Conv2d)).weight.detach().cpu()
    w = (w - w.amin(dim=(1, 2, 3), keepdim=True)) / (
        w.amax(dim=(1, 2, 3), keepdim=True) - w.amin(dim=(1, 2, 3), keepdim=True)).clamp_min(1e-8)
    return show_images(w, ncols=ncols, size=size)


def pca_2d(features: torch.Tensor) -> torch.Tensor:
    """The first two principal components of standardised features: (N, D) -> (N, 2)."""
    x = features.float()
    x = (x - x.mean(0)) / x.std(0).clamp_min(1e-6)
    _, _, v = torch.pca_lowrank(x, q=2, center=False, niter=4)
    return x @ v


def plot_embedding(features: torch.Tensor, labels: torch.Tensor, class_names, *, ax=None,
                   title=None):
    """Scatter of a 2-D PCA of the features, coloured by class; returns the axes."""
    xy = pca_2d(features).numpy()
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4))
    cmap = plt.get_cmap("tab10" if len(class_names) <= 10 else "tab20")
    for c, name in enumerate(class_names):
        sel = (labels == c).numpy()
        ax.scatter(xy[sel, 0], xy[sel, 1], s=4, color=cmap(c % cmap.N), label=name)
    ax.set(xticks=[], yticks=[], title=title or "PCA of features")
    return ax
