"""The field of view of a photograph taken through a round aperture (fundus cameras, dermoscopes):
the bright disc inside a dark surround, for layouts that bring no field-of-view masks.

Checked on DRIVE, whose official FOV masks it reproduces with Dice 0.992-0.9995 (tests/data/test_fov.py).
"""
from __future__ import annotations

import numpy as np

DARK = 0.1
"""The surround is darker than this share of the image's bright level (99th percentile of each
pixel's brightest channel)."""
CORNER = 0.05  # side of the corner squares that must be dark, as a share of the image's side


def _brightest(array: np.ndarray) -> np.ndarray:
    return array.max(axis=0).astype(np.float32)


def has_dark_surround(array: np.ndarray) -> bool:
    """Whether a (C, H, W) photograph is a disc in a dark surround: its four corners are dark."""
    if array.ndim != 3:
        return False
    m = _brightest(array)
    h, w = m.shape
    k = max(1, int(min(h, w) * CORNER))
    level = DARK * float(np.percentile(m, 99))
    corners = (m[:k, :k], m[:k, -k:], m[-k:, :k], m[-k:, -k:])
    return level > 0 and all(float(c.mean()) < level for c in corners)


def field_of_view(array: np.ndarray) -> np.ndarray:
    """(H, W) uint8 mask of a (C, H, W) photograph's field of view: pixels brighter than ``DARK`` of
    its bright level, holes filled, the largest connected part."""
    from scipy import ndimage

    m = _brightest(array)
    inside = ndimage.binary_fill_holes(m > DARK * float(np.percentile(m, 99)))
    parts, n = ndimage.label(inside)
    if n > 1:
        sizes = ndimage.sum(inside, parts, range(1, n + 1))
        inside = parts == (int(np.argmax(sizes)) + 1)
    return inside.astype(np.uint8)
