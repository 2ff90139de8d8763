"""Slow per-pixel references shared by the tests of several tasks."""

import math


def bilinear(image, x, y):
    """Bilinear value of image (C, H, W) at pixel coordinates (x, y), pixel centres at
    integers; a point beyond the image takes the value at the nearest point on its edge."""
    h, w = image.shape[-2:]
    x, y = min(max(x, 0.0), w - 1.0), min(max(y, 0.0), h - 1.0)
    x0, y0 = math.floor(x), math.floor(y)
    x1, y1 = min(x0 + 1, w - 1), min(y0 + 1, h - 1)
    fx, fy = x - x0, y - y0
    return ((1 - fx) * (1 - fy) * image[:, y0, x0] + fx * (1 - fy) * image[:, y0, x1]
            + (1 - fx) * fy * image[:, y1, x0] + fx * fy * image[:, y1, x1])
