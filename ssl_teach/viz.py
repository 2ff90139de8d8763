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


def draw_pipeline(ax=None):
    """The course's data flow as a diagram: images -> pretext task -> backbone + head -> loss,
    then the frozen backbone -> probe on labelled data; returns the axes."""
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 2.8))
    boxes = [
        (0.06, 0.72, "unlabeled\nimages"), (0.25, 0.72, "pretext task\n(inputs, targets)"),
        (0.46, 0.72, "backbone"), (0.63, 0.72, "pretext head"), (0.82, 0.72, "loss"),
        (0.06, 0.2, "few labelled\nimages"), (0.46, 0.2, "frozen\nbackbone"),
        (0.66, 0.2, "linear probe\n(per block)"), (0.86, 0.2, "accuracy vs\nbaselines"),
    ]
    for x, y, text in boxes:
        ax.text(x, y, text, ha="center", va="center", fontsize=9,
                bbox=dict(boxstyle="round,pad=0.4", fc="#e8f0fe", ec="#4a6fa5"))
    arrows = [((0.11, 0.72), (0.18, 0.72)), ((0.32, 0.72), (0.41, 0.72)),
              ((0.51, 0.72), (0.57, 0.72)), ((0.69, 0.72), (0.78, 0.72)),
              ((0.46, 0.6), (0.46, 0.32)), ((0.12, 0.2), (0.41, 0.2)),
              ((0.51, 0.2), (0.6, 0.2)), ((0.72, 0.2), (0.8, 0.2))]
    for start, end in arrows:
        ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle="->", color="#333"))
    ax.text(0.5, 0.46, "keep the backbone, drop the head", ha="left", fontsize=8, style="italic")
    ax.set(xlim=(0, 0.95), ylim=(0.05, 0.9))
    ax.axis("off")
    return ax


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
# Comparing methods (05_comparing_pretext_tasks)


def plot_probe_heatmap(methods: dict, *, metric: str = "linear", ax=None):
    """Method x block heat map of probe accuracy, numbers written in; returns the axes.
    ``methods`` is ``compare(...)["methods"]``."""
    names = list(methods)
    blocks = list(methods[names[0]][metric])
    grid = np.array([[100 * methods[n][metric][b] for b in blocks] for n in names])
    if ax is None:
        _, ax = plt.subplots(figsize=(1.5 + 1.1 * len(blocks), 0.8 + 0.45 * len(names)))
    im = ax.imshow(grid, cmap="viridis", vmin=0, vmax=100, aspect="auto")
    for i in range(len(names)):
        for j in range(len(blocks)):
            ax.text(j, i, f"{grid[i, j]:.0f}", ha="center", va="center", fontsize=8,
                    color="white" if grid[i, j] < 60 else "black")
    ax.set_xticks(range(len(blocks)), blocks)
    ax.set_yticks(range(len(names)), names)
    ax.set_title(f"{metric} probe accuracy (%) per block")
    plt.colorbar(im, ax=ax, fraction=0.04)
    return ax


def plot_label_efficiency(results: dict, *, key: str = "label_efficiency", ax=None):
    """Test accuracy against labelled images per class (log scale), mean ± std over the
    label-subset seeds, one line per method, from a :func:`ssl_teach.compare.compare` result
    (or a committed record's ``results``). ``key``: "label_efficiency" (the best-block linear
    probe of frozen features; fine-tuning from scratch is drawn too where it was run) or
    "finetune" (every layer fine-tuned; "random" is training from scratch). Returns the axes."""
    if key not in ("label_efficiency", "finetune"):
        raise ValueError(f"key must be 'label_efficiency' or 'finetune', got {key!r}")
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4))
    sizes = results["sizes"]
    numeric = [int(s) for s in sizes if s != "all"]
    x_all = 8 * max(numeric) if numeric else 1  # "all" is drawn at the right end
    rows = []
    for name, m in results["methods"].items():
        if key == "finetune":
            label = "from scratch (random init)" if name == "random" else name
            style = "--k^" if name == "random" else ("-s" if name == "supervised" else "-o")
            rows.append((label, m.get("finetune") or {}, style))
        elif name != "supervised":
            rows.append((name, m["label_efficiency"], "-o"))
    if key == "label_efficiency":
        rows.append(("supervised (probe)", results["methods"]["supervised"]["label_efficiency"],
                     "-s"))
        if results.get("scratch_supervised"):  # fine-tuned from random init, when it was run
            rows.append(("fine-tuned from scratch", results["scratch_supervised"], "--k^"))
    for name, le, style in rows:
        xs, ys, es = [], [], []
        for s in sizes:
            if s not in le:
                continue
            xs.append(x_all if s == "all" else int(s))
            ys.append(100 * le[s]["mean"])
            es.append(100 * le[s]["std"])
        if xs:
            ax.errorbar(xs, ys, yerr=es, fmt=style, capsize=3, label=name, ms=4)
    ticks, labels = list(numeric), [str(t) for t in numeric]
    if "all" in sizes:
        ticks.append(x_all)
        labels.append("all")
    ax.set_xscale("log")
    ax.set_xticks(ticks, labels)
    ax.minorticks_off()
    what = ("linear probe, frozen features" if key == "label_efficiency"
            else "fine-tuned, every layer")
    ax.set(xlabel="labelled images per class", ylabel="test accuracy (%)", ylim=(0, 102),
           title=f"{what} (mean ± std over label subsets)")
    ax.legend(fontsize=7)
    return ax


def plot_sweep(results: dict, *, axes=None):
    """A :func:`ssl_teach.sweep.sweep` result (or a committed record's ``results``): per task,
    the best-block linear probe (left) and the fine-tuned accuracy with the sweep's labels per
    class, mean ± std over the label subsets (right), against the pretraining budget as a
    multiple of the profile's; fine-tuning from scratch as a band. Returns the two axes."""
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    ax_probe, ax_ft = axes
    mult = results["multipliers"]
    for name, rows in results["runs"].items():
        xs = [r["multiplier"] for r in rows]
        ax_probe.plot(xs, [100 * r["probe"]["linear"] for r in rows], "-o", ms=4, label=name)
        ax_ft.errorbar(xs, [100 * r["finetune"]["mean"] for r in rows],
                       yerr=[100 * r["finetune"]["std"] for r in rows], fmt="-o", ms=4,
                       capsize=3, label=name)
    s = results["scratch"]
    lo, hi = 100 * (s["mean"] - s["std"]), 100 * (s["mean"] + s["std"])
    ax_ft.axhspan(lo, hi, color="gray", alpha=0.25, label="from scratch (± std)")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xticks(mult, [f"{m}x" for m in mult])
        ax.minorticks_off()
        ax.set(xlabel="pretraining budget (x the profile's)", ylabel="test accuracy (%)")
        ax.legend(fontsize=7)
    ax_probe.set_title("linear probe, best block (chosen on validation)")
    ax_ft.set_title(f"fine-tuned with {results['size']} labels per class")
    return axes


def chance_corrected(accuracy: float, chance: float) -> float:
    """How far an accuracy goes from chance towards perfect, (acc - chance) / (1 - chance):
    0 at chance, 1 when every answer is right, whatever the number of classes (dividing by
    chance instead would rank tasks by their number of classes)."""
    return (accuracy - chance) / (1 - chance)


def plot_pretext_vs_probe(methods: dict, *, ax=None):
    """Scatter: chance-corrected pretext accuracy (:func:`chance_corrected`) against the
    best-block probe accuracy (block chosen on validation); returns the axes."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.6))
    for name, m in methods.items():
        if not m.get("pretext"):
            continue
        x = chance_corrected(m["pretext"]["accuracy"], m["pretext"]["chance"])
        y = 100 * m["linear"][m["best_block"]]
        ax.scatter([x], [y], s=40)
        ax.annotate(f"{name} ({100 * m['pretext']['accuracy']:.0f}%)", (x, y), fontsize=8,
                    xytext=(4, 4), textcoords="offset points")
    random = methods["random"]
    random_best = 100 * random["linear"][random["best_block"]]
    ax.axhline(random_best, ls=":", color="gray")
    ax.text(0.01, random_best + 0.5, " random-init", fontsize=7, color="gray")
    ax.set(xlim=(0, 1.05),
           xlabel="pretext accuracy, chance-corrected: (acc - chance) / (1 - chance)",
           ylabel="best-block linear probe (%)",
           title="does a better pretext score mean better features?")
    return ax


def grad_cam(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, *,
             block: str | None = None) -> torch.Tensor:
    """Grad-CAM maps (N, H, W) in [0, 1] for a backbone + head model (``model.backbone``,
    ``model.head``, logits = head(mean over space of the last block)) at ``block``, named as
    in the probe tables ("block1", "block2", ...; default: the last block).

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
        names = model.backbone.block_names
        if block is not None and block not in names:
            raise ValueError(f"unknown block {block!r}; this backbone has {', '.join(names)}")
        fmap = feats[names.index(block) if block is not None else -1]
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


# --------------------------------------------------------------------------------------------
# 03_jigsaw


def show_tile_grid(tiles: torch.Tensor, *, labels=None, ax=None, title=None, gap: float = 0.08):
    """Nine tiles (9, C, t, t) drawn as a 3x3 grid with small gaps, tile i at row i // 3,
    column i % 3, each with an optional label in its corner; returns the axes."""
    if ax is None:
        _, ax = plt.subplots(figsize=(2.4, 2.4))
    for i, tile in enumerate(tiles):
        r, c = divmod(i, 3)
        x0, y0 = c * (1 + gap), r * (1 + gap)
        ax.imshow(to_display(tile), cmap="gray", vmin=0, vmax=1, interpolation="nearest",
                  extent=(x0, x0 + 1, y0 + 1, y0))
        if labels is not None:
            ax.text(x0 + 0.06, y0 + 0.06, str(labels[i]), fontsize=8, va="top", ha="left",
                    color="white", bbox={"facecolor": "black", "alpha": 0.6, "pad": 1})
    side = 3 + 2 * gap
    ax.set_xlim(0, side)
    ax.set_ylim(side, 0)
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)
    return ax


# --------------------------------------------------------------------------------------------
# 04_relative_patch_location


def draw_patch_grid(image: torch.Tensor, *, patch: int, gap: int, ax=None, title=None):
    """An image with the centred 3x3 patch grid drawn on it: the centre cell marked "C", the
    8 neighbours with their labels 0..7 (row-major, centre skipped); returns the axes."""
    from matplotlib.patches import Rectangle

    if ax is None:
        _, ax = plt.subplots(figsize=(3.2, 3.2))
    h, w = image.shape[-2:]
    extent = 3 * patch + 2 * gap
    top, left = (h - extent) // 2, (w - extent) // 2
    ax.imshow(to_display(image), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    label = 0
    for r in range(3):
        for c in range(3):
            y, x = top + r * (patch + gap), left + c * (patch + gap)
            centre = (r, c) == (1, 1)
            ax.add_patch(Rectangle((x - 0.5, y - 0.5), patch, patch, fill=False, linewidth=2,
                                   edgecolor="yellow" if centre else "white"))
            ax.text(x + patch / 2 - 0.5, y + patch / 2 - 0.5, "C" if centre else str(label),
                    ha="center", va="center", fontsize=11, fontweight="bold", color="black",
                    bbox={"facecolor": "yellow" if centre else "white", "alpha": 0.8, "pad": 1})
            label += 0 if centre else 1
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def pair_canvas(pair: torch.Tensor, label: int, *, gap: int = 4) -> torch.Tensor:
    """A (centre, neighbour) pair (2, C, p, p) placed on a white 3x3 canvas where the label
    says: (C, 3p + 2 gap, 3p + 2 gap), each patch rescaled to [0, 1] for display."""
    from .pretext.relative_patch import offset_of

    c, p = pair.shape[1], pair.shape[-1]
    side = 3 * p + 2 * gap
    canvas = torch.ones(c, side, side)
    dr, dc = offset_of(label)
    for patch, (r, col) in zip(pair, ((1, 1), (1 + dr, 1 + dc))):
        lo, hi = patch.min(), patch.max()
        shown = (patch - lo) / (hi - lo).clamp_min(1e-8)
        y, x = r * (p + gap), col * (p + gap)
        canvas[:, y:y + p, x:x + p] = shown.cpu()
    return canvas


def show_pairs(pairs: torch.Tensor, labels, *, gap: int = 4, titles=None, ncols: int = 8,
               size: float = 1.4, suptitle=None, title_colors=None):
    """Pairs (N, 2, C, p, p), each drawn on a 3x3 canvas with the neighbour where its label
    says (:func:`pair_canvas`); returns the figure."""
    canvases = torch.stack([pair_canvas(pair, int(k), gap=gap) for pair, k in zip(pairs, labels)])
    return show_images(canvases, titles=titles, ncols=ncols, size=size, suptitle=suptitle,
                       title_colors=title_colors)
