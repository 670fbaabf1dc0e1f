"""Raw pixels as features: optionally grayscale and resized, scaled to [0, 1], flattened."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mlpcli.features.base import Extractor
from mlpcli.limits import MAX_SIDE
from mlpcli.schema import option

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)   # ITU-R 601, as PIL's "L" mode


@dataclass
class PixelsConfig:
    gray: bool = option(False, "convert color images to grayscale first")
    size: list[int] | None = option(None, "resize to [height, width] first (null: keep the image size)", min=1,
                                    max=MAX_SIDE, length=2)


class Pixels(Extractor):
    """Features (N, H·W·C) float32 in [0, 1], row-major over (H, W, C)."""

    Config = PixelsConfig

    def output_dim(self, image_shape: tuple[int, int, int]) -> int:
        height, width, channels = image_shape
        if self.cfg.size is not None:
            height, width = self.cfg.size
        return height * width * (1 if self.cfg.gray else channels)

    def transform_bytes(self, image_shape: tuple[int, int, int], images: int) -> int:
        height, width = self.cfg.size or image_shape[:2]
        pixels = images * height * width
        return pixels * image_shape[2] * (1 + 4 + 4) + 4 * pixels   # resized uint8, two float32 copies; gray

    def transform(self, images: np.ndarray) -> np.ndarray:
        if self.cfg.size is not None:
            from mlpcli.data.convert import conform
            images = conform(images, self.cfg.size, None)
        pixels = images.astype(np.float32) * np.float32(1 / 255)
        if self.cfg.gray and pixels.shape[-1] == 3:
            pixels = pixels @ LUMA
        return pixels.reshape(len(pixels), math.prod(pixels.shape[1:]))     # -1 cannot size an empty batch
