"""Experiment (not kept in the engine): can a true blind-spot network with a posterior beat Fast N2V?

N2V sees each pixel at test time, so a Gaussian posterior on top of it double-counts the pixel
(``posterior_experiment.py``). A network that never sees its own pixel (J-invariant in one pass) can
be trained on every pixel at once (a dense likelihood loss) and combined with the observed pixel
under the noise model (Laine et al. 2019): the MMSE estimate. Two such networks, side by side with
the Fast preset at the same budget on one shared pair:

- **rotations** (Laine et al.): a U-Net whose convolutions and pooling look only upwards, run on the
  four rotations of the input, the four half-planes shifted by one pixel and joined by 1x1 layers;
- **dilated** (DBSN-like): a 3x3 convolution with its centre weight zeroed, then convolutions with
  even dilations only (their offsets can never add back up to the centre) and 1x1 layers.

Both output a mean and a log prior variance. The noise variance is the Poisson-Gaussian model the
engine fits on the noisy image alone (:func:`fit_from_noisy`), in normalised units; the loss is the
negative log-likelihood of every pixel under N(mean, prior + noise).

The shared pairs are 512 x 512: the rotation network needs square images with sides a multiple of 4
(at other sides the reflected padding would also show a pixel its own value near the bottom and right).

    python benchmarks/blindspot_experiment.py fish 110      # pair name (FMD or W2S), training seconds
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import denoise_studio as ds
from denoise_studio.engine.io import load_image
from denoise_studio.engine.metrics import affine_psnr, psnr
from denoise_studio.engine.noise_model import fit_from_noisy

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_fmd import DEFAULT_DATA, pairs  # noqa: E402


def _shift_down(x: torch.Tensor) -> torch.Tensor:
    return F.pad(x, (0, 0, 1, 0))[:, :, : x.shape[2], :]


class _UpwardConv(nn.Module):
    """3x3 convolution that sees its own row and the rows above only."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3)

    def forward(self, x):
        return F.leaky_relu(self.conv(F.pad(x, (1, 1, 2, 0))), 0.1)


class _UpwardUNet(nn.Module):
    def __init__(self, features: int, depth: int):
        super().__init__()
        c = features
        self.first = nn.Sequential(_UpwardConv(1, c), _UpwardConv(c, c))
        self.down = nn.ModuleList([nn.Sequential(_UpwardConv(c, c), _UpwardConv(c, c)) for _ in range(depth)])
        self.up = nn.ModuleList([nn.Sequential(_UpwardConv(2 * c, 2 * c), _UpwardConv(2 * c, c)) for _ in range(depth)])

    def forward(self, x):
        h, skips = self.first(x), []
        for block in self.down:
            skips.append(h)
            h = block(F.max_pool2d(_shift_down(h), 2))  # the shift keeps each pooled cell above its rows
        for block, skip in zip(self.up, reversed(skips), strict=True):
            h = block(torch.cat([F.interpolate(h, scale_factor=2, mode="nearest"), skip], 1))
        return _shift_down(h)  # strictly above: the own pixel drops out


def _head(features: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(features, 64, 1), nn.LeakyReLU(0.1), nn.Conv2d(64, 64, 1), nn.LeakyReLU(0.1), nn.Conv2d(64, 2, 1)
    )


class RotationBlindSpot(nn.Module):
    def __init__(self, features: int = 32, depth: int = 2):
        super().__init__()
        self.half_plane = _UpwardUNet(features, depth)
        self.head = _head(4 * features)

    def forward(self, x):
        n = x.shape[0]
        features = self.half_plane(torch.cat([torch.rot90(x, k, (2, 3)) for k in range(4)]))
        parts = [torch.rot90(features[k * n : (k + 1) * n], -k, (2, 3)) for k in range(4)]
        return self.head(torch.cat(parts, 1))


class _CentreMaskedConv(nn.Conv2d):
    def forward(self, x):
        weight = self.weight.clone()
        weight[:, :, 1, 1] = 0
        return F.conv2d(x, weight, self.bias, padding=1)


class DilatedBlindSpot(nn.Module):
    def __init__(self, features: int = 32, dilations: tuple[int, ...] = (2, 2, 4, 4, 2, 2)):
        super().__init__()
        c = features
        self.first = _CentreMaskedConv(1, c, 3)
        self.spatial = nn.ModuleList([nn.Conv2d(c, c, 3, padding=d, dilation=d) for d in dilations])
        self.mixing = nn.ModuleList([nn.Conv2d(c, c, 1) for _ in dilations])
        self.head = _head(c)

    def forward(self, x):
        h = F.leaky_relu(self.first(x), 0.1)
        for spatial, mixing in zip(self.spatial, self.mixing, strict=True):
            h = h + F.leaky_relu(mixing(F.leaky_relu(spatial(h), 0.1)), 0.1)
        return self.head(h)


def train_and_predict(net: nn.Module, noisy: np.ndarray, seconds: float, seed: int = 1) -> dict:
    """Dense likelihood training on 64-px patches (batch 16, dihedral augmentation, Adam 1e-3 with a
    cosine decay over the budget, bf16); the blind mean and the posterior mean of the whole image."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    mean, std = float(noisy.mean()), float(noisy.std())
    x = ((noisy - mean) / std).astype(np.float32)
    found = fit_from_noisy(noisy)
    # variance(raw) = gain * (raw - offset) + read, with raw = mean + std * value (normalised units).
    slope = found.gain / std
    intercept = (found.gain * (mean - found.offset) + found.read_variance) / std**2

    def noise(values):
        return (slope * values + intercept).clamp_min(1e-4)

    net = net.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    start, steps = time.perf_counter(), 0
    while (elapsed := time.perf_counter() - start) < seconds:
        for group in optimizer.param_groups:
            group["lr"] = 2e-5 + 0.5 * (1e-3 - 2e-5) * (1 + math.cos(math.pi * elapsed / seconds))
        tops = rng.integers(0, x.shape[0] - 63, 16)
        lefts = rng.integers(0, x.shape[1] - 63, 16)
        patches = []
        for top, left, k in zip(tops, lefts, rng.integers(0, 8, 16), strict=True):
            patch = x[top : top + 64, left : left + 64]
            patches.append(np.rot90(patch[:, ::-1] if k >= 4 else patch, k % 4).copy())
        batch = torch.from_numpy(np.stack(patches)[:, None]).contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = net(batch).float()
        total = torch.exp(out[:, 1:2].clamp(-12, 6)) + noise(out[:, :1])
        loss = (0.5 * torch.log(total) + 0.5 * (batch - out[:, :1]) ** 2 / total).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        steps += 1
    height, width = x.shape
    padded = np.pad(x, ((0, -height % 4), (0, -width % 4)), "reflect")
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = net.eval()(torch.from_numpy(padded)[None, None].contiguous(memory_format=torch.channels_last))
    out = out.float()[0, :, :height, :width]
    blind, prior = out[0], torch.exp(out[1].clamp(-12, 6))
    noise_variance = noise(blind)
    posterior = (blind * noise_variance + torch.from_numpy(x) * prior) / (prior + noise_variance)
    return {
        "steps": steps,
        "blind": blind.numpy() * std + mean,
        "posterior": posterior.numpy() * std + mean,
        "weight_on_pixel": float((prior / (prior + noise_variance)).mean()),
    }


def main(name: str, seconds: float) -> None:
    found = [p for p in pairs(DEFAULT_DATA, quick=False) if p[0].split()[-1] == name]
    if not found:
        print(f"skipped: no shared pair named {name} under {DEFAULT_DATA}")
        return
    label, noisy_path, reference_path, affine = found[0]
    noisy = load_image(noisy_path)[0].astype(np.float32)
    reference = load_image(reference_path)[0].astype(np.float32)
    if noisy.shape[0] != noisy.shape[1] or noisy.shape[0] % 4:
        raise SystemExit(f"{label} is {noisy.shape}: this experiment needs a square image with sides a multiple of 4")

    def score(image):
        return affine_psnr(image, reference) if affine else psnr(image, reference)

    model = ds.train(noisy, ds.make_config("n2v", "2d", "fast", {"seed": 1, "max_time": seconds})).model
    print(f"{label}, {seconds:g} s each: Fast N2V {score(model.predict(noisy)):.2f} dB "
          f"({model.summary.get('steps', 0)} steps)", flush=True)  # fmt: skip
    for kind, net in (("rotations", RotationBlindSpot()), ("dilated", DilatedBlindSpot())):
        result = train_and_predict(net, noisy, seconds)
        blind, posterior = score(result["blind"]), score(result["posterior"])
        print(f"  {kind:9s} blind mean {blind:.2f}, posterior {posterior:.2f} ({result['steps']} steps; "
              f"mean weight on the pixel {result['weight_on_pixel']:.3f})", flush=True)  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "fish", float(sys.argv[2]) if len(sys.argv) > 2 else 110.0)
