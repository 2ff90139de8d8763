"""Context encoders: fill in a hidden part of an image from the rest of it.

Pathak, Krähenbühl, Donahue, Darrell & Efros, "Context Encoders: Feature Learning by
Inpainting", CVPR 2016, https://arxiv.org/abs/1604.07379. A region of every image is hidden
(filled with a constant colour); an encoder reads what is left, the *context*, and a decoder
paints the whole image, of which the hidden region is scored. To paint a missing window, wheel
or horizon, the encoder has to make sense of what surrounds it.

Paper details kept here:

- the hidden region: a central square of half the image's side (``mask="central"``, the paper's
  64 of 128 px), or several smaller squares at random places, which may overlap and together
  cover at most a quarter of the image (``mask="blocks"``: ``blocks`` squares of ``block`` of the
  side). The paper's third kind, random shapes taken from segmentation masks of another
  dataset, needs that dataset and is left out; the paper found it the best for features, and
  both random kinds better than the central square, whose sharp, fixed edge the network latches
  onto;
- the hidden pixels are set to a constant ``fill`` (the paper: the dataset's mean colour; here
  mid-grey, which the scenes' and CIFAR-10's channel means lie near);
- the reconstruction loss is the L2 distance on the hidden region, and the prediction also
  covers a band of ``overlap`` of the side (the paper: 7 of 128 px) around it, which the encoder
  *can* see, weighted ``overlap_weight`` = 10 times more: the painted region must join its
  context without a seam;
- the encoder-decoder: the encoder's last map is passed through a *channel-wise* fully connected
  layer (every channel mixes all of its own positions, so that information crosses the image
  without the square weight matrix of a full layer), then a 1x1 convolution mixes the channels,
  and up-convolutions (transposed, stride 2) bring it back to the image's size. No skip
  connections: everything the decoder knows has passed through the encoder.

Left out: the adversarial loss. The paper adds a discriminator that tells painted regions from
real ones (weight 0.001 against 0.999 for L2) because L2 alone is minimised by the *mean* of
the plausible fillings, a blurry one; the adversarial term picks one sharp filling instead. It
sharpens the pictures, but the paper's feature-learning results (classification, detection,
segmentation) come from L2 training alone: its authors did not get the adversarial loss to
converge with their AlexNet encoder. It would also double the networks to train and tune. So
the course trains with L2 only: expect blurry fillings, and read them as the mean of what could
be there.

The encoder is the course's backbone; the probe reads its blocks on whole images (nothing
hidden), as for every task.

Pretext "accuracy" for a regression task: the share of hidden pixels painted within
``tolerance`` (0.1 of the full range) of their true value in every channel. A colour drawn at
random from the RGB cube lands that close with probability at most (2 x tolerance)^3: that is
``chance``. The constant fill and diffusion from the border (:func:`diffuse_fill`) are the
baselines to beat: they copy the context inwards, which is all a network that did not learn
what scenes look like could do.

Shapes: ``images`` (N, C, H, W), uint8 or float in [0, 1] -> ``inputs`` (N, C, H, W) with the
hidden pixels set to ``fill``, ``targets`` (N, C + 1, H, W): the true image and, as the last
channel, each pixel's region (:data:`CONTEXT` 0, :data:`HIDDEN` 1, :data:`BAND` 2).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..data import to_float
from ..models import Backbone
from .base import Task
from .ops import check_batch

CONTEXT, HIDDEN, BAND = 0, 1, 2
"""The region codes in the last channel of the targets: seen and not scored, hidden (scored),
seen but scored ``overlap_weight`` times (the band around the hidden region)."""

MASKS = ("central", "blocks")


def check_images(images, *, min_size: int) -> None:
    """Raise a ValueError unless ``images`` is a batch (N, C, H, W) with H, W >= min_size."""
    check_batch(images)
    if min(images.shape[-2:]) < min_size:
        raise ValueError(f"images of {tuple(images.shape[-2:])} pixels are too small to hide a "
                         f"region in and paint it back: they need at least {min_size}x{min_size}")


# --------------------------------------------------------------------------- masks

def central_mask(n: int, height: int, width: int, side: int, *,
                 device: str | torch.device = "cpu") -> torch.Tensor:
    """A hidden ``side`` x ``side`` square in the middle of every image: bool (N, 1, H, W)."""
    hidden = torch.zeros(n, 1, height, width, dtype=torch.bool, device=device)
    top, left = (height - side) // 2, (width - side) // 2
    hidden[..., top:top + side, left:left + side] = True
    return hidden


def block_mask(n: int, height: int, width: int, side: int, blocks: int, *,
               generator: torch.Generator | None = None,
               device: str | torch.device = "cpu") -> torch.Tensor:
    """``blocks`` hidden ``side`` x ``side`` squares per image, each at a uniformly random place
    inside it (they may overlap): bool (N, 1, H, W)."""
    top = torch.randint(0, height - side + 1, (n, blocks), generator=generator)
    left = torch.randint(0, width - side + 1, (n, blocks), generator=generator)
    rows = torch.arange(height).view(1, 1, height, 1)
    cols = torch.arange(width).view(1, 1, 1, width)
    t, l_ = top.view(n, blocks, 1, 1), left.view(n, blocks, 1, 1)
    inside = ((rows >= t) & (rows < t + side) & (cols >= l_) & (cols < l_ + side)).any(1)
    return inside.unsqueeze(1).to(device)


def band_around(hidden: torch.Tensor, width: int) -> torch.Tensor:
    """The seen pixels within ``width`` pixels (in rows and columns: a square neighbourhood) of
    a hidden one: bool, the shape of ``hidden`` (N, 1, H, W)."""
    if width <= 0:
        return torch.zeros_like(hidden)
    grown = nn.functional.max_pool2d(hidden.float(), 2 * width + 1, stride=1, padding=width)
    return grown.bool() & ~hidden


def diffuse_fill(inputs: torch.Tensor, hidden: torch.Tensor, *,
                 iterations: int | None = None, tol: float = 1e-4) -> torch.Tensor:
    """The classic fill without learning: every hidden pixel repeatedly replaced by the mean of
    its 3 x 3 neighbourhood (those inside the image), so that the border's colours flow inwards:
    a discrete solution of Laplace's equation with the context as boundary. Stops once no pixel
    changes by more than ``tol``, or after ``iterations`` (default: a quarter of the longer
    side squared, which a hole of half the side needs to settle). (N, C, H, W) float."""
    x = inputs.float().clone()
    hidden = hidden.to(x.device)
    steps = max(inputs.shape[-2:]) ** 2 // 4 if iterations is None else iterations
    share = nn.functional.avg_pool2d(torch.ones_like(x[:1, :1]), 3, stride=1, padding=1)
    for _ in range(steps):
        mean = nn.functional.avg_pool2d(x, 3, stride=1, padding=1) / share
        new = torch.where(hidden, mean, x)
        change = float((new - x).abs().max()) if x.numel() else 0.0
        x = new
        if change <= tol:
            break
    return x


# --------------------------------------------------------------------------- the model

class ChannelwiseLinear(nn.Module):
    """Every channel's map (h x w values) through a fully connected layer of its own:
    (N, C, h, w) -> (N, C, h, w) with C x (hw)^2 weights instead of (C hw)^2 for a full layer."""

    def __init__(self, channels: int, positions: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(channels, positions, positions))
        self.bias = nn.Parameter(torch.zeros(channels, positions))
        nn.init.kaiming_uniform_(self.weight.view(channels * positions, positions), a=5 ** 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        if c * h * w != self.bias.numel():
            raise ValueError(f"the channel-wise layer was built for {self.bias.shape[0]} "
                             f"channels of {self.bias.shape[1]} positions, got a map "
                             f"{tuple(x.shape[1:])}: train and paint at one image size")
        flat = x.reshape(n, c, h * w)
        out = torch.einsum("ncp,cqp->ncq", flat, self.weight.to(flat.dtype)) + self.bias
        return out.reshape(n, c, h, w)


class ContextEncoder(nn.Module):
    """Backbone (the encoder) -> channel-wise fully connected layer -> 1x1 convolution ->
    up-convolutions back to the image's size: masked images (N, C, H, W) -> painted images
    (N, C, H, W). :meth:`pretext_loss` is the weighted L2 of the paper, :meth:`pretext_hits`
    the share of hidden pixels painted within the tolerance."""

    def __init__(self, backbone: Backbone, *, image_size: int, overlap_weight: float,
                 tolerance: float):
        super().__init__()
        self.backbone = backbone
        self.overlap_weight, self.tolerance = overlap_weight, tolerance
        depth, c = len(backbone.widths), backbone.out_channels
        side = image_size // 2 ** depth  # each block halves the map, rounding down
        if side < 1:
            raise ValueError(f"images of {image_size} px are too small for {depth} blocks: "
                             f"use images of at least {2 ** depth} px or fewer blocks")
        self.bottleneck = nn.Sequential(
            ChannelwiseLinear(c, side * side), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
            nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True))
        widths = [c, *reversed(backbone.widths[:-1])]
        layers: list[nn.Module] = []
        for a, b in zip(widths, widths[1:]):
            layers += [nn.ConvTranspose2d(a, b, 4, stride=2, padding=1, bias=False),
                       nn.BatchNorm2d(b), nn.ReLU(inplace=True)]
        layers.append(nn.ConvTranspose2d(widths[-1], backbone.in_channels, 4, stride=2,
                                         padding=1))
        self.decoder = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.decoder(self.bottleneck(self.backbone(x)[-1]))
        if out.shape[-2:] != x.shape[-2:]:  # a side that does not halve evenly (28, 96 px):
            # the up-convolutions stop short of it, and a bilinear resize covers the rest
            out = nn.functional.interpolate(out, size=x.shape[-2:], mode="bilinear",
                                            align_corners=False)
        return out

    def pretext_loss(self, output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Weighted mean squared error: weight 1 on hidden pixels, ``overlap_weight`` on the
        band, 0 on the rest of the context, averaged over the scored pixels' weights."""
        truth, region = targets[:, :-1], targets[:, -1:]
        weight = (region == HIDDEN).float() + self.overlap_weight * (region == BAND).float()
        se = (output.float() - truth).square().mean(1, keepdim=True)
        return (weight * se).sum() / weight.sum().clamp_min(1)

    def pretext_hits(self, output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Share of hidden pixels whose every channel lies within ``tolerance`` of the truth."""
        truth, region = targets[:, :-1], targets[:, -1]
        close = ((output.float() - truth).abs() <= self.tolerance).all(1)
        hidden = region == HIDDEN
        return (close & hidden).sum() / hidden.sum().clamp_min(1)


# --------------------------------------------------------------------------- the task

@dataclasses.dataclass(frozen=True)
class InpaintingTask(Task):
    """Context encoders as a pretext task (see the module docstring)."""

    mask: str = "central"  # "central" (one square) or "blocks" (several at random places)
    hole: float = 0.5  # central: the hidden square's side, a share of the image's side
    blocks: int = 4  # blocks: how many squares
    block: float = 0.25  # blocks: each square's side, a share of the image's side
    overlap: float = 7 / 128  # the scored band around the hidden region, a share of the side
    overlap_weight: float = 10.0  # the band's weight in the loss against the hidden pixels'
    fill: float = 0.5  # the value of every channel of a hidden pixel
    tolerance: float = 0.1  # a hidden pixel is painted right within this of the truth

    name = "inpainting"
    samples_per_image = 1
    min_image_size = 16  # the default 4-block backbone halves the size 4 times

    def __post_init__(self):
        if self.mask not in MASKS:
            raise ValueError(f"mask must be one of {', '.join(MASKS)}, got {self.mask!r}")
        if not 0 < self.hole < 1 or not 0 < self.block < 1:
            raise ValueError(f"hole and block (shares of the image's side) must lie in (0, 1), "
                             f"got hole={self.hole!r}, block={self.block!r}")
        if isinstance(self.blocks, bool) or not isinstance(self.blocks, int) or self.blocks < 1:
            raise ValueError(f"blocks must be an int >= 1, got {self.blocks!r}")
        if not 0 <= self.overlap < 0.5 or not self.overlap_weight > 0:
            raise ValueError(f"need 0 <= overlap < 0.5 (a share of the side) and "
                             f"overlap_weight > 0, got {self.overlap!r}, "
                             f"{self.overlap_weight!r}")
        if not 0 <= self.fill <= 1 or not 0 < self.tolerance < 1:
            raise ValueError(f"need fill in [0, 1] and tolerance in (0, 1), got "
                             f"{self.fill!r}, {self.tolerance!r}")

    @property
    def chance(self) -> float:
        """At most this share of hidden pixels gets a colour drawn at random from the RGB cube
        within the tolerance (in all three channels)."""
        return min(1.0, 2 * self.tolerance) ** 3

    def sides(self, size: int) -> tuple[int, int]:
        """(hidden square's side, band width) in pixels for images of side ``size``."""
        hole = self.hole if self.mask == "central" else self.block
        return max(1, round(hole * size)), round(self.overlap * size)

    def hidden_mask(self, images: torch.Tensor, *,
                    generator: torch.Generator | None = None) -> torch.Tensor:
        """Which pixels are hidden, bool (N, 1, H, W) on the images' device (random places for
        ``mask="blocks"``, drawn from ``generator``)."""
        n, _, h, w = images.shape
        side, _ = self.sides(min(h, w))
        if self.mask == "central":
            return central_mask(n, h, w, side, device=images.device)
        return block_mask(n, h, w, side, self.blocks, generator=generator, device=images.device)

    def masked(self, images: torch.Tensor, hidden: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, targets) for ``images`` with the pixels ``hidden`` (bool (N, 1, H, W))
        hidden: any mask, such as one painted in a widget."""
        check_images(images, min_size=self.min_image_size)
        x = to_float(images)
        if hidden.shape != (x.shape[0], 1, *x.shape[-2:]) or hidden.dtype != torch.bool:
            raise ValueError(f"hidden must be a bool mask (N, 1, H, W) = "
                             f"{(x.shape[0], 1, *x.shape[-2:])}, got {hidden.dtype} "
                             f"{tuple(hidden.shape)}")
        hidden = hidden.to(x.device)
        _, band = self.sides(min(x.shape[-2:]))
        region = hidden.float() * HIDDEN + band_around(hidden, band).float() * BAND
        inputs = torch.where(hidden, torch.full_like(x, self.fill), x)
        return inputs, torch.cat([x, region], 1)

    def make_batch(self, images: torch.Tensor, *, generator: torch.Generator | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """Masked images (N, C, H, W) and targets (N, C + 1, H, W): see the module docstring."""
        check_images(images, min_size=self.min_image_size)
        return self.masked(images, self.hidden_mask(images, generator=generator))

    def build_model(self, backbone: Backbone, *, image_size: int = 64) -> ContextEncoder:
        return ContextEncoder(backbone, image_size=image_size,
                              overlap_weight=self.overlap_weight, tolerance=self.tolerance)

    def probe_inputs(self, images: torch.Tensor) -> torch.Tensor:
        """Whole images, nothing hidden."""
        return to_float(images)

    @torch.no_grad()
    def paint(self, model: ContextEncoder, images: torch.Tensor, hidden: torch.Tensor | None = None,
              *, generator: torch.Generator | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(masked inputs, the network's painting, the context with the hidden pixels painted)
        for ``images`` (the task's mask unless ``hidden`` is given), each (N, C, H, W) in
        [0, 1]."""
        if hidden is None:
            hidden = self.hidden_mask(images, generator=generator)
        inputs, targets = self.masked(images, hidden)
        was_training = model.training
        model.eval()
        try:
            out = model(inputs).float().clamp(0, 1)
        finally:
            model.train(was_training)
        hidden = hidden.to(out.device)
        return inputs, out, torch.where(hidden, out, targets[:, :-1])
