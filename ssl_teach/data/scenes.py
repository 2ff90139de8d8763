"""The embedded scenes dataset: upright objects on a ground under a sky, rendered from a seed.

Every image is drawn with vectorised tensor operations (no per-image Python drawing), so
10,000 images of 64x64 take a few seconds on one CPU core. Each object class is built from
parts (a house is a body, a roof and a door; a tree is a trunk and a crown), and everything
that is *not* the class is random: colours, sizes, positions, textures, the sky, the ground
and the clutter. That makes colour and background useless for recognising the class, so
random features stay weak and a pretext task has to learn shapes to help.

The cues that pretext tasks exploit can be switched on and off (see :class:`SceneConfig`):
gravity (sky above, ground below, shadows), the horizon, and clutter.
"""

from __future__ import annotations

import dataclasses
import math

import torch

CLASS_NAMES = (
    "house", "tree", "person", "car", "lamp post",
    "mushroom", "rocket", "table", "flower", "snowman",
)
"""The ten object classes, in label order."""


@dataclasses.dataclass(frozen=True)
class SceneConfig:
    """What a scene may contain; every field is a cue that can be switched on or off."""

    size: int = 64
    sky_and_ground: bool = True  # a horizon with a sky above and a ground below (gravity cue)
    plain_background_share: float = 0.25  # share of images with a textured wall, no horizon
    clutter: bool = True  # clouds, stones, grass and a sun that have nothing to do with the class
    shadows: bool = True  # a dark ellipse under each object
    texture: bool = True  # stripes and noise on objects and the ground
    upright: bool = True  # objects stand upright; False turns each one by a random quarter turn

    def __post_init__(self):
        if not isinstance(self.size, int) or self.size < 16:
            raise ValueError(f"scene size must be an int >= 16 pixels, got {self.size!r}")
        if not 0.0 <= self.plain_background_share <= 1.0:
            raise ValueError(
                "plain_background_share must lie in [0, 1], got "
                f"{self.plain_background_share!r}"
            )


# --------------------------------------------------------------------------------------------
# Signed-distance shapes. Coordinates are in units of the image side (0 = top/left, 1 =
# bottom/right); every parameter is a tensor of shape (N, 1, 1) so one call draws N shapes.


def _rect(x, y, cx, cy, w, h):
    """Signed distance (approximate) to an axis-aligned rectangle; negative inside."""
    return torch.maximum((x - cx).abs() - w / 2, (y - cy).abs() - h / 2)


def _ellipse(x, y, cx, cy, rx, ry):
    """Signed distance (approximate) to an axis-aligned ellipse; negative inside."""
    r = torch.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2)
    return (r - 1) * torch.minimum(rx, ry)


def _triangle(x, y, ax, ay, bx, by, cx, cy):
    """Signed distance to a triangle given by three corners (any orientation); negative inside."""
    # Orientation sign makes the half-plane test work for clockwise and anticlockwise corners.
    sign = torch.sign((bx - ax) * (cy - ay) - (by - ay) * (cx - ax))
    d = None
    for (px, py), (qx, qy) in (((ax, ay), (bx, by)), ((bx, by), (cx, cy)), ((cx, cy), (ax, ay))):
        ex, ey = qx - px, qy - py
        length = torch.sqrt(ex**2 + ey**2).clamp_min(1e-6)
        edge = sign * ((x - px) * ey - (y - py) * ex) / length
        d = edge if d is None else torch.maximum(d, edge)
    return d


def _union(*ds):
    out = ds[0]
    for d in ds[1:]:
        out = torch.minimum(out, d)
    return out


def _coverage(d, size):
    """Anti-aliased coverage in [0, 1] from a signed distance (one pixel of soft edge)."""
    return (0.5 - d * size).clamp(0.0, 1.0)


# --------------------------------------------------------------------------------------------
# Object classes: each returns a list of (signed distance, part index) layers, drawn in order.
# (bx, by) is the point where the object touches the ground, h its height; all (N, 1, 1).


def _house(x, y, bx, by, h, u):
    w = h * (0.75 + 0.25 * u[0])
    body_h = h * 0.55
    body = _rect(x, y, bx, by - body_h / 2, w, body_h)
    roof = _triangle(x, y, bx - w * 0.62, by - body_h, bx + w * 0.62, by - body_h, bx, by - h)
    door = _rect(x, y, bx + w * 0.18 * (u[1] - 0.5) * 2, by - body_h * 0.25, w * 0.2, body_h * 0.5)
    window = _rect(x, y, bx - w * 0.22, by - body_h * 0.65, w * 0.2, body_h * 0.22)
    return [(body, 0), (roof, 1), (door, 2), (window, 2)]


def _tree(x, y, bx, by, h, u):
    trunk = _rect(x, y, bx, by - h * 0.25, h * 0.12, h * 0.5)
    crown_r = h * (0.28 + 0.06 * u[0])
    crown = _ellipse(x, y, bx, by - h + crown_r, crown_r * (1.0 + 0.2 * u[1]), crown_r)
    return [(trunk, 1), (crown, 0)]


def _person(x, y, bx, by, h, u):
    leg_w, leg_h = h * 0.09, h * 0.42
    legs = _union(
        _rect(x, y, bx - h * 0.07, by - leg_h / 2, leg_w, leg_h),
        _rect(x, y, bx + h * 0.07, by - leg_h / 2, leg_w, leg_h),
    )
    torso = _rect(x, y, bx, by - h * 0.6, h * 0.26, h * 0.36)
    arm_y = by - h * (0.62 + 0.1 * u[0])
    arms = _rect(x, y, bx, arm_y, h * 0.55, h * 0.07)
    head = _ellipse(x, y, bx, by - h * 0.89, h * 0.11, h * 0.11)
    return [(legs, 1), (arms, 0), (torso, 0), (head, 2)]


def _car(x, y, bx, by, h, u):
    w = h * (1.9 + 0.3 * u[0])
    wheel_r = h * 0.2
    body = _rect(x, y, bx, by - wheel_r - h * 0.18, w, h * 0.42)
    cabin = _rect(x, y, bx - w * 0.08 * u[1], by - h * 0.78, w * 0.55, h * 0.42)
    wheels = _union(
        _ellipse(x, y, bx - w * 0.3, by - wheel_r, wheel_r, wheel_r),
        _ellipse(x, y, bx + w * 0.3, by - wheel_r, wheel_r, wheel_r),
    )
    return [(cabin, 1), (body, 0), (wheels, 2)]


def _lamp_post(x, y, bx, by, h, u):
    pole = _rect(x, y, bx, by - h * 0.45, h * 0.06, h * 0.9)
    foot = _rect(x, y, bx, by - h * 0.04, h * 0.2, h * 0.08)
    arm_dir = torch.where(u[0] > 0.5, 1.0, -1.0)
    arm = _rect(x, y, bx + arm_dir * h * 0.12, by - h * 0.9, h * 0.26, h * 0.05)
    lamp = _triangle(
        x, y,
        bx + arm_dir * h * 0.16, by - h * 0.9,
        bx + arm_dir * h * 0.36, by - h * 0.9,
        bx + arm_dir * h * 0.26, by - h * 0.75,
    )
    return [(pole, 0), (foot, 0), (arm, 0), (lamp, 2)]


def _mushroom(x, y, bx, by, h, u):
    stem = _rect(x, y, bx, by - h * 0.27, h * 0.22, h * 0.54)
    cap_rx, cap_ry = h * (0.45 + 0.1 * u[0]), h * 0.5
    cap_cy = by - h * 0.5
    cap = torch.maximum(_ellipse(x, y, bx, cap_cy, cap_rx, cap_ry), y - cap_cy)  # upper half
    spot = _ellipse(x, y, bx + cap_rx * 0.3 * (u[1] - 0.5), cap_cy - cap_ry * 0.5,
                    h * 0.07, h * 0.06)
    return [(stem, 1), (cap, 0), (spot, 2)]


def _rocket(x, y, bx, by, h, u):
    body_w = h * (0.22 + 0.05 * u[0])
    body = _rect(x, y, bx, by - h * 0.42, body_w, h * 0.56)
    nose = _triangle(x, y, bx - body_w / 2, by - h * 0.7, bx + body_w / 2, by - h * 0.7, bx, by - h)
    fins = _union(
        _triangle(x, y, bx - body_w / 2, by - h * 0.35, bx - body_w / 2, by, bx - body_w * 1.3, by),
        _triangle(x, y, bx + body_w / 2, by - h * 0.35, bx + body_w / 2, by, bx + body_w * 1.3, by),
    )
    porthole = _ellipse(x, y, bx, by - h * 0.52, body_w * 0.28, body_w * 0.28)
    return [(fins, 1), (body, 0), (nose, 1), (porthole, 2)]


def _table(x, y, bx, by, h, u):
    w = h * (1.5 + 0.3 * u[0])
    top = _rect(x, y, bx, by - h * 0.94, w, h * 0.12)
    legs = _union(
        _rect(x, y, bx - w * 0.4, by - h * 0.45, h * 0.1, h * 0.9),
        _rect(x, y, bx + w * 0.4, by - h * 0.45, h * 0.1, h * 0.9),
    )
    vase = _rect(x, y, bx + w * 0.25 * (u[1] - 0.5), by - h * 1.1, h * 0.14, h * 0.22)
    return [(legs, 1), (top, 0), (vase, 2)]


def _flower(x, y, bx, by, h, u):
    stem = _rect(x, y, bx, by - h * 0.38, h * 0.05, h * 0.76)
    leaf_side = torch.where(u[0] > 0.5, 1.0, -1.0)
    leaf = _ellipse(x, y, bx + leaf_side * h * 0.1, by - h * 0.35, h * 0.1, h * 0.05)
    r = h * 0.2
    cy = by - h + r
    petals = _union(*[
        _ellipse(x, y, bx + r * 0.6 * math.cos(a), cy + r * 0.6 * math.sin(a), r * 0.45, r * 0.45)
        for a in (0.0, 1.2566, 2.5133, 3.7699, 5.0265)
    ])
    centre = _ellipse(x, y, bx, cy, r * 0.35, r * 0.35)
    return [(stem, 1), (leaf, 1), (petals, 0), (centre, 2)]


def _snowman(x, y, bx, by, h, u):
    r1, r2, r3 = h * 0.22, h * 0.16, h * 0.11
    low = _ellipse(x, y, bx, by - r1, r1, r1)
    mid = _ellipse(x, y, bx, by - 2 * r1 - r2 * 0.8, r2, r2)
    head_y = by - 2 * r1 - 1.6 * r2 - r3 * 0.8
    head = _ellipse(x, y, bx, head_y, r3, r3)
    hat = _rect(x, y, bx, head_y - r3 - h * 0.06, r3 * 1.3, h * 0.12)
    return [(low, 0), (mid, 0), (head, 0), (hat, 1)]


_DRAWERS = (
    _house, _tree, _person, _car, _lamp_post, _mushroom, _rocket, _table, _flower, _snowman,
)
# Relative size: height of the object as a share of the image side, by class (cars and tables
# are wide, so they are drawn lower to fit).
_HEIGHT_RANGE = {3: (0.22, 0.34), 7: (0.25, 0.38)}
_DEFAULT_HEIGHT = (0.38, 0.62)


# --------------------------------------------------------------------------------------------


def _hsv_to_rgb(hsv):
    """HSV in [0, 1] (..., 3) to RGB in [0, 1] (..., 3), vectorised."""
    h, s, v = hsv.unbind(-1)
    k = lambda n: (n + h * 6) % 6  # noqa: E731 - the standard closed form
    f = lambda n: v - v * s * (torch.minimum(k(n), 4 - k(n)).clamp(0, 1))  # noqa: E731
    return torch.stack([f(5.0), f(3.0), f(1.0)], dim=-1)


def _random_colours(n, g, *, sat=(0.3, 1.0), val=(0.25, 1.0)):
    """n random RGB colours (n, 3) with hue uniform and saturation/value in the given ranges."""
    u = torch.rand(n, 3, generator=g)
    hsv = torch.stack([u[:, 0], sat[0] + (sat[1] - sat[0]) * u[:, 1],
                       val[0] + (val[1] - val[0]) * u[:, 2]], dim=1)
    return _hsv_to_rgb(hsv)


def _smooth_noise(n, size, cells, g):
    """Smooth value noise (n, 1, size, size) in roughly [-1, 1]: a coarse grid, upsampled."""
    coarse = torch.rand(n, 1, cells, cells, generator=g) * 2 - 1
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear",
                                           align_corners=False)


_CHUNK = 256  # images drawn at once: large enough to vectorise, small enough to stay in cache


def render_scenes(labels: torch.Tensor, *, seed: int, config: SceneConfig = SceneConfig()
                  ) -> torch.Tensor:
    """Render one scene per label; returns uint8 images (N, 3, size, size).

    ``labels`` is an int tensor (N,) of class indices into :data:`CLASS_NAMES`; the same
    labels, seed and config always give the same images.
    """
    labels = torch.as_tensor(labels)
    if labels.ndim != 1:
        raise ValueError(
            f"labels must be a 1-D tensor of class indices, got shape {tuple(labels.shape)}")
    if labels.numel() and (labels.min() < 0 or labels.max() >= len(CLASS_NAMES)):
        raise ValueError(f"labels must lie in [0, {len(CLASS_NAMES) - 1}]")
    g = torch.Generator().manual_seed(int(seed))
    # Chunks draw from one generator in order, so the result does not depend on memory size.
    chunks = [_render_chunk(labels[i:i + _CHUNK], g, config)
              for i in range(0, labels.numel(), _CHUNK)]
    return torch.cat(chunks) if chunks else torch.zeros(0, 3, config.size, config.size,
                                                        dtype=torch.uint8)


def _render_chunk(labels, g, config):
    n, s = labels.numel(), config.size
    coords = (torch.arange(s, dtype=torch.float32) + 0.5) / s
    y, x = coords.view(1, s, 1), coords.view(1, 1, s)
    col = lambda t: t.view(-1, 1, 1)  # noqa: E731 - (N,) -> (N, 1, 1) for broadcasting

    # Background: sky gradient above a horizon and a textured ground below, or a plain wall.
    horizon = col(0.45 + 0.25 * torch.rand(n, generator=g))
    sky_top = _random_colours(n, g, sat=(0.1, 0.7), val=(0.5, 1.0))
    sky_low = (sky_top + 0.35 * torch.rand(n, 1, generator=g)).clamp(0, 1)
    ground = _random_colours(n, g, sat=(0.2, 0.9), val=(0.2, 0.75))
    wall = _random_colours(n, g, sat=(0.0, 0.8), val=(0.2, 0.95))
    plain = torch.rand(n, generator=g) < (config.plain_background_share
                                          if config.sky_and_ground else 1.0)
    t = (y / horizon).clamp(0, 1).unsqueeze(1)  # (N, 1, S, 1)
    sky = sky_top.view(n, 3, 1, 1) * (1 - t) + sky_low.view(n, 3, 1, 1) * t
    ground_noise = _smooth_noise(n, s, 8, g) * (0.18 if config.texture else 0.0)
    ground_img = (ground.view(n, 3, 1, 1) * (1 + ground_noise)).clamp(0, 1)
    below = _coverage(col(horizon.flatten()) - y, s).unsqueeze(1)  # 1 below the horizon
    img = sky * (1 - below) + ground_img * below
    wall_noise = _smooth_noise(n, s, 6, g) * (0.2 if config.texture else 0.0)
    wall_img = (wall.view(n, 3, 1, 1) * (1 + wall_noise)).expand(n, 3, s, s).clamp(0, 1)
    img = torch.where(plain.view(n, 1, 1, 1), wall_img, img)
    horizon = torch.where(plain.view(n, 1, 1), col(0.6 + 0.2 * torch.rand(n, generator=g)),
                          horizon)

    def paint(image, d, colour, alpha=1.0):
        m = (_coverage(d, s) * alpha).unsqueeze(1)
        return image * (1 - m) + colour.view(-1, 3, 1, 1) * m

    if config.clutter:
        # A sun or moon, clouds in the sky, stones on the ground: none depends on the class.
        sun_x = torch.rand(n, generator=g)
        sun_y = 0.05 + 0.15 * torch.rand(n, generator=g)
        sun_r = col(torch.full((n,), 0.07))
        sun = _ellipse(x, y, col(sun_x), col(sun_y), sun_r, sun_r)
        sun = torch.where(plain.view(n, 1, 1) | (torch.rand(n, 1, 1, generator=g) < 0.5), 9.0, sun)
        img = paint(img, sun, _random_colours(n, g, sat=(0.5, 1.0), val=(0.85, 1.0)))
        for _ in range(2):
            cx, cy = torch.rand(n, generator=g), torch.rand(n, generator=g) * 0.3
            cloud = _ellipse(x, y, col(cx), col(cy), col(0.08 + 0.08 * torch.rand(n, generator=g)),
                             col(0.03 + 0.03 * torch.rand(n, generator=g)))
            keep = (~plain) & (torch.rand(n, generator=g) < 0.6)
            cloud = torch.where(keep.view(n, 1, 1), cloud, 9.0)
            img = paint(img, cloud, torch.full((n, 3), 0.95), alpha=0.8)
        for _ in range(3):
            cx = torch.rand(n, generator=g)
            depth = 0.2 + 0.8 * torch.rand(n, generator=g)
            cy = horizon.flatten() + (1 - horizon.flatten()) * depth
            r = 0.02 + 0.04 * torch.rand(n, generator=g)
            stone = _ellipse(x, y, col(cx), col(cy), col(r * 1.5), col(r))
            stone = torch.where((torch.rand(n, generator=g) < 0.7).view(n, 1, 1), stone, 9.0)
            img = paint(img, stone, _random_colours(n, g, sat=(0.0, 0.5), val=(0.2, 0.8)))

    # The object: it stands on the ground in front of the horizon, anywhere left to right.
    lo = torch.tensor([_HEIGHT_RANGE.get(c, _DEFAULT_HEIGHT)[0] for c in range(len(CLASS_NAMES))])
    hi = torch.tensor([_HEIGHT_RANGE.get(c, _DEFAULT_HEIGHT)[1] for c in range(len(CLASS_NAMES))])
    h = lo[labels] + (hi[labels] - lo[labels]) * torch.rand(n, generator=g)
    by = horizon.flatten() + (0.97 - horizon.flatten()) * (0.25 + 0.75 * torch.rand(n, generator=g))
    h = torch.minimum(h, by - 0.04)  # keep the top inside the image
    bx = 0.3 + 0.4 * torch.rand(n, generator=g)
    u = torch.rand(2, n, generator=g)
    part_colours = torch.stack([_random_colours(n, g) for _ in range(3)], dim=1)  # (N, 3 parts, 3)
    stripe_freq = 20 + 40 * torch.rand(n, generator=g)
    stripe_angle = math.pi * torch.rand(n, generator=g)
    stripe_amp = (0.25 * torch.rand(n, generator=g)) if config.texture else torch.zeros(n)
    stripes = 1 + col(stripe_amp) * torch.sin(
        col(stripe_freq) * (x * col(torch.cos(stripe_angle)) + y * col(torch.sin(stripe_angle))))

    if config.shadows:
        shadow = _ellipse(x, y, col(bx), col(by), col(h * 0.45), col(h * 0.06))
        img = paint(img, shadow, torch.zeros(n, 3), alpha=0.35)

    obj = torch.zeros(n, 3, s, s)
    cover = torch.zeros(n, 1, s, s)
    for c, draw in enumerate(_DRAWERS):
        idx = (labels == c).nonzero().flatten()
        if idx.numel() == 0:
            continue
        layers = draw(x, y, col(bx[idx]), col(by[idx]), col(h[idx]), [col(v) for v in u[:, idx]])
        o, cv = obj[idx], cover[idx]
        for d, part in layers:
            m = _coverage(d, s).unsqueeze(1)
            colour = part_colours[idx, part].view(-1, 3, 1, 1) * stripes[idx].unsqueeze(1)
            o = o * (1 - m) + colour * m
            cv = torch.maximum(cv, m)
        obj[idx], cover[idx] = o, cv
    if not config.upright:
        # Turn each object layer (not the background) by a random quarter turn about its centre.
        k = torch.randint(0, 4, (n,), generator=g)
        for turn in range(1, 4):
            sel = (k == turn).nonzero().flatten()
            obj[sel] = torch.rot90(obj[sel], turn, dims=(2, 3))
            cover[sel] = torch.rot90(cover[sel], turn, dims=(2, 3))
    img = img * (1 - cover) + obj.clamp(0, 1) * cover

    # Global exposure and a little sensor noise.
    gain = 0.8 + 0.4 * torch.rand(n, 1, 1, 1, generator=g)
    img = img * gain + 0.02 * torch.randn(n, 3, s, s, generator=g)
    return (img.clamp(0, 1) * 255).round().to(torch.uint8)


def balanced_labels(n: int, *, num_classes: int = len(CLASS_NAMES), seed: int) -> torch.Tensor:
    """n labels with each class equally often (up to one), in a seeded random order."""
    labels = torch.arange(n) % num_classes
    return labels[torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))]
