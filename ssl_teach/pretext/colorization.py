"""Colorization: predict an image's colours from its lightness alone.

Zhang, Isola & Efros, "Colorful Image Colorization", ECCV 2016,
https://arxiv.org/abs/1603.08511. The image is split in CIE Lab into its lightness L and its two
colour channels ab; the network sees L and predicts ab. Any colour photograph is a free training
pair, and to colour a scene correctly the network has to recognise what is in it (grass is green,
sky is blue, but a car may be any colour).

Paper details kept here:

- colour as classification, not regression: the ab plane is cut into squares of side ``grid``
  = 10, of which only those that hold a displayable (sRGB) colour are classes (the paper counts
  313; :func:`ab_bins` finds them by converting a dense sample of the RGB cube), and every output
  pixel gets a distribution over those bins. An L2 loss on ab, the obvious alternative, is
  minimised by the mean of the plausible colours, and the mean of a red and a blue car is a grey
  one: regression gives washed-out images, which the classification loss avoids;
- class rebalancing: natural images are dominated by unsaturated ab values (greys, browns), so
  each pixel's loss is weighted by w(q) proportional to ((1 - lambda) p~(q) + lambda / Q)^-1,
  p~ the distribution of the bins over the training images smoothed by a Gaussian of
  sigma = 5 in ab, lambda = ``rebalance`` = 0.5, and the weights scaled so that their mean over
  p~ is 1 (:func:`rebalance_weights`); ``rebalance`` = 1 turns it off;
- predictions at a lower resolution than the input's, and the "annealed mean" to turn a
  distribution into a colour: the mean of the distribution sharpened by a temperature T = 0.38
  (:func:`annealed_mean`): T = 1 is the mean (greyish), T -> 0 the mode (vivid but patchy).

Three departures. The output has 1/8 of the input's side (``stride`` = 8): the paper's 1/4
gives 56 x 56 colours for 224 px images; for the course's 64 px images, 8 x 8 colours cost a
fraction of what 16 x 16 do in the decoder and the loss, and colour varies slowly (JPEG keeps it
at half resolution too). Each pixel's target is its nearest bin (the paper spreads it over the
five nearest with Gaussian weights). And the network is the course's backbone with a small
hypercolumn decoder (:class:`ColorizationModel`) instead of the paper's VGG-style encoder with
dilated convolutions. The backbone reads one channel, L / 100, in training and in the probe.

Shapes: ``images`` (N, 3, H, W) RGB, uint8 or float in [0, 1] -> ``inputs`` (N, 1, H, W) and
``targets`` (N, H / s, W / s) bin indices, s = ``stride``.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import torch
from torch import nn

from ..data import to_float
from ..models import Backbone
from .base import Task
from .ops import check_batch

WHITE = (0.95047, 1.0, 1.08883)
"""The D65 reference white in XYZ (sRGB's white point)."""
RGB_TO_XYZ = ((0.4124564, 0.3575761, 0.1804375),
              (0.2126729, 0.7151522, 0.0721750),
              (0.0193339, 0.1191920, 0.9503041))
"""Linear sRGB to CIE XYZ (D65)."""
AB_RANGE = 110
"""The ab plane is cut into squares over [-AB_RANGE, AB_RANGE) in both a and b: it holds every
sRGB colour (their a and b lie within about -87..99 and -108..95)."""
SIGMA = 5.0
"""Width (in ab units) of the Gaussian that smooths the bin distribution for rebalancing."""
_DELTA = 6 / 29


# --------------------------------------------------------------------------- colour spaces

def _check_rgb(images: torch.Tensor, what: str = "colorization") -> None:
    check_batch(images)
    if images.shape[1] != 3:
        raise ValueError(f"{what} predicts colours from lightness, so it needs RGB images (3 "
                         f"channels), got {images.shape[1]}: use a colour dataset (the scenes, "
                         f"CIFAR-10, STL-10), not a grayscale one")


def rgb_to_lab(images: torch.Tensor) -> torch.Tensor:
    """sRGB images (N, 3, H, W) in [0, 1] -> CIE Lab (N, 3, H, W): L in [0, 100], a and b in
    about [-110, 110] (D65 white)."""
    _check_rgb(images, "the Lab conversion")
    rgb = images.float().clamp(0, 1)
    linear = torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    m = torch.tensor(RGB_TO_XYZ, dtype=linear.dtype, device=linear.device)
    white = torch.tensor(WHITE, dtype=linear.dtype, device=linear.device).view(1, 3, 1, 1)
    xyz = torch.einsum("ij,njhw->nihw", m, linear) / white
    f = torch.where(xyz > _DELTA ** 3, xyz.clamp_min(1e-12) ** (1 / 3),
                    xyz / (3 * _DELTA ** 2) + 4 / 29)
    fx, fy, fz = f.unbind(1)
    return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], 1)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """CIE Lab (N, 3, H, W) -> sRGB (N, 3, H, W), clipped to [0, 1] where a Lab colour lies
    outside the sRGB gamut."""
    if lab.ndim != 4 or lab.shape[1] != 3:
        raise ValueError(f"expected Lab images (N, 3, H, W), got {tuple(lab.shape)}")
    L, a, b = lab.float().unbind(1)
    fy = (L + 16) / 116
    f = torch.stack([fy + a / 500, fy, fy - b / 200], 1)
    white = torch.tensor(WHITE, dtype=f.dtype, device=f.device).view(1, 3, 1, 1)
    xyz = torch.where(f > _DELTA, f ** 3, 3 * _DELTA ** 2 * (f - 4 / 29)) * white
    m_inv = torch.linalg.inv(torch.tensor(RGB_TO_XYZ, dtype=torch.float64)).to(f)
    linear = torch.einsum("ij,njhw->nihw", m_inv, xyz).clamp(0, 1)
    rgb = torch.where(linear <= 0.0031308, 12.92 * linear,
                      1.055 * linear.clamp_min(1e-12) ** (1 / 2.4) - 0.055)
    return rgb.clamp(0, 1)


# --------------------------------------------------------------------------- the ab bins

def bin_of(ab: torch.Tensor, grid: int) -> torch.Tensor:
    """The square of the ab grid each colour falls in: ab (..., 2) -> flat index (...) into the
    (2 * AB_RANGE / grid)^2 squares, row a, column b."""
    side = math.ceil(2 * AB_RANGE / grid)
    cell = ((ab + AB_RANGE) / grid).floor().long().clamp(0, side - 1)
    return cell[..., 0] * side + cell[..., 1]


@functools.lru_cache(maxsize=4)
def ab_bins(grid: int = 10, levels: int = 96) -> torch.Tensor:
    """Centres (Q, 2) of the squares of the ab grid that hold at least one sRGB colour: those
    of ``levels``^3 colours spread evenly over the RGB cube, in grid order. The classes of
    colorization (Q = 313 in the paper, at grid 10)."""
    if isinstance(grid, bool) or not isinstance(grid, int) or not 1 <= grid <= AB_RANGE:
        raise ValueError(f"grid (side of an ab square) must be an int in [1, {AB_RANGE}], "
                         f"got {grid!r}")
    v = torch.linspace(0, 1, levels)
    rgb = torch.stack(torch.meshgrid(v, v, v, indexing="ij"), 0).reshape(1, 3, -1, 1)
    ab = rgb_to_lab(rgb)[0, 1:, :, 0].T  # (levels^3, 2)
    side = math.ceil(2 * AB_RANGE / grid)
    used = torch.zeros(side * side, dtype=torch.bool)
    used[bin_of(ab, grid)] = True
    idx = used.nonzero().flatten()
    centres = torch.stack([idx // side, idx % side], 1).float() * grid - AB_RANGE + grid / 2
    return centres


@functools.lru_cache(maxsize=4)
def _class_of_square(grid: int) -> torch.Tensor:
    """For every square of the ab grid, the class whose centre is nearest to its centre: the
    square's own class where it is in the gamut (a square's points are nearer to its own centre
    than to any other square's)."""
    side = math.ceil(2 * AB_RANGE / grid)
    idx = torch.arange(side * side)
    squares = torch.stack([idx // side, idx % side], 1).float() * grid - AB_RANGE + grid / 2
    return torch.cdist(squares, ab_bins(grid)).argmin(1)


def quantise(ab: torch.Tensor, grid: int = 10) -> torch.Tensor:
    """The class of every pixel: the bin whose square holds its colour, ab (N, 2, h, w) ->
    class indices (N, h, w) into :func:`ab_bins` (a colour outside the sRGB gamut, as an average
    of colours may be, takes the class nearest to its square's centre)."""
    return _class_of_square(grid).to(ab.device)[bin_of(ab.permute(0, 2, 3, 1), grid)]


def rebalance_weights(counts: torch.Tensor, centres: torch.Tensor, *, rebalance: float = 0.5,
                      sigma: float = SIGMA) -> torch.Tensor:
    """The class weights of the loss (Q,): w proportional to ((1 - rebalance) p~ + rebalance /
    Q)^-1, p~ the bin distribution ``counts`` smoothed by a Gaussian of ``sigma`` in ab, scaled
    so that the mean weight over p~ is 1. ``rebalance`` = 1 gives every bin weight 1."""
    _check_rebalance(rebalance)
    counts = counts.double()
    if counts.sum() <= 0:
        raise ValueError("no pixels to estimate the colour distribution from")
    p = counts / counts.sum()
    d2 = torch.cdist(centres.double(), centres.double()) ** 2
    kernel = torch.exp(-d2 / (2 * sigma ** 2))
    smooth = kernel @ p
    smooth = smooth / smooth.sum()
    w = 1 / ((1 - rebalance) * smooth + rebalance / len(p))
    return (w / (smooth * w).sum()).float()


def _check_rebalance(rebalance):
    if not 0 <= rebalance <= 1:
        raise ValueError(f"rebalance (the share of the uniform distribution) must lie in "
                         f"[0, 1], got {rebalance!r}")


def annealed_mean(logits: torch.Tensor, centres: torch.Tensor, *, temperature: float = 0.38
                  ) -> torch.Tensor:
    """The colour of every output pixel: the mean ab of its bin distribution sharpened by
    ``temperature`` (softmax(log p / T)): logits (N, Q, h, w) -> ab (N, 2, h, w)."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    q = torch.softmax(torch.log_softmax(logits.float(), 1) / temperature, 1)
    return torch.einsum("nqhw,qc->nchw", q, centres.to(q))


# --------------------------------------------------------------------------- the model

class ColorizationModel(nn.Module):
    """Backbone + a hypercolumn decoder: the maps of every block from the one at the output's
    resolution on, upsampled to it and concatenated, then 1x1 convolutions to a distribution
    over the ab bins at every pixel: L (N, 1, H, W) -> logits (N, Q, H / s, W / s).

    ``class_weights`` (Q,) is a buffer, set from the training images before training
    (:meth:`ColorizationTask.fit_to_data`) and saved with the weights; :meth:`pretext_loss`, the
    rebalanced cross-entropy, is the loss the training loop uses."""

    def __init__(self, backbone: Backbone, num_classes: int, *, stride: int, hidden: int):
        super().__init__()
        self.backbone = backbone
        self.first = int(math.log2(stride)) - 1  # the block whose map has the output's size
        channels = sum(backbone.widths[self.first:])
        self.decoder = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True), nn.Conv2d(hidden, num_classes, 1))
        self.register_buffer("class_weights", torch.ones(num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.backbone(x)[self.first:]
        size = maps[0].shape[-2:]
        cols = [maps[0]] + [nn.functional.interpolate(m, size=size, mode="bilinear",
                                                      align_corners=False) for m in maps[1:]]
        return self.decoder(torch.cat(cols, 1))

    def pretext_loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean over pixels of w(target) x cross-entropy (the paper's eq. 2 with hard targets)."""
        per_pixel = nn.functional.cross_entropy(logits, targets, reduction="none")
        return (self.class_weights[targets] * per_pixel).mean()


# --------------------------------------------------------------------------- the task

@dataclasses.dataclass(frozen=True)
class ColorizationTask(Task):
    """Colorization as a pretext task (see the module docstring)."""

    grid: int = 10  # side of an ab square (the paper: 10, giving 313 in-gamut bins)
    stride: int = 8  # the output has 1 / stride of the input's side (the paper: 4)
    rebalance: float = 0.5  # lambda: share of the uniform distribution (1: no rebalancing)
    temperature: float = 0.38  # of the annealed mean that turns predictions into colours
    hidden: int = 64  # width of the decoder's hidden 1x1 convolution
    prior_images: int = 2000  # training images behind the rebalancing weights

    name = "colorization"
    samples_per_image = 1
    in_channels = 1  # the backbone sees lightness only

    def __post_init__(self):
        ab_bins(self.grid)  # checks the grid
        if self.stride not in (2, 4, 8, 16):
            raise ValueError(f"stride must be 2, 4, 8 or 16 (the output is the map of block "
                             f"log2(stride)), got {self.stride!r}")
        _check_rebalance(self.rebalance)
        if not self.temperature > 0 or self.hidden < 1 or self.prior_images < 1:
            raise ValueError(f"need temperature > 0, hidden >= 1 and prior_images >= 1, got "
                             f"{self.temperature}, {self.hidden}, {self.prior_images}")

    @property
    def min_image_size(self) -> int:
        return max(16, self.stride)  # the default backbone halves the size 4 times

    @property
    def centres(self) -> torch.Tensor:
        """The ab centres (Q, 2) of the classes."""
        return ab_bins(self.grid)

    @property
    def num_classes(self) -> int:
        return len(self.centres)

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(f"a={a:.0f} b={b:.0f}" for a, b in self.centres.tolist())

    def lightness(self, images: torch.Tensor) -> torch.Tensor:
        """The network's input: L / 100, (N, 1, H, W) in [0, 1]."""
        _check_rgb(images)
        return rgb_to_lab(to_float(images))[:, :1] / 100

    def colour_targets(self, images: torch.Tensor) -> torch.Tensor:
        """The class of every output pixel: ab averaged over stride x stride squares, then its
        bin, (N, H / s, W / s)."""
        return self.make_batch(images)[1]

    def make_batch(self, images: torch.Tensor, *, generator: torch.Generator | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs L / 100 (N, 1, H, W) and targets (N, H / s, W / s). Nothing random (the
        generator is not used): the pairs are the images' own lightness and colours."""
        _check_rgb(images)
        lab = rgb_to_lab(to_float(images))
        ab = nn.functional.avg_pool2d(lab[:, 1:], self.stride)
        return lab[:, :1] / 100, quantise(ab, self.grid)

    def fit_to_data(self, model: ColorizationModel, images: torch.Tensor, *,
                    seed: int = 0) -> None:
        """Set ``model.class_weights`` from the bin distribution of up to ``prior_images`` of
        the training images (a seeded random choice)."""
        g = torch.Generator().manual_seed(seed)
        pick = torch.randperm(len(images), generator=g)[:self.prior_images]
        counts = torch.zeros(self.num_classes, dtype=torch.float64)
        for i in range(0, len(pick), 256):
            t = self.colour_targets(images[pick[i:i + 256]].cpu())
            counts += torch.bincount(t.flatten(), minlength=self.num_classes)
        weights = rebalance_weights(counts, self.centres, rebalance=self.rebalance)
        model.class_weights.copy_(weights.to(model.class_weights))

    def build_model(self, backbone: Backbone) -> ColorizationModel:
        if len(backbone.widths) < int(math.log2(self.stride)):
            raise ValueError(f"stride {self.stride} needs a backbone of at least "
                             f"{int(math.log2(self.stride))} blocks, got {len(backbone.widths)}")
        if backbone.in_channels != self.in_channels:
            raise ValueError(f"colorization's backbone reads lightness only (1 channel), got "
                             f"one for {backbone.in_channels} channels")
        return ColorizationModel(backbone, self.num_classes, stride=self.stride,
                                 hidden=self.hidden)

    def probe_inputs(self, images: torch.Tensor) -> torch.Tensor:
        """Whole images go in as the network learned to see them: lightness only."""
        return self.lightness(images)

    @torch.no_grad()
    def colourise(self, model: ColorizationModel, images: torch.Tensor, *,
                  temperature: float | None = None) -> torch.Tensor:
        """The images coloured by the network: their own L at full resolution with the
        predicted ab (annealed mean, upsampled), back in RGB, (N, 3, H, W) in [0, 1]."""
        was_training = model.training
        model.eval()
        try:
            inputs = self.lightness(images)
            logits = model(inputs)
        finally:
            model.train(was_training)
        return self.colours(logits, inputs, temperature=temperature)

    def colours(self, logits: torch.Tensor, inputs: torch.Tensor, *,
                temperature: float | None = None) -> torch.Tensor:
        """The network's ``logits`` for ``inputs`` (L / 100, as :meth:`make_batch` makes them)
        as images: that lightness at full resolution with the predicted ab (annealed mean,
        upsampled), back in RGB, (N, 3, H, W) in [0, 1]."""
        ab = annealed_mean(logits, self.centres,
                           temperature=self.temperature if temperature is None else temperature)
        ab = nn.functional.interpolate(ab, size=inputs.shape[-2:], mode="bilinear",
                                       align_corners=False)
        return lab_to_rgb(torch.cat([100 * inputs.float(), ab], 1))
