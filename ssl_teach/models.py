"""The shared backbone (a small fully-convolutional network with per-block features) and heads.

Every pretext task and both baselines use the same :class:`Backbone`; only the head differs.
The backbone returns the feature map of every block, so the probe can ask which block a task
shapes best (the rotation paper found a middle block often beats the last one).
"""

from __future__ import annotations

import torch
from torch import nn


class ConvBlock(nn.Sequential):
    """conv3x3 -> 2x2 max-pool -> BatchNorm -> ReLU (halves the size); with ``convs`` > 1,
    the first convolutions run at full size with their own BatchNorm and ReLU.

    Pooling right after the convolution (before BatchNorm and ReLU) gives the same kind of
    features as the usual order but runs BatchNorm and ReLU on a quarter of the pixels, which
    nearly doubles the speed of training on a CPU, where these memory-bound layers dominate.
    """

    def __init__(self, c_in: int, c_out: int, *, convs: int = 1):
        layers: list[nn.Module] = []
        for _ in range(convs - 1):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                       nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            c_in = c_out
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.MaxPool2d(2),
                   nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
        super().__init__(*layers)


class Backbone(nn.Module):
    """A VGG-style stack of conv blocks; ``forward`` returns the list of every block's output.

    Widths double from block to block (``width``, 2*width, 4*width, ...); every block halves the
    spatial size, so a 64x64 input gives maps of 32, 16, 8 and 4 pixels with 4 blocks.
    """

    def __init__(self, *, in_channels: int = 3, width: int = 32, depth: int = 4,
                 convs_per_block: int = 1):
        super().__init__()
        if depth < 1 or width < 1:
            raise ValueError(f"backbone needs depth >= 1 and width >= 1, got {depth=}, {width=}")
        self.in_channels = in_channels
        self.widths = [width * 2**i for i in range(depth)]
        chans = [in_channels, *self.widths]
        self.blocks = nn.ModuleList(
            ConvBlock(chans[i], chans[i + 1], convs=convs_per_block) for i in range(depth))

    @property
    def block_names(self) -> list[str]:
        """Names of the blocks, used as keys in every probe table: 'block1', 'block2', ..."""
        return [f"block{i + 1}" for i in range(len(self.blocks))]

    @property
    def out_channels(self) -> int:
        return self.widths[-1]

    def min_input_size(self) -> int:
        """Smallest input side for which the last block still has one pixel."""
        return 2 ** len(self.blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"backbone expects images (N, {self.in_channels}, H, W), got {tuple(x.shape)}")
        if min(x.shape[-2:]) < self.min_input_size():
            raise ValueError(
                f"input {tuple(x.shape[-2:])} is too small for {len(self.blocks)} blocks: "
                f"use inputs of at least {self.min_input_size()} pixels or fewer blocks")
        feats = []
        for block in self.blocks:
            x = block(x)
            feats.append(x)
        return feats


def global_pool(feature_map: torch.Tensor) -> torch.Tensor:
    """Average over space: (N, C, H, W) -> (N, C)."""
    return feature_map.mean(dim=(2, 3))


class LinearHead(nn.Module):
    """Global-average-pooled last block -> dropout -> linear classifier: the head of
    single-input tasks (rotation, Exemplar-CNN) and of the supervised baseline."""

    def __init__(self, in_features: int, num_classes: int, *, hidden: int = 0,
                 dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten(), nn.Dropout(dropout)]
        if hidden:
            layers += [nn.Linear(in_features, hidden), nn.BatchNorm1d(hidden),
                       nn.ReLU(inplace=True)]
            in_features = hidden
        layers.append(nn.Linear(in_features, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.net(pooled)


class Classifier(nn.Module):
    """Backbone + head for one input image per sample: logits = head(pool(last block))."""

    def __init__(self, backbone: Backbone, head: nn.Module):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(global_pool(self.backbone(x)[-1]))


def build_backbone(*, in_channels: int = 3, width: int = 32, depth: int = 4,
                   convs_per_block: int = 1, seed: int = 0) -> Backbone:
    """A freshly initialised backbone; the same seed gives the same weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Backbone(in_channels=in_channels, width=width, depth=depth,
                        convs_per_block=convs_per_block)
