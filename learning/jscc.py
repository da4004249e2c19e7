"""Semantic communication model: a deep JSCC autoencoder over a noisy channel, and its metrics.

Encoder (convolutions) -> power-normalised channel symbols -> AWGN or Rayleigh block fading
at a configurable SNR -> decoder (transposed convolutions), trained end to end on the
bundled images (the digits at 16x16, grey levels in [0, 1]). Rayleigh: each image's
symbols share one complex gain h ~ CN(0, 1), and the receiver knows h (equalises by it),
an assumption of ours. Metrics: PSNR and SSIM (Gaussian window 7, sigma 1.5, as in Wang et al.).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class JSCC(nn.Module):
    """16x16 grey image -> ``symbols`` real channel uses -> image."""

    def __init__(self, symbols: int = 64) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 16, 3, stride=2, padding=1),
            nn.PReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.PReLU(),
            nn.Flatten(),
            nn.Linear(32 * 4 * 4, symbols),
        )
        self.decoder = nn.Sequential(
            nn.Linear(symbols, 32 * 4 * 4),
            nn.PReLU(),
            nn.Unflatten(1, (32, 4, 4)),
            nn.ConvTranspose2d(32, 16, 4, stride=2, padding=1),
            nn.PReLU(),
            nn.ConvTranspose2d(16, 1, 4, stride=2, padding=1),
            nn.Sigmoid(),
        )

    def forward(self, images: torch.Tensor, snr_db: float, channel: str = "awgn") -> torch.Tensor:
        z = self.encoder(images)
        z = z / z.pow(2).mean(dim=1, keepdim=True).sqrt().clamp(min=1e-8)  # unit average power
        return self.decoder(transmit(z, snr_db, channel))


def transmit(z: torch.Tensor, snr_db: float, channel: str = "awgn") -> torch.Tensor:
    """Unit-power symbols through the channel at ``snr_db``; what the receiver estimates."""
    noise_std = math.sqrt(10 ** (-snr_db / 10))
    if channel == "awgn":
        return z + noise_std * torch.randn_like(z)
    if channel == "rayleigh":
        gain = torch.sqrt(torch.randn(z.shape[0], 1).pow(2) + torch.randn(z.shape[0], 1).pow(2)) / math.sqrt(2)
        received = gain * z + noise_std * torch.randn_like(z)
        return received / gain.clamp(min=1e-3)  # known channel: equalise
    raise ValueError(f"unknown channel {channel!r} (awgn or rayleigh)")


def psnr(reference: torch.Tensor, estimate: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB for images in [0, 1], averaged over the batch."""
    mse = (reference - estimate).pow(2).flatten(1).mean(dim=1).clamp(min=1e-10)
    return float((10 * torch.log10(1.0 / mse)).mean())


def ssim(reference: torch.Tensor, estimate: torch.Tensor, window: int = 7, sigma: float = 1.5) -> float:
    """Structural similarity (mean over pixels and batch) for N x 1 x H x W images in [0, 1]."""
    coords = torch.arange(window, dtype=torch.float32) - (window - 1) / 2
    g = torch.exp(-coords.pow(2) / (2 * sigma**2))
    kernel = (g[:, None] * g[None, :] / g.sum() ** 2)[None, None]
    mu_x, mu_y = F.conv2d(reference, kernel), F.conv2d(estimate, kernel)
    sxx = F.conv2d(reference * reference, kernel) - mu_x.pow(2)
    syy = F.conv2d(estimate * estimate, kernel) - mu_y.pow(2)
    sxy = F.conv2d(reference * estimate, kernel) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    value = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x.pow(2) + mu_y.pow(2) + c1) * (sxx + syy + c2))
    return float(value.mean())


def images() -> dict[str, torch.Tensor]:
    """The bundled digits as 1 x 16 x 16 grey images in [0, 1], split 80/20 (fixed seed)."""
    from sklearn.datasets import load_digits

    x = torch.as_tensor(load_digits().images / 16.0, dtype=torch.float32).unsqueeze(1)
    x = F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False).clamp(0, 1)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    cut = int(0.8 * len(x))
    return {"train": x[order[:cut]], "test": x[order[cut:]]}


def train_steps(
    model: JSCC,
    data: torch.Tensor,
    *,
    steps: int,
    snr_db: float,
    channel: str = "awgn",
    lr: float = 1e-3,
    batch: int = 64,
    seed: int = 0,
) -> float:
    """Local training (MSE); returns the last loss."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    loss = torch.zeros(())
    for _ in range(steps):
        index = torch.randint(len(data), (min(batch, len(data)),), generator=generator)
        optimizer.zero_grad()
        loss = F.mse_loss(model(data[index], snr_db, channel), data[index])
        loss.backward()
        optimizer.step()
    model.eval()
    return float(loss.detach())


@torch.no_grad()
def quality(
    model: JSCC, data: torch.Tensor, snr_db: float, channel: str = "awgn", seed: int = 0
) -> tuple[float, float]:
    """(PSNR dB, SSIM) of ``model`` on ``data`` at ``snr_db`` (seeded channel noise)."""
    torch.manual_seed(seed)
    model.eval()
    estimate = model(data, snr_db, channel)
    return psnr(data, estimate), ssim(data, estimate)
