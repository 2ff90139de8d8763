"""Batched tensor operations that several pretext tasks share.

Both are written for speed on small tensors, because they run on every training batch:

- :func:`cut_squares` cuts any number of squares out of every image of a batch with one
  ``torch.take`` (advanced indexing over image, row and column is several times slower on
  the CPU);
- :func:`normalise_each` normalises every patch by its own mean and standard deviation with two
  plain passes over a (samples, values) view (``torch.std`` over trailing axes is about ten times
  slower on the CPU).

Both work on uint8 and float tensors, on any device. :func:`check_batch` is the shape check
every task's batch makers start with.
"""

from __future__ import annotations

import math

import torch


def check_batch(images) -> None:
    """Raise a ValueError unless ``images`` is a batch of images, a tensor (N, C, H, W)."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"expected a batch of images (N, C, H, W), got {shape}")


def cut_squares(images: torch.Tensor, corners: torch.Tensor, size: int) -> torch.Tensor:
    """Cut ``size`` x ``size`` squares out of images (N, C, H, W) -> (N, K, C, size, size).

    ``corners`` holds the top-left pixel (row, column) of each square: (N, K, 2) for squares
    whose channels sit together, or (N, K, C, 2) to place every channel of a square on its own
    (a per-channel shift). Corners must keep the square inside the image.
    """
    n, c, h, w = images.shape
    corners = corners.to(images.device)
    if corners.ndim == 3:
        corners = corners.unsqueeze(2).expand(n, corners.shape[1], c, 2)
    if corners.ndim != 4 or corners.shape[0] != n or corners.shape[2] != c:
        raise ValueError(f"corners must be (N, K, 2) or (N, K, C, 2) for images "
                         f"{tuple(images.shape)}, got {tuple(corners.shape)}")
    k = corners.shape[1]
    dev = images.device
    # one flat index per square pixel into the images read as one row-major vector
    base = (torch.arange(n, device=dev).view(n, 1, 1) * c
            + torch.arange(c, device=dev).view(1, 1, c)) * (h * w)  # (N, 1, C)
    start = base + corners[..., 0] * w + corners[..., 1]  # (N, K, C)
    ar = torch.arange(size, device=dev)
    offsets = (ar[:, None] * w + ar[None, :]).flatten()  # (size * size,)
    return images.contiguous().take(start[..., None] + offsets).view(n, k, c, size, size)


def normalise_each(x: torch.Tensor, *, dims: int = 3, eps: float = 1e-3) -> torch.Tensor:
    """Subtract the mean of every sample over its last ``dims`` axes and divide by their
    standard deviation (unbiased, as ``torch.std``) plus ``eps``; float in, float out.

    ``eps`` keeps a flat patch (sky) flat instead of blowing its noise up.
    """
    if x.ndim < dims:
        raise ValueError(f"cannot normalise over the last {dims} axes of a {x.ndim}-D tensor")
    values = math.prod(x.shape[x.ndim - dims:])
    flat = x.reshape(-1, values)
    centred = flat - flat.mean(1, keepdim=True)
    var = centred.square().sum(1, keepdim=True).div_(max(values - 1, 1))
    return centred.div_(var.sqrt_().add_(eps)).view(x.shape)
