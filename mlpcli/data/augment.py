"""Views of a split's images, whose feature rows a store holds one block of N rows after another: the
images themselves, their mirror images (data.flip, data.flip_eval), the evaluated images shifted by a fixed
number of pixels (data.shift_eval), and seeded augmented copies of the training images (data.augment): each
copy moved by a random translation (pad, then crop back to the image size) and mirrored left-right at random.

Copy k of image i is drawn from row i of a table of draws made by a generator keyed by (the run's seed,
the epoch, k): it depends on nothing else — not on which task or process extracts it, nor on the size of
the split — so reruns, resumes and the feature cache all see the same bytes. Fixed copies are epoch 0's;
with data.augment.redraw every epoch draws its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from mlpcli.errors import DataError
from mlpcli.seeding import keyed_generator

if TYPE_CHECKING:
    from mlpcli.config import Config

FILLS = {"reflect": "reflect", "edge": "edge", "zero": "constant"}   # data.augment.fill -> numpy.pad's mode


class View(Protocol):
    """One image per image of a split, e.g. its mirror image."""

    name: str   # for people: "images", "mirror images", "copy 1"
    key: str    # everything that decides its pixels, for cache keys

    def __call__(self, images: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """This view (n, H, W, C) of images (n, H, W, C) uint8 at positions `rows` (n,) of their split."""


@dataclass(frozen=True)
class Images:
    """The images as they are."""

    name = key = "images"

    def __call__(self, images: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return images


@dataclass(frozen=True)
class Mirror:
    """The images mirrored left-right."""

    name = key = "mirror images"

    def __call__(self, images: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return images[:, :, ::-1]


@dataclass(frozen=True)
class Copy:
    """Augmented copy `copy` (0-based) of each image, drawn for `epoch`: shifted by up to `pad` pixels in
    each direction (the uncovered border filled per `fill`), then mirrored with probability 1/2 if `flip`."""

    seed: int
    epoch: int
    copy: int
    pad: int
    fill: str
    flip: bool

    @property
    def name(self) -> str:
        return f"copy {self.copy + 1}"

    @property
    def key(self) -> str:
        return (f"copy {self.copy} of epoch {self.epoch}, seed {self.seed}: pad {self.pad}, fill {self.fill}, "
                f"flip {self.flip}")

    def draws(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(shifts (n, 2) int in [-pad, pad] (rows, columns), flips (n,) bool) of the first n images: row i
        is the same for every n > i."""
        rng = keyed_generator(self.seed, "augment", self.epoch, self.copy)
        table = rng.integers([-self.pad, -self.pad, 0], [self.pad, self.pad, int(self.flip)], size=(n, 3),
                             endpoint=True)
        return table[:, :2], table[:, 2].astype(bool)

    def __call__(self, images: np.ndarray, rows: np.ndarray) -> np.ndarray:
        if len(rows) == 0:
            return images
        shifts, flips = self.draws(int(rows.max()) + 1)
        return shift_and_flip(images, shifts[rows], flips[rows], self.pad, self.fill)


@dataclass(frozen=True)
class Shifted:
    """The images shifted by (dy, dx) pixels, out[y, x] = image[y + dy, x + dx] (what the shift uncovers
    filled per `fill`), then mirrored left-right if `mirror`."""

    dy: int
    dx: int
    fill: str
    mirror: bool = False

    @property
    def name(self) -> str:
        return f"shifted by ({self.dy}, {self.dx})" + (", mirrored" if self.mirror else "")

    @property
    def key(self) -> str:
        return f"shifted by ({self.dy}, {self.dx}), fill {self.fill}, mirror {self.mirror}"

    def __call__(self, images: np.ndarray, rows: np.ndarray) -> np.ndarray:
        n = len(images)
        return shift_and_flip(images, np.tile((self.dy, self.dx), (n, 1)), np.full(n, self.mirror),
                              max(abs(self.dy), abs(self.dx)), self.fill)


def shift_and_flip(images: np.ndarray, shifts: np.ndarray, flips: np.ndarray, pad: int, fill: str) -> np.ndarray:
    """Images (n, H, W, C) padded by `pad` pixels on every side (numpy.pad mode FILLS[fill]) and cropped back
    to H×W at offset shifts (n, 2) from the centre: out[y, x] = image[y + dy, x + dx] inside the image;
    then mirrored left-right where flips (n,) is True."""
    height, width = images.shape[1:3]
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode=FILLS[fill])
    out = np.empty_like(images)
    for i, ((dy, dx), flip) in enumerate(zip(shifts, flips)):
        window = padded[i, pad + dy:pad + dy + height, pad + dx:pad + dx + width]
        out[i] = window[:, ::-1] if flip else window
    return out


def training_views(cfg: Config, image_shape: tuple[int, ...], epoch: int = 0) -> tuple[View, ...]:
    """The views of a training split: the images, their mirror images (data.flip), and data.augment.copies
    augmented copies drawn for `epoch`. DataError if a shift of data.augment.pad does not fit the images."""
    return (Images(), *((Mirror(),) if cfg.data.flip else ()), *augmented_copies(cfg, image_shape, epoch))


def augmented_copies(cfg: Config, image_shape: tuple[int, ...], epoch: int) -> tuple[Copy, ...]:
    """The data.augment.copies augmented copies of a training split drawn for `epoch`."""
    augment = cfg.data.augment
    if augment.copies:
        _check_shift("data.augment.pad", augment.pad, image_shape)
    return tuple(Copy(cfg.seed, epoch, copy, augment.pad, augment.fill, augment.flip) for copy in range(augment.copies))


def evaluation_views(cfg: Config, image_shape: tuple[int, ...]) -> tuple[View, ...]:
    """The views an evaluated image is scored by (the mean of their scores): the image; with data.shift_eval s,
    the image shifted by s pixels in each diagonal direction (borders per data.augment.fill); with
    data.flip_eval, the mirror image of each. DataError if a shift of s does not fit the images."""
    shift, fill = cfg.data.shift_eval, cfg.data.augment.fill
    _check_shift("data.shift_eval", shift, image_shape)
    mirrors = (False, True) if cfg.data.flip_eval else (False,)
    shifted = tuple(Shifted(dy, dx, fill, mirror) for dy in (-shift, shift) for dx in (-shift, shift)
                    for mirror in mirrors) if shift else ()
    return (Images(), *((Mirror(),) if cfg.data.flip_eval else ()), *shifted)


def _check_shift(key: str, shift: int, image_shape: tuple[int, ...]) -> None:
    """DataError if a shift of `shift` pixels (config key `key`) leaves nothing of images of shape (H, W, C)."""
    if shift >= min(image_shape[:2]):
        raise DataError(f"{key}: a shift of {shift} pixels leaves nothing of the {image_shape[0]}x{image_shape[1]} "
                        f"images; use a shift below {min(image_shape[:2])}")
