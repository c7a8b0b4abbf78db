"""The design's original gate: a convolutional autoencoder scored by patch reconstruction error.

Encoder: 4 strided 4x4 convolutions (3 -> 32 -> 64 -> 128 -> 256 channels), a 256x16x16 latent
for a 256x256 input; decoder: 4 transposed convolutions back to 3 channels. The network is fully
convolutional, so any aspect ratio works: the image is resized to the working scale (short side
`short_side`, aspect kept) and reflect-padded to a multiple of 16. Training uses random
`crop` x `crop` crops of the defect-free images.

Score: the 99th percentile of the patch errors (per-pixel MSE averaged over `patch` x `patch`
cells). Per-domain statistics of the held-out normals give z and the design's threshold
mean + 3 sigma (stored with the bundle; the policy reads it).
"""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from ..contracts import GateScore
from ..errors import ConfigError
from .base import MIN_HOLDOUT, DomainStats, ImageLike, image_name, load_input, split_holdout
from .features import as_rgb_uint8, working_size


def build_autoencoder():
    """The 4-down / 4-up convolutional autoencoder (torch.nn.Module)."""
    import torch.nn as nn

    def down(i, o):
        return [nn.Conv2d(i, o, 4, stride=2, padding=1), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]

    def up(i, o, last=False):
        layers = [nn.ConvTranspose2d(i, o, 4, stride=2, padding=1)]
        return layers + ([nn.Sigmoid()] if last else [nn.BatchNorm2d(o), nn.ReLU(inplace=True)])

    enc = nn.Sequential(*down(3, 32), *down(32, 64), *down(64, 128), *down(128, 256))
    dec = nn.Sequential(*up(256, 128), *up(128, 64), *up(64, 32), *up(32, 3, last=True))
    return nn.Sequential(enc, dec)


def _to_unit(image: np.ndarray, short_side: int | None, name: str) -> np.ndarray:
    """Image -> float32 3xhxw in [0, 1] at the working scale."""
    import cv2

    rgb = as_rgb_uint8(image, name)
    h, w = working_size(rgb.shape[0], rgb.shape[1], short_side)
    if (h, w) != rgb.shape[:2]:
        rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA if h < rgb.shape[0] else cv2.INTER_LINEAR)
    return np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32) / 255.0


class AutoencoderGate:
    """Layer-1 gate of one domain by reconstruction error (same interface as `PatchCoreGate`)."""

    kind = "autoencoder"

    def __init__(self, seed: int = 0, short_side: int | None = 256, crop: int = 256,
                 epochs: int = 20, batch_size: int = 8, lr: float = 1e-3, patch: int = 8,
                 quantile: float = 0.99, k_sigma: float = 3.0, holdout_fraction: float = 0.2,
                 min_holdout: int = MIN_HOLDOUT, device: str = "cpu"):
        self.seed = seed
        self.short_side = short_side
        self.crop = crop
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.patch = patch
        self.quantile = quantile
        self.k_sigma = k_sigma
        self.holdout_fraction = holdout_fraction
        self.min_holdout = min_holdout
        self.device = device

    def get_params(self) -> dict:
        keys = ("seed", "short_side", "crop", "epochs", "batch_size", "lr", "patch", "quantile",
                "k_sigma", "holdout_fraction", "min_holdout", "device")
        return {key: getattr(self, key) for key in keys}

    def _prepare(self, images, names):
        return [_to_unit(load_input(img, n), self.short_side, n) for img, n in zip(images, names)]

    def fit(self, images: Sequence[ImageLike], names: Sequence[str] | None = None,
            domain: str = "domain") -> "AutoencoderGate":
        import torch

        if not 0 < self.quantile <= 1:
            raise ConfigError(f"quantile must be in (0, 1], not {self.quantile}")
        t0 = time.perf_counter()
        fit_idx, hold_idx = split_holdout(len(images), self.holdout_fraction, self.min_holdout,
                                          self.seed, what=domain)
        train = self._prepare([images[i] for i in fit_idx], [image_name(images[i], i, names) for i in fit_idx])
        gen = torch.Generator().manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            model = build_autoencoder().to(self.device)
        opt = torch.optim.Adam(model.parameters(), lr=self.lr)
        losses = []
        model.train()
        for _ in range(self.epochs):
            order = torch.randperm(len(train), generator=gen).tolist()
            for s in range(0, len(order), self.batch_size):
                batch = torch.from_numpy(np.stack([self._random_crop(train[i], rng) for i in order[s:s + self.batch_size]]))
                batch = batch.to(self.device)
                loss = torch.nn.functional.mse_loss(model(batch), batch)
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(loss.item())
        model.eval()
        self.model_ = model
        self.train_losses_ = losses
        self.n_fit_images_ = len(fit_idx)
        self.train_seconds_ = time.perf_counter() - t0
        hold = self._raw([images[i] for i in hold_idx], [image_name(images[i], i, names) for i in hold_idx])
        self.holdout_scores_ = np.array([s for s, _ in hold], dtype=np.float64)
        self.stats_ = DomainStats.from_scores(self.holdout_scores_, what=domain, k_sigma=self.k_sigma)
        self.domain_ = domain
        return self

    def _random_crop(self, x: np.ndarray, rng) -> np.ndarray:
        c = self.crop
        _, h, w = x.shape
        if h < c or w < c:
            x = np.pad(x, ((0, 0), (0, max(0, c - h)), (0, max(0, c - w))), mode="reflect")
            _, h, w = x.shape
        top = int(rng.integers(0, h - c + 1))
        left = int(rng.integers(0, w - c + 1))
        return x[:, top:top + c, left:left + c]

    def _error_map(self, x: np.ndarray) -> np.ndarray:
        """Per-pixel squared error (mean over channels), h x w, for one 3xhxw image."""
        import torch

        _, h, w = x.shape
        ph, pw = (-h) % 16, (-w) % 16
        xp = np.pad(x, ((0, 0), (0, ph), (0, pw)), mode="reflect") if ph or pw else x
        with torch.inference_mode():
            t = torch.from_numpy(np.ascontiguousarray(xp))[None].to(self.device)
            err = ((self.model_(t) - t) ** 2).mean(dim=1)[0, :h, :w]
            return err.cpu().numpy()

    def _raw(self, images, names, maps: bool = False):
        import cv2

        out = []
        for img, n in zip(images, names):
            arr = load_input(img, n)
            x = _to_unit(arr, self.short_side, n)
            err = self._error_map(x)
            p = self.patch
            hh, ww = err.shape[0] // p * p, err.shape[1] // p * p
            cells = err[:hh, :ww].reshape(hh // p, p, ww // p, p).mean(axis=(1, 3))
            score = float(np.quantile(cells, self.quantile))
            m = None
            if maps:
                m = cv2.resize(err, (arr.shape[1], arr.shape[0]), interpolation=cv2.INTER_LINEAR)
            out.append((score, m))
        return out

    def score(self, images: Sequence[ImageLike], names: Sequence[str] | None = None,
              maps: bool = False) -> list[GateScore]:
        if not hasattr(self, "model_"):
            raise ConfigError("this AutoencoderGate is not fitted: call fit() or load it from a bundle")
        names = [image_name(img, i, names) for i, img in enumerate(images)]
        res = self._raw(list(images), names, maps=maps)
        z = self.stats_.z(np.array([s for s, _ in res]))
        return [GateScore(score=s, z=float(zi), anomaly_map=m) for (s, m), zi in zip(res, z)]

    def summary(self) -> dict:
        return {
            "kind": self.kind,
            "fit_images": int(self.n_fit_images_),
            "final_train_loss": float(np.mean(self.train_losses_[-5:])) if self.train_losses_ else None,
            "stats": self.stats_.to_dict(),
            "threshold": self.stats_.threshold,
        }
