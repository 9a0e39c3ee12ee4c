"""How good is a denoised image when there is no clean reference? Four numbers from the data alone.

1. **Residual whiteness.** The residual (noisy − denoised), standardised by the noise model, should
   be the noise: correlated between neighbours as the noise is, no more and no less. Low-passed,
   it should average out as noise does; energy left means signal was removed. Less correlated than
   the noise means part of the noise stayed in the result.
2. **Consistency with the noise model.** The standardised residual variance per intensity bin is
   about 1 where the result fits the data (a little above 1: its own error adds; below 1 when the
   result copies noise).
3. **A likelihood map**: the windowed log-likelihood of the data given the result, relative to what
   the noise model expects (0 where they agree; negative where the result disagrees with the data:
   structure missing, invented or shifted).
4. **An estimate of the MSE between the result and the noise-free signal**, and the PSNR it implies:
   - with a second, independent noisy acquisition y₂ of the same field (the uMSE idea of
     Marcos-Morales et al.): E[(ŝ − y₂)²] = MSE + σ₂², and σ₂² ≈ ½E[(x − y₂)²] when both
     acquisitions have the same noise level, so no noise model is needed;
   - otherwise from the noise model (Stein's unbiased risk estimate, heteroscedastic form):
     MSE ≈ E[(x − ŝ)²] − E[σ²] + 2·E[σ² ∂ŝᵢ/∂xᵢ]. The last term is zero for a J-invariant
     (blind-spot) result; a network that sees each pixel at test time, a posterior or a filter
     depends on its own pixel, and the term is measured by a Monte-Carlo divergence when the
     denoiser is at hand (a model or a filter), else assumed zero and said so.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from .errors import InputError
from .noise_model import NoiseModel, binned_means, fit_from_prediction

#: Lags at which the residual's autocorrelation is reported, along each axis.
LAGS = (1, 2, 3)
#: Side of the tiles whose spectra are averaged (Welch) for the spectral flatness.
SPECTRUM_TILE = 32
#: Side of the window of the likelihood map.
LIKELIHOOD_WINDOW = 7
#: |correlation| below this (plus three standard errors) counts as white.
WHITE_CORRELATION = 0.05
#: A residual this much less correlated than the noise (plus three standard errors) has left noise in the
#: result; wider than WHITE_CORRELATION because the noise's own correlation is measured only to ~0.05.
KEPT_CORRELATION = 0.1
#: Averaged-periodogram flatness of white noise is ~0.97 with 32-px tiles; below this it is not flat.
FLAT_SPECTRUM = 0.9

Denoiser = Callable[[np.ndarray], np.ndarray]
#: How far (as a factor) the true noise variance has been from the noise model's, by source: measured
#: from data it ran up to ~13 % high on the FMD pairs (docs/benchmarks.md); calibration is tighter.
VARIANCE_SPAN = {"data": (0.85, 1.05), "calibrated": (0.97, 1.03)}
#: Largest image assessed (it holds ~10 float64 copies and runs the denoiser three times).
MAX_ASSESSED_PIXELS = 64_000_000


@dataclass
class Whiteness:
    #: Autocorrelation of the standardised residual at LAGS, per axis name ("Y", "X", and "Z" for stacks).
    correlation: dict[str, list[float]]
    spectral_flatness: float
    #: Low-passed residual energy beyond what the noise can give, as a fraction (signal in the residual).
    detail_excess: float
    verdict: str  # "noise-like", "signal removed", "structured noise left", "structure in the residual"
    explanation: str

    def to_dict(self) -> dict:
        return {
            "correlation": self.correlation, "spectral_flatness": self.spectral_flatness,
            "detail_excess": self.detail_excess, "verdict": self.verdict, "explanation": self.explanation,
        }  # fmt: skip


@dataclass
class Assessment:
    whiteness: Whiteness
    #: Standardised residual variance per intensity bin: (mean signal, ratio, pixels).
    consistency: list[tuple[float, float, int]]
    consistency_overall: float
    mse_estimate: float
    psnr_estimate: float
    #: (low, high): the PSNR for a noise variance VARIANCE_SPAN off (noise model), or two standard
    #: errors off (second acquisition); high is inf when the MSE could be zero.
    psnr_range: tuple[float, float]
    data_range: float
    #: How the MSE was estimated, in words.
    mse_method: str
    noise_model: NoiseModel
    #: The mean ∂ŝᵢ/∂xᵢ used in the estimate (None: assumed J-invariant, the term left out).
    divergence: float | None
    residual: np.ndarray = field(repr=False)
    likelihood_map: np.ndarray = field(repr=False)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "mse_estimate": self.mse_estimate,
            "psnr_estimate": self.psnr_estimate if math.isfinite(self.psnr_estimate) else None,
            "psnr_range": [v if math.isfinite(v) else None for v in self.psnr_range],
            "data_range": self.data_range,
            "mse_method": self.mse_method,
            "divergence": self.divergence,
            "whiteness": self.whiteness.to_dict(),
            "consistency_overall": self.consistency_overall,
            "consistency": [
                {"signal": s, "standardised_variance": r, "pixels": n} for s, r, n in self.consistency
            ],
            "noise_model": self.noise_model.to_dict(),
            "likelihood": {
                "window": LIKELIHOOD_WINDOW,
                "mean": float(np.mean(self.likelihood_map)),
                "share_below_minus_1": float(np.mean(self.likelihood_map < -1.0)),
            },
            "notes": list(self.notes),
        }

    def psnr_text(self) -> str:
        if not math.isfinite(self.psnr_estimate):
            return f"too high to estimate: the error is within the estimate's precision (range {self.data_range:.4g})"
        return f"{self.psnr_estimate:.2f} dB over a range of {self.data_range:.4g}"

    def range_text(self) -> str:
        low, high = self.psnr_range
        upper = f"{high:.1f} dB" if math.isfinite(high) else "higher"
        why = "two standard errors" if "second acquisition" in self.mse_method else (
            "the noise model's variance off by as much as it has been on real data"
        )
        return f"{low:.1f} dB to {upper} ({why})"

    def summary_lines(self) -> list[tuple[str, str]]:
        """(label, value) rows for the CLI and the docks."""
        lags = ", ".join(f"{axis} {values[0]:+.3f}" for axis, values in self.whiteness.correlation.items())
        return [
            ("estimated PSNR", self.psnr_text()),
            ("plausible PSNR", self.range_text()),
            ("estimated MSE", f"{self.mse_estimate:.4g} ({self.mse_method})"),
            ("residual", f"{self.whiteness.verdict}: {self.whiteness.explanation}"),
            ("lag-1 correlation", lags),
            ("spectral flatness", f"{self.whiteness.spectral_flatness:.3f} (1 = white)"),
            ("fit to noise model", f"{self.consistency_overall:.3f} (standardised residual variance; about 1 fits)"),
            ("noise model", self.noise_model.describe()),
        ]


# -- pieces --------------------------------------------------------------------------------------
def _check_pair(noisy: np.ndarray, denoised: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(noisy, dtype=np.float64)
    s = np.asarray(denoised, dtype=np.float64)
    if x.shape != s.shape:
        raise InputError(f"the noisy image {x.shape} and the denoised one {s.shape} differ in shape")
    if x.size > MAX_ASSESSED_PIXELS:
        raise InputError(
            f"assess works in memory and this image has {x.size / 1e6:.0f} megapixels (at most "
            f"{MAX_ASSESSED_PIXELS // 1_000_000}); assess a crop or a few planes"
        )
    if x.ndim not in (2, 3):
        raise InputError(f"assess takes a 2D image or a (Z, Y, X) stack of one channel, got shape {x.shape}")
    if min(x.shape[-2:]) < 8:
        raise InputError(f"the image is too small to assess ({x.shape}); it needs at least 8 x 8 pixels")
    for name, array in (("noisy", x), ("denoised", s)):
        if not np.isfinite(array).all():
            raise InputError(f"the {name} image holds NaN or infinite values")
    if np.ptp(x) == 0:
        raise InputError("the noisy image is constant: there is no noise to assess")
    return x, s


def _correlation(z: np.ndarray, axis: int, lag: int) -> float:
    """Correlation of ``z`` with itself ``lag`` pixels along ``axis`` (``lag`` < the axis length)."""
    n = z.shape[axis]
    a = np.take(z, range(0, n - lag), axis=axis)
    b = np.take(z, range(lag, n), axis=axis)
    a, b = a - a.mean(), b - b.mean()
    denominator = math.sqrt(float(np.mean(a * a)) * float(np.mean(b * b)))
    return float(np.mean(a * b) / denominator) if denominator > 0 else 0.0


def spectral_flatness(z: np.ndarray, tile: int = SPECTRUM_TILE) -> float:
    """Geometric over arithmetic mean of the residual's averaged power spectrum (1 = white).

    The periodogram of one tile scatters like an exponential variable (flatness e^-γ ≈ 0.56 even for
    white noise), so the spectra of many tiles are averaged first (Welch), without the DC term.
    """
    planes = z.reshape(-1, *z.shape[-2:])
    side = min(tile, planes.shape[1], planes.shape[2])
    spectrum = np.zeros((side, side))
    count = 0
    for plane in planes:
        for y in range(0, plane.shape[0] - side + 1, side):
            for x in range(0, plane.shape[1] - side + 1, side):
                block = plane[y : y + side, x : x + side]
                spectrum += np.abs(np.fft.fft2(block - block.mean())) ** 2
                count += 1
    power = (spectrum / max(count, 1)).ravel()[1:]
    power = np.maximum(power, 1e-30)
    return float(np.exp(np.mean(np.log(power))) / np.mean(power))


#: Scale (Gaussian sigma, px) at which the residual's energy is compared with what noise alone can give.
LOWPASS_SIGMA = 2.0
#: A low-passed residual with this much more energy than the noise can have holds removed signal.
DETAIL_EXCESS = 0.25


def detail_loss(residual: np.ndarray, noise_model: NoiseModel, variance: np.ndarray, seed: int = 0) -> float:
    """How much more energy the low-passed residual has than low-passed noise could have (0: none more).

    Noise averages out under a low-pass filter (by a factor set by its correlation); signal a result
    removed does not. The noise's share is measured on a random field of the noise's correlation,
    scaled by the noise model's ``variance`` at the result. A result that keeps noise only lowers the ratio.
    """
    sigma = (0, LOWPASS_SIGMA, LOWPASS_SIGMA) if residual.ndim == 3 else LOWPASS_SIGMA
    probe = correlated_probe(residual.shape, noise_model.correlation_kernel, np.random.default_rng(seed))
    noise_factor = float(np.mean(ndimage.gaussian_filter(probe, sigma) ** 2))
    expected = noise_factor * float(np.mean(variance))
    smoothed = ndimage.gaussian_filter(residual, sigma)
    return float(np.mean(smoothed * smoothed) / max(expected, 1e-30) - 1.0)


def _residual_whiteness(x: np.ndarray, s: np.ndarray, variance: np.ndarray, noise_model: NoiseModel) -> Whiteness:
    """Is the residual what the noise is, and nothing more?

    Low-passed, a residual holding more energy than noise can (:func:`detail_loss`) holds removed
    signal. Otherwise its neighbour correlation is compared with the noise's own (the noise model's
    kernel; zero for white noise): well below it, part of the noise stayed in the result; above it,
    signal or an artefact went into the residual.
    """
    z = (x - s) / np.sqrt(variance)
    axes = {"Y": z.ndim - 2, "X": z.ndim - 1}
    if z.ndim == 3 and z.shape[0] > 1:
        axes = {"Z": 0, **axes}
    correlation = {
        name: [_correlation(z, axis, lag) for lag in LAGS if lag < z.shape[axis]] for name, axis in axes.items()
    }
    noise_y, noise_x = noise_model.lag1_correlation()
    expected = {"Y": noise_y, "X": noise_x, "Z": 0.0}
    flatness = spectral_flatness(z)
    detail_excess = detail_loss(x - s, noise_model, variance)
    threshold = WHITE_CORRELATION + 3.0 / math.sqrt(z.size)
    excess = {name: values[0] - expected[name] for name, values in correlation.items()}
    kept_threshold = KEPT_CORRELATION + 3.0 / math.sqrt(z.size)
    kept = {name: value for name, value in excess.items() if value < -kept_threshold}
    extra = {name: value for name, value in excess.items() if value > threshold}
    noise_flat = noise_model.white
    if kept and detail_excess <= DETAIL_EXCESS:
        verdict = "structured noise left"
        along = ", ".join(f"{name} {correlation[name][0]:+.3f} vs the noise's {expected[name]:+.3f}" for name in kept)
        explanation = (
            f"the residual is less correlated between neighbours than the noise ({along}): part of the "
            "noise stayed in the result (correlated noise: scan lines, stripes)"
        )
    elif detail_excess > DETAIL_EXCESS:
        verdict = "signal removed"
        explanation = (
            f"smoothed, the residual holds {detail_excess:.0%} more energy than noise could: "
            "detail or structure went into it (see the likelihood map for where)"
        )
    elif extra or (noise_flat and flatness < FLAT_SPECTRUM):
        verdict = "structure in the residual"
        along = ", ".join(f"{name} {correlation[name][0]:+.3f} vs the noise's {expected[name]:+.3f}" for name in extra)
        explanation = (
            f"the residual is more correlated than the noise ({along or f'spectral flatness {flatness:.2f}'}): "
            "signal (fine detail, background) or an artefact went into the residual"
        )
    else:
        verdict = "noise-like"
        explanation = "the residual looks like the noise: " + (
            "uncorrelated, with a flat spectrum" if noise_flat else "correlated between neighbours as the noise is"
        )
    return Whiteness(correlation, flatness, detail_excess, verdict, explanation)


def _consistency(
    x: np.ndarray, s: np.ndarray, variance: np.ndarray, bins: int = 12
) -> tuple[list[tuple[float, float, int]], float]:
    """Standardised residual variance, E[(x − ŝ)²/σ²(ŝ)], per quantile bin of ŝ and overall."""
    ratio = (x - s) ** 2 / variance
    found = binned_means(s, ratio, bins, min_count=1)
    return list(zip(found.signal, found.variance, found.counts, strict=True)), float(ratio.mean())


def _likelihood_map(
    x: np.ndarray, s: np.ndarray, variance: np.ndarray, window: int = LIKELIHOOD_WINDOW
) -> np.ndarray:
    """Windowed Gaussian log-likelihood of the data given the result, relative to its expectation.

    Per pixel ``−½(z² − 1)`` with z the standardised residual, averaged over a ``window``-wide square
    (per plane): 0 where the data fit the result as the noise model expects, about −k/2 where the
    residual holds k times the noise's energy (structure the result lacks or invented), positive
    where the result follows the noise too closely.
    """
    z2 = (x - s) ** 2 / variance
    size = (1, window, window) if x.ndim == 3 else (window, window)
    return ndimage.uniform_filter(-0.5 * (z2 - 1.0), size=size, mode="reflect").astype(np.float32)


def correlated_probe(shape: tuple[int, ...], kernel: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance random field over the last two axes whose neighbour correlation is ``kernel``.

    White Gaussian noise shaped in the Fourier domain by the square root of the kernel's spectrum
    (circular boundaries), so that E[b bᵀ] is the noise's correlation matrix.
    """
    white = rng.standard_normal(shape)
    if kernel.shape[0] == 1:
        return white
    height, width = shape[-2:]
    radius = kernel.shape[0] // 2
    padded = np.zeros((height, width))
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            padded[dy % height, dx % width] += kernel[radius + dy, radius + dx]
    amplitude = np.sqrt(np.maximum(np.fft.rfft2(padded).real, 0.0))
    shaped = np.fft.irfft2(np.fft.rfft2(white, axes=(-2, -1)) * amplitude, s=(height, width), axes=(-2, -1))
    return shaped / max(float(shaped.std()), 1e-12)


def monte_carlo_divergence(
    denoiser: Denoiser,
    noisy: np.ndarray,
    variance: np.ndarray,
    correlation: np.ndarray | None = None,
    probes: int = 2,
    seed: int = 0,
) -> np.ndarray:
    """Per-pixel ``bᵢ [J b]ᵢ`` with b a noise-like probe (covariance Σ = σσᵀ ⊙ correlation); its mean is
    ``tr(ΣJ)/N``, the term of Stein's risk estimate that makes it unbiased for a denoiser that uses
    each pixel (Ramani et al. 2008), and for correlated noise, its neighbours too.

    J b is a finite difference with a step of a twentieth of the noise; ``probes`` are averaged.
    """
    x = np.asarray(noisy, dtype=np.float64)
    rng = np.random.default_rng(seed)
    kernel = np.ones((1, 1)) if correlation is None else np.asarray(correlation, dtype=np.float64)
    sigma = np.sqrt(variance)
    epsilon = 0.05
    # The denoiser's own output, not the result given: a result saved rounded would bias every difference.
    baseline = np.asarray(denoiser(x.astype(np.float32)), dtype=np.float64)
    total = np.zeros_like(x)
    for _ in range(probes):
        probe = sigma * correlated_probe(x.shape, kernel, rng)
        perturbed = np.asarray(denoiser((x + epsilon * probe).astype(np.float32)), dtype=np.float64)
        total += probe * (perturbed - baseline) / epsilon
    return total / probes


def estimate_range(noisy: np.ndarray, reference: np.ndarray | None = None) -> float:
    """The intensity range reference-free PSNR estimates use everywhere (CLI, API, Results and Compare
    docks): the reference's max - min when there is one (so that estimate and measurement compare),
    else the noisy image's 0.1-99.9 percentile span (its raw max - min is mostly the noise's)."""
    if reference is not None:
        return float(np.ptp(reference))
    low, high = np.percentile(noisy, [0.1, 99.9])
    return float(high - low) or float(np.ptp(noisy)) or 1.0


def _psnr(mse: float, data_range: float) -> float:
    """PSNR in dB; inf for an MSE of zero (an estimate within its own precision of the signal)."""
    if mse <= 0:
        return float("inf")
    return 10.0 * math.log10(data_range**2 / mse)


# -- the whole assessment --------------------------------------------------------------------------
def assess(
    noisy: np.ndarray,
    denoised: np.ndarray,
    noise_model: NoiseModel | None = None,
    *,
    second: np.ndarray | None = None,
    denoiser: Denoiser | None = None,
    j_invariant: bool = False,
    data_range: float | None = None,
) -> Assessment:
    """Assess ``denoised`` against the ``noisy`` image it was made from, without ground truth.

    ``noise_model``: the model's (a run's, or calibration); None: measured here from the pair.
    ``second``: an independent noisy acquisition of the same field (better MSE estimate).
    ``denoiser``: the function that made ``denoised`` (a model's predict, a filter), for the divergence
    term; ``j_invariant``: the result does not depend on each pixel's own value (the term is zero).
    ``data_range``: for the PSNR (default: :func:`estimate_range` of the noisy image).
    """
    x, s = _check_pair(noisy, denoised)
    data_range = estimate_range(x) if data_range is None else float(data_range)
    if not math.isfinite(data_range) or data_range <= 0:
        raise InputError(f"data_range must be a positive number, got {data_range}")
    notes: list[str] = []
    if noise_model is None:
        noise_model = fit_from_prediction(x, s)
        notes.append("noise model measured from this pair (neighbouring-pixel differences)")
    variance = noise_model.variance(s)
    divergence: float | None = None
    if second is not None:
        y2 = np.asarray(second, dtype=np.float64)
        if y2.shape != x.shape:
            raise InputError(f"the second acquisition {y2.shape} and the noisy image {x.shape} differ in shape")
        if not np.isfinite(y2).all():
            raise InputError("the second acquisition holds NaN or infinite values")
        per_pixel = (s - y2) ** 2 - 0.5 * (x - y2) ** 2
        mse = float(np.mean(per_pixel))
        method = "second acquisition: E[(result - second)^2] - E[(noisy - second)^2]/2"
        # Two standard errors of the mean (pixels taken as independent: a lower bound on the scatter).
        spread = 2.0 * float(np.std(per_pixel)) / math.sqrt(per_pixel.size)
        mse_span = (mse + spread, mse - spread)
    else:
        residual_energy = float(np.mean((x - s) ** 2))
        mean_variance = float(np.mean(variance))
        term_mean = 0.0
        mse = residual_energy - mean_variance
        if j_invariant and noise_model.white:
            divergence = 0.0
            method = "noise model, J-invariant result (no divergence term)"
        elif denoiser is not None:
            term = monte_carlo_divergence(denoiser, x, variance, noise_model.correlation_kernel)
            term_mean = float(np.mean(term))
            divergence = term_mean / mean_variance
            mse += 2.0 * term_mean
            method = f"noise model + Monte-Carlo divergence ({divergence:.3f})"
        else:
            method = "noise model, assuming the result ignores each pixel's own value"
            notes.append(
                "no denoiser given: the estimate assumes a blind-spot (J-invariant) result; a filter or a "
                "network that sees each pixel makes it optimistic (give the model)"
            )
        # The noise variance scaled by k moves the estimate to R − k·σ² + 2k·D: the span of k a noise
        # model of this source has shown on real data gives the PSNR's plausible range.
        low_k, high_k = VARIANCE_SPAN["data" if noise_model.source == "data" else "calibrated"]
        mse_span = tuple(residual_energy + k * (2.0 * term_mean - mean_variance) for k in (low_k, high_k))
    if second is None and noise_model.source == "data":
        notes.append(
            "the noise model was measured from the data, where part of a result's own error reads as noise: "
            "the estimate tends to be high (by up to about 2 dB on real confocal data; see the plausible "
            "range); calibration frames or a second acquisition make it exact"
        )
    if mse <= 0:
        notes.append("the estimated MSE is not positive: the result is within the estimate's precision of the signal")
        mse = 0.0
    rows, overall = _consistency(x, s, variance)
    return Assessment(
        whiteness=_residual_whiteness(x, s, variance, noise_model),
        consistency=rows,
        consistency_overall=overall,
        mse_estimate=mse,
        psnr_estimate=_psnr(mse, data_range),
        psnr_range=(_psnr(max(mse_span[0], 0.0), data_range), _psnr(max(mse_span[1], 0.0), data_range)),
        data_range=data_range,
        mse_method=method,
        noise_model=noise_model,
        divergence=divergence,
        residual=(x - s).astype(np.float32),
        likelihood_map=_likelihood_map(x, s, variance),
        notes=notes,
    )
