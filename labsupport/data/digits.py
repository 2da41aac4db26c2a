"""scikit-learn's 8x8 handwritten digits as tensors, for the Vision Transformer lab (Lab 8).

The data set ships inside scikit-learn (no download): 1,797 greyscale images of 8x8 pixels with values 0..16,
digits 0-9, about 180 of each. :func:`load_digits_split` makes a fixed *stratified* split (every digit keeps its
share in both parts; the same split on every machine), scales the pixels to ``[0, 1]`` and standardises them with
the training set's mean and standard deviation (one number each, so the test set never leaks into the statistics).

Images come as ``(N, 1, 8, 8)`` float32 tensors (channels first, as convolutions and the ViT patchifier expect)
and labels as ``(N,)`` int64. :func:`random_shift` is a light augmentation (move each image by up to one pixel),
:class:`DigitBatches` draws random training batches, ready for :func:`labsupport.training.train`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["DigitsSplit", "load_digits_split", "random_shift", "DigitBatches", "IMAGE_SIZE", "NUM_CLASSES"]

IMAGE_SIZE = 8
NUM_CLASSES = 10


@dataclass
class DigitsSplit:
    """A train/test split of the digits: images ``(N, 1, 8, 8)`` float32, labels ``(N,)`` int64."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    mean: float  #: pixel mean of the training images (after scaling to [0, 1])
    std: float  #: pixel standard deviation of the training images

    def to(self, device) -> DigitsSplit:
        """The same split with every tensor on ``device``."""
        return DigitsSplit(self.x_train.to(device), self.y_train.to(device), self.x_test.to(device),
                           self.y_test.to(device), self.mean, self.std)

    def unnormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Back to pixel values in ``[0, 1]`` (for drawing)."""
        return x * self.std + self.mean

    def __repr__(self) -> str:
        return (f"DigitsSplit(train={tuple(self.x_train.shape)}, test={tuple(self.x_test.shape)}, "
                f"mean={self.mean:.3f}, std={self.std:.3f})")


def _stratified_indices(labels: np.ndarray, test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle each class with ``seed`` and send its first ``round(test_size * n_class)`` images to the test set."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        n_test = int(round(test_size * len(idx)))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def load_digits_split(test_size: float = 0.25, seed: int = 0, normalize: bool = True, device=None) -> DigitsSplit:
    """The digits, split into train and test sets stratified by class (``test_size`` of each digit held out).

    ``normalize=True`` standardises with the training pixels' mean and std (after scaling 0..16 to 0..1);
    ``normalize=False`` keeps the scaled pixels in ``[0, 1]`` (``mean=0, std=1`` are then reported).
    The split only depends on ``seed`` and ``test_size`` (NumPy's generator, not scikit-learn's helpers).
    """
    from sklearn.datasets import load_digits  # imported here: scikit-learn is only needed by this lab

    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be between 0 and 1, got {test_size}")
    digits = load_digits()
    images = digits.images.astype(np.float32) / 16.0  # (1797, 8, 8) in [0, 1]
    labels = digits.target.astype(np.int64)
    tr, te = _stratified_indices(labels, test_size, seed)
    mean, std = (float(images[tr].mean()), float(images[tr].std())) if normalize else (0.0, 1.0)
    x = torch.from_numpy((images - mean) / std).unsqueeze(1)  # (N, 1, 8, 8)
    y = torch.from_numpy(labels)
    split = DigitsSplit(x[tr], y[tr], x[te], y[te], mean, std)
    return split.to(device) if device is not None else split


def random_shift(x: torch.Tensor, max_shift: int = 1, fill: float | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Move each image of ``x (N, C, H, W)`` by a random whole number of pixels in ``[-max_shift, max_shift]``
    along each axis (independently per image); pixels shifted in get ``fill`` (default: the image minimum,
    the background of a standardised digit). A cheap augmentation: a digit moved by a pixel is still that digit.
    """
    if max_shift == 0:
        return x
    N, C, H, W = x.shape
    m = max_shift
    fill_value = float(x.min()) if fill is None else fill
    padded = F.pad(x, (m, m, m, m), value=fill_value)  # (N, C, H + 2m, W + 2m)
    # a random (dy, dx) per image, drawn on the CPU so the same generator works for every device
    shifts = torch.randint(0, 2 * m + 1, (N, 2), generator=generator).to(x.device)
    rows = (shifts[:, 0, None] + torch.arange(H, device=x.device))  # (N, H)
    cols = (shifts[:, 1, None] + torch.arange(W, device=x.device))  # (N, W)
    n = torch.arange(N, device=x.device)[:, None, None, None]
    c = torch.arange(C, device=x.device)[None, :, None, None]
    return padded[n, c, rows[:, None, :, None], cols[:, None, None, :]]


class DigitBatches:
    """An endless iterator of random training batches ``(images, labels)``: ``next(batches)``.

    Images are drawn with replacement from ``x, y`` with a seeded generator (reproducible), and moved by up to
    ``max_shift`` pixels (``max_shift=0``: no augmentation). Pass it as ``batches`` to
    :func:`labsupport.training.train`.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int = 64, max_shift: int = 1, seed: int = 0):
        self.x, self.y, self.batch_size, self.max_shift = x, y, batch_size, max_shift
        self.generator = torch.Generator().manual_seed(seed)

    def __iter__(self):
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(0, len(self.x), (self.batch_size,), generator=self.generator).to(self.x.device)
        xb = self.x[idx]
        if self.max_shift:
            xb = random_shift(xb, self.max_shift, generator=self.generator)
        return xb, self.y[idx]
