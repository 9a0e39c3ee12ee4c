"""A measured Poisson–Gaussian noise model: how the noise variance grows with the signal.

``variance(s) = gain * max(s - offset, 0) + read_variance`` in the image's own intensity units:
``gain`` is the intensity of one detected photon (or electron), ``offset`` the dark level and
``read_variance`` the signal-independent (read, amplifier) noise. Below the dark level a detector
clips or floors, so the variance there is the read variance alone.

Where it comes from:

- **the data and a denoised version of it** (after every training run): for horizontally and
  vertically neighbouring pixels i, j, ``½[(x_i − x_j)² − (ŝ_i − ŝ_j)²]`` estimates the noise
  variance, because the noise of neighbours is independent and the denoised difference removes the
  signal's own gradient. The estimates are averaged in bins of the denoised intensity, and the
  model is fitted to the bins. This needs no ground truth and no blind-spot pass. Detail the result
  misses reads as noise: on the FMD confocal pairs the variance comes out 11-13 % above the one
  measured against the registered 50-frame average (docs/engine.md, docs/benchmarks.md).
- **calibration frames**: repeated frames of a static field (per-pixel temporal mean and variance),
  and/or dark frames (the offset and the read variance).

From the data alone, gain and the intercept ``read_variance − gain·offset`` are identifiable but
offset and read noise separately are not; the fit then takes the smallest offset that explains the
bins. Dark frames make both exact. The measured bins are kept beside the parameters: the Results
dock plots them, and ``assess`` checks a result against them.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .errors import InputError

#: Bins of the signal axis a measurement is averaged in (quantiles, so each holds as many pixels).
DEFAULT_BINS = 24
#: A bin needs this many pixel pairs for its variance to be worth fitting.
MIN_BIN_COUNT = 50
#: The model's variance never goes below this share of its largest measured variance: a zero
#: variance would make standardised residuals and likelihoods infinite.
VARIANCE_FLOOR = 1e-6
#: Pixels a measurement reads at most (a random subset beyond it): bins of 24 × ~100k pairs are precise to <1 %.
MAX_MEASURED_PIXELS = 4_000_000
SOURCES = ("data", "calibration", "dark+data", "given")


@dataclass(frozen=True)
class VarianceBins:
    """Noise variance measured in bins of signal: the points a model is fitted to, and plotted."""

    signal: tuple[float, ...]
    variance: tuple[float, ...]
    counts: tuple[int, ...]

    def to_dict(self) -> dict:
        return {"signal": list(self.signal), "variance": list(self.variance), "counts": list(self.counts)}

    @classmethod
    def from_dict(cls, data: dict) -> VarianceBins:
        signal = tuple(float(v) for v in data["signal"])
        variance = tuple(float(v) for v in data["variance"])
        counts = tuple(int(v) for v in data["counts"])
        if not (len(signal) == len(variance) == len(counts)):
            raise ValueError("noise model bins: signal, variance and counts differ in length")
        if not all(math.isfinite(v) for v in (*signal, *variance)):
            raise ValueError("noise model bins hold a non-finite value")
        if any(b <= a for a, b in zip(signal[:-1], signal[1:], strict=True)):
            raise ValueError("noise model bins: the signal values must increase")
        return cls(signal, variance, counts)


@dataclass(frozen=True)
class NoiseModel:
    gain: float
    offset: float
    read_variance: float
    source: str = "data"
    bins: VarianceBins | None = field(default=None, compare=False)
    #: The noise's correlation with its neighbours, a (2r+1, 2r+1) kernel in (Y, X) with 1 at the
    #: centre (None: white noise). Assessment needs it: with correlated noise a denoiser's error
    #: correlates with the noise through the neighbours, not only through each pixel itself.
    correlation: tuple[tuple[float, ...], ...] | None = field(default=None, compare=False)
    #: Scan-line noise: the variance of an offset shared by each image row (scanned EM images), measured
    #: from the row-to-row steps of the noisy image (:func:`measure_row_variance`); 0 when there is none.
    row_variance: float = field(default=0.0, compare=False)

    def __post_init__(self):
        for name in ("gain", "offset", "read_variance"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise ValueError(f"noise model {name} must be a finite number, got {value!r}")
            object.__setattr__(self, name, float(value))
        if self.gain < 0 or self.read_variance < 0:
            raise ValueError("noise model gain and read_variance must not be negative")
        if not (isinstance(self.row_variance, numbers.Real) and math.isfinite(self.row_variance)) or (
            self.row_variance < 0
        ):
            raise ValueError(f"noise model row_variance must be a finite number >= 0, got {self.row_variance!r}")
        object.__setattr__(self, "row_variance", float(self.row_variance))
        if self.gain == 0 and self.read_variance == 0:
            raise ValueError("noise model has zero variance everywhere (gain and read_variance are both 0)")
        if self.source not in SOURCES:
            raise ValueError(f"noise model source must be one of {', '.join(SOURCES)}, got {self.source!r}")
        if self.correlation is not None:
            kernel = np.asarray(self.correlation, dtype=np.float64)
            if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1] or kernel.shape[0] % 2 == 0:
                raise ValueError(f"noise model correlation must be an odd square kernel, got shape {kernel.shape}")
            if not np.isfinite(kernel).all() or np.abs(kernel).max() > 1.0:
                raise ValueError("noise model correlation values must be finite and within [-1, 1]")

    @property
    def correlation_kernel(self) -> np.ndarray:
        """The correlation kernel as an array (a 1 x 1 kernel of 1 for white noise)."""
        if self.correlation is None:
            return np.ones((1, 1))
        return np.asarray(self.correlation, dtype=np.float64)

    @property
    def white(self) -> bool:
        kernel = self.correlation_kernel
        centre = kernel.shape[0] // 2
        off = kernel.copy()
        off[centre, centre] = 0.0
        return bool(np.abs(off).max() == 0.0)

    def lag1_correlation(self) -> tuple[float, float]:
        """The noise's correlation with the next pixel in Y and in X."""
        kernel = self.correlation_kernel
        if kernel.shape[0] < 3:
            return 0.0, 0.0
        centre = kernel.shape[0] // 2
        return float(kernel[centre + 1, centre]), float(kernel[centre, centre + 1])

    # -- using it ----------------------------------------------------------------------------------
    @property
    def floor(self) -> float:
        """The smallest variance the model gives: a tenth of the smallest positive measured variance
        (clipped dark backgrounds measure ~0, and a zero variance would make every standardised
        residual there infinite), never below VARIANCE_FLOOR of the largest."""
        measured = [v for v in (self.bins.variance if self.bins else ()) if v > 0]
        top = max(measured) if measured else self.read_variance + self.gain
        low = 0.1 * min(measured) if measured else 0.0
        return max(self.read_variance, low, VARIANCE_FLOOR * max(top, 1e-12), 1e-12)

    def fitted_variance(self, signal: np.ndarray | float) -> np.ndarray:
        """The Poisson–Gaussian curve at ``signal``."""
        signal = np.asarray(signal, dtype=np.float64)
        return np.maximum(self.gain * np.maximum(signal - self.offset, 0.0) + self.read_variance, self.floor)

    def variance(self, signal: np.ndarray | float) -> np.ndarray:
        """The noise variance at ``signal`` (the noise-free intensity, or a denoised estimate of it).

        Inside the measured range it follows the measured bins (piecewise linear), outside it the
        fitted curve: real detectors bend away from the straight line near the dark level (clipping,
        PMT statistics), and a few percent of variance error is a dB of MSE error in ``assess``.
        """
        fitted = self.fitted_variance(signal)
        if self.bins is None or len(self.bins.signal) < 2:
            return fitted
        points = np.asarray(self.bins.signal)
        measured = np.maximum(np.interp(np.asarray(signal, dtype=np.float64), points, self.bins.variance), self.floor)
        inside = (np.asarray(signal) >= points[0]) & (np.asarray(signal) <= points[-1])
        return np.where(inside, measured, fitted)

    def describe(self) -> str:
        read_sigma = math.sqrt(self.read_variance)
        where = {
            "data": "fitted to the data",
            "calibration": "from calibration frames",
            "dark+data": "offset and read noise from dark frames, gain from the data",
            "given": "given",
        }[self.source]
        text = f"gain {self.gain:.4g}, offset {self.offset:.4g}, read-noise sigma {read_sigma:.4g} ({where})"
        if not self.white:
            ry, rx = self.lag1_correlation()
            text += f"; neighbour correlation Y {ry:+.2f}, X {rx:+.2f}"
        if self.row_variance > 0:
            text += f"; scan lines: row offsets of sigma {math.sqrt(self.row_variance):.4g}"
        return text

    # -- files ---------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        data = {"gain": self.gain, "offset": self.offset, "read_variance": self.read_variance, "source": self.source}
        if self.bins is not None:
            data["bins"] = self.bins.to_dict()
        if self.correlation is not None:
            data["correlation"] = [list(row) for row in self.correlation]
        if self.row_variance > 0:
            data["row_variance"] = self.row_variance
        return data

    @classmethod
    def from_dict(cls, data: dict) -> NoiseModel:
        if not isinstance(data, dict):
            raise ValueError(f"a noise model is a mapping, got {type(data).__name__}")
        bins = VarianceBins.from_dict(data["bins"]) if data.get("bins") else None
        correlation = data.get("correlation")
        if correlation is not None:
            correlation = tuple(tuple(float(v) for v in row) for row in correlation)
        return cls(
            gain=float(data["gain"]), offset=float(data["offset"]), read_variance=float(data["read_variance"]),
            source=str(data.get("source", "data")), bins=bins, correlation=correlation,
            row_variance=float(data.get("row_variance", 0.0)),
        )  # fmt: skip

    def with_correlation(self, kernel: np.ndarray | None) -> NoiseModel:
        correlation = None if kernel is None else tuple(tuple(float(v) for v in row) for row in kernel)
        return NoiseModel(
            self.gain, self.offset, self.read_variance, self.source, self.bins, correlation, self.row_variance
        )

    def with_row_variance(self, row_variance: float) -> NoiseModel:
        return NoiseModel(
            self.gain, self.offset, self.read_variance, self.source, self.bins, self.correlation, row_variance
        )


# -- measuring -------------------------------------------------------------------------------------
def _planes(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array, dtype=np.float64)
    if array.ndim < 2:
        raise InputError(f"a noise model needs images of at least 2 dimensions, got shape {array.shape}")
    return array.reshape(-1, *array.shape[-2:])


def binned_means(signal: np.ndarray, values: np.ndarray, bins: int, min_count: int = MIN_BIN_COUNT) -> VarianceBins:
    """Mean signal and mean of ``values`` in quantile bins of ``signal``; bins of fewer than
    ``min_count`` pixels are left out (too few to trust)."""
    signal, values = signal.ravel(), values.ravel()
    keep = np.isfinite(signal) & np.isfinite(values)
    signal, values = signal[keep], values[keep]
    if signal.size < min_count * 2:
        raise InputError(f"too few pixels to measure the noise ({signal.size}); use a larger image")
    edges = np.unique(np.quantile(signal, np.linspace(0.0, 1.0, bins + 1)))
    if edges.size < 2:
        edges = np.array([signal.min(), signal.min() + 1.0])
    index = np.clip(np.searchsorted(edges, signal, side="right") - 1, 0, edges.size - 2)
    counts = np.bincount(index, minlength=edges.size - 1)
    sums = np.bincount(index, weights=signal, minlength=edges.size - 1)
    value_sums = np.bincount(index, weights=values, minlength=edges.size - 1)
    good = counts >= max(min_count, 1)
    if not good.any():
        raise InputError("too few pixels in every intensity bin to measure the noise")
    counts = counts[good]
    return VarianceBins(
        tuple(float(v) for v in sums[good] / counts),
        tuple(float(v) for v in value_sums[good] / counts),
        tuple(int(v) for v in counts),
    )


def _subsample(planes: np.ndarray, *others: np.ndarray) -> tuple[np.ndarray, ...]:
    """At most ~MAX_MEASURED_PIXELS pixels: whole planes, evenly spaced (neighbours must stay neighbours)."""
    per_plane = planes.shape[1] * planes.shape[2]
    keep = max(1, MAX_MEASURED_PIXELS // max(per_plane, 1))
    if planes.shape[0] <= keep:
        return (planes, *others)
    index = np.linspace(0, planes.shape[0] - 1, keep).round().astype(int)
    return (planes[index], *(other[index] for other in others))


#: Lag (pixels) at which neighbouring noise is taken as uncorrelated when measuring its variance:
#: real detectors and scan electronics correlate the noise of adjacent pixels (FMD confocal: +0.05 to
#: +0.08 along X against the registered references; STEM scan lines: +0.35), and lag-1 differences
#: under-read the variance by that share. On the FMD pairs it has died out by lag 3.
VARIANCE_LAG = 3
#: Radius of the stored noise-correlation kernel ((2r+1)^2 lags in Y and X).
CORRELATION_RADIUS = 2


def _lag_slices(shape: tuple[int, ...], dy: int, dx: int) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Slices of the (N, Y, X) array pairing each pixel with the one (dy, dx) away (dy >= 0)."""
    height, width = shape[-2:]
    first = (slice(None), slice(0, height - dy), slice(max(-dx, 0), width - max(dx, 0)))
    second = (slice(None), slice(dy, height), slice(max(dx, 0), width + min(dx, 0)))
    return first, second


def _half_differences(
    x: np.ndarray, s: np.ndarray, dy: int, dx: int, smooth: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(pair signal, ½[(x_i − x_j)² − (ŝ_i − ŝ_j)²]) for pixel pairs (dy, dx) apart: the second is
    σ²(1 − ρ(dy, dx)) on average, since the denoised difference removes the signal's own gradient.
    ``smooth``: a per-pixel mask; only pairs whose both pixels are in it are kept."""
    first, second = _lag_slices(x.shape, dy, dx)
    d_noisy = x[first] - x[second]
    d_denoised = s[first] - s[second]
    signal, value = 0.5 * (s[first] + s[second]), 0.5 * (d_noisy * d_noisy - d_denoised * d_denoised)
    if smooth is None:
        return signal.ravel(), value.ravel()
    keep = smooth[first] & smooth[second]
    return signal[keep], value[keep]


def _pair(noisy: np.ndarray, denoised: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, s = _planes(noisy), _planes(denoised)
    if x.shape != s.shape:
        raise InputError(f"noisy {np.shape(noisy)} and denoised {np.shape(denoised)} differ in shape")
    if min(x.shape[-2:]) < 2 * VARIANCE_LAG + 2:
        raise InputError(f"a noise model needs images of at least 8 x 8 pixels, got {x.shape[-2:]}")
    return _subsample(x, s)


def _lag_pairs(x: np.ndarray, s: np.ndarray, lag: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`_half_differences` of the pixel pairs ``lag`` apart in Y and in X."""
    return [_half_differences(x, s, dy, dx) for dy, dx in ((lag, 0), (0, lag))]


def _variance_bins(pairs: list[tuple[np.ndarray, np.ndarray]], bins: int) -> VarianceBins:
    return binned_means(np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs]), bins)


def measure_variance(
    noisy: np.ndarray, denoised: np.ndarray, bins: int = DEFAULT_BINS, lag: int = VARIANCE_LAG
) -> VarianceBins:
    """Noise variance in bins of the denoised intensity, from pixel differences ``lag`` apart in Y and X.

    Both arrays have the same shape, ``(..., Y, X)``, in the same intensity units.
    """
    x, s = _pair(noisy, denoised)
    return _variance_bins(_lag_pairs(x, s, lag), bins)


def measure_correlation(
    noisy: np.ndarray, denoised: np.ndarray, radius: int = CORRELATION_RADIUS, lag: int = VARIANCE_LAG
) -> np.ndarray:
    """The noise's correlation between pixels up to ``radius`` apart, a ``(2r+1, 2r+1)`` kernel (centre 1).

    ρ(d) = 1 − v(d)/v(far), with v(d) the mean half squared difference at lag d (see
    :func:`_half_differences`) and v(far) the mean at ``lag`` in Y and X, where the noise is
    uncorrelated. Values within the estimate's own scatter of zero are set to zero.
    """
    x, s = _pair(noisy, denoised)
    return _correlation_kernel(x, s, _lag_pairs(x, s, lag), radius)


def _correlation_kernel(
    x: np.ndarray, s: np.ndarray, far_pairs: list[tuple[np.ndarray, np.ndarray]], radius: int
) -> np.ndarray:
    far = float(np.mean([values.mean() for _signal, values in far_pairs]))
    size = 2 * radius + 1
    kernel = np.zeros((size, size))
    if far <= 0:
        kernel[radius, radius] = 1.0
        return kernel
    scatter = 3.0 / math.sqrt(x.size)
    for dy in range(0, radius + 1):
        for dx in range(-radius, radius + 1):
            if dy == 0 and dx <= 0:
                continue
            rho = 1.0 - _half_differences(x, s, dy, dx)[1].mean() / far
            rho = float(np.clip(rho, -0.95, 0.95)) if abs(rho) > scatter else 0.0
            kernel[radius + dy, radius + dx] = kernel[radius - dy, radius - dx] = rho
    kernel[radius, radius] = 1.0
    return _positive_definite(kernel)


def _positive_definite(kernel: np.ndarray) -> np.ndarray:
    """Scale the off-centre lags down until the kernel's spectrum is non-negative (a valid covariance)."""
    centre = kernel.shape[0] // 2
    for shrink in np.linspace(1.0, 0.0, 21):
        trial = kernel * shrink
        trial[centre, centre] = 1.0
        padded = np.zeros((64, 64))
        padded[: kernel.shape[0], : kernel.shape[1]] = trial
        padded = np.roll(padded, (-centre, -centre), axis=(0, 1))
        if np.fft.fft2(padded).real.min() >= -1e-9:
            return trial
    trial = np.zeros_like(kernel)
    trial[centre, centre] = 1.0
    return trial


def fit_poisson_gaussian(
    bins: VarianceBins, source: str = "data", offset: float | None = None, read_variance: float | None = None
) -> NoiseModel:
    """Fit ``gain * max(s - offset, 0) + read_variance`` to measured bins.

    Weighted by count / variance², i.e. by relative error, so the dark bins (small variance) count as
    much as the bright ones. ``offset`` and ``read_variance`` given (from dark frames) are kept; else
    the offset is searched over the measured signal range and, for each, gain and read variance are
    the non-negative least-squares solution.
    """
    s = np.asarray(bins.signal)
    v = np.asarray(bins.variance)
    n = np.asarray(bins.counts, dtype=np.float64)
    weight = np.sqrt(n) / np.maximum(np.abs(v), np.max(np.abs(v)) * 1e-3 + 1e-12)
    if offset is not None and read_variance is not None:
        above = np.maximum(s - offset, 0.0)
        denominator = float(np.sum((weight * above) ** 2))
        gain = float(np.sum(weight**2 * above * (v - read_variance)) / denominator) if denominator > 0 else 0.0
        return NoiseModel(max(gain, 0.0), float(offset), float(read_variance), source, bins)
    candidates = [float(offset)] if offset is not None else _offset_candidates(s)
    best: tuple[float, float, float, float] | None = None
    for candidate in candidates:
        above = np.maximum(s - candidate, 0.0)
        gain, read = _nonnegative_fit(above, v, weight)
        error = float(np.sum((weight * (gain * above + read - v)) ** 2))
        if best is None or error < best[0] - 1e-12 * abs(best[0]):
            best = (error, gain, read, candidate)
    _error, gain, read, found_offset = best
    if gain == 0.0 and read == 0.0:
        raise InputError("the measured noise variance is zero or negative everywhere: the image looks noise-free")
    return NoiseModel(gain, found_offset, read, source, bins)


def _offset_candidates(signal: np.ndarray) -> list[float]:
    lowest, highest = float(signal.min()), float(np.median(signal))
    lower = lowest - max(abs(highest - lowest), 1e-6)
    return [float(v) for v in np.linspace(lower, highest, 161)]


def _nonnegative_fit(above: np.ndarray, variance: np.ndarray, weight: np.ndarray) -> tuple[float, float]:
    """Weighted least squares of variance ≈ gain·above + read with gain, read ≥ 0 (two unknowns: try the faces)."""
    design = np.stack([above, np.ones_like(above)], axis=1) * weight[:, None]
    target = variance * weight
    options: list[tuple[float, float]] = []
    solution, *_ = np.linalg.lstsq(design, target, rcond=None)
    if solution[0] >= 0 and solution[1] >= 0:
        options.append((float(solution[0]), float(solution[1])))
    column = design[:, 0]
    if float(column @ column) > 0:
        options.append((max(float(column @ target / (column @ column)), 0.0), 0.0))
    options.append((0.0, max(float(np.sum(weight**2 * variance) / np.sum(weight**2)), 0.0)))
    return min(options, key=lambda gr: float(np.sum((design @ np.array(gr) - target) ** 2)))


def fit_from_prediction(
    noisy: np.ndarray,
    denoised: np.ndarray,
    bins: int = DEFAULT_BINS,
    *,
    offset: float | None = None,
    read_variance: float | None = None,
    source: str = "data",
) -> NoiseModel:
    """The noise model of ``noisy`` measured against a denoised version of it (no ground truth): the
    variance curve and the correlation between neighbours. ``offset`` and ``read_variance`` (from
    dark frames) are kept when given."""
    x, s = _pair(noisy, denoised)
    pairs = _lag_pairs(x, s, VARIANCE_LAG)
    model = fit_poisson_gaussian(_variance_bins(pairs, bins), source, offset, read_variance)
    model = model.with_row_variance(measure_row_variance(x))
    return model.with_correlation(_correlation_kernel(x, s, pairs, CORRELATION_RADIUS))


#: Arm length (pixels) of the high-pass filter of :func:`fit_from_noisy`: lag 1 under-reads the variance
#: of detectors that correlate neighbouring pixels, longer arms let more of the signal's curvature in.
HIGH_PASS_LAG = 2


def fit_from_noisy(noisy: np.ndarray, bins: int = DEFAULT_BINS) -> NoiseModel:
    """The noise model of ``noisy`` from that image alone, with no denoised version of it.

    The high-pass ``h = (4x − x↑ − x↓ − x← − x→) / √20`` of pixels HIGH_PASS_LAG apart cancels any
    locally linear signal and keeps white noise at its variance; its mean square, in bins of the local
    (5 x 5) mean, is fitted as :func:`fit_poisson_gaussian` fits any measurement. Fine structure the
    filter does not cancel reads as noise: on the FMD confocal pairs the variance at the mean signal
    comes out within −7 % to +15 % of the one measured against the 50-frame averages. A model's result
    (:func:`fit_from_prediction`) is the better source when there is one; no neighbour correlation is
    measured here.
    """
    planes = _subsample(_planes(noisy))[0]
    lag = HIGH_PASS_LAG
    if min(planes.shape[-2:]) < 8 * lag:
        side = 8 * lag
        raise InputError(f"a noise model needs images of at least {side} x {side} pixels, got {planes.shape[-2:]}")
    if not np.isfinite(planes).all():
        raise InputError("the image holds NaN or infinite values; a noise model cannot be fitted on it")
    inner = (slice(None), slice(lag, -lag), slice(lag, -lag))
    centre = planes[inner]
    shifted = [np.roll(planes, shift, axis=axis)[inner] for axis in (1, 2) for shift in (lag, -lag)]
    high_pass = (4 * centre - sum(shifted)) / math.sqrt(20.0)
    # The local mean over the filter's footprint: a (2·lag + 1)² box, from cumulative sums.
    size = 2 * lag + 1
    padded = np.pad(np.cumsum(np.cumsum(planes, axis=1), axis=2), ((0, 0), (1, 0), (1, 0)))
    box = (
        padded[:, size:, size:] - padded[:, :-size, size:] - padded[:, size:, :-size] + padded[:, :-size, :-size]
    ) / size**2
    model = fit_poisson_gaussian(binned_means(box, high_pass**2, bins), "data")
    return model.with_row_variance(measure_row_variance(planes))


#: Row offsets below this share of the step variance are taken as none: the shared FMD, W2S and SEM
#: images read 0-0.05 %, the STEM images with visible scan lines 0.5 % and 1.4 %.
MIN_ROW_SHARE = 2e-3


def measure_row_variance(noisy: np.ndarray) -> float:
    """The variance of row offsets (scan lines) in ``noisy`` (..., Y, X), from the image alone.

    The step between two rows, ``x(i+1, ·) − x(i, ·)``, holds the difference of their offsets at every
    column; its median along the row keeps that difference and drops the signal's edges and the white
    noise (of the median, π/2 · 2σ²/W is left, and subtracted). The spread of those medians over the
    rows (robust: 1.4826 · MAD) is then ``2 · row variance``. On synthetic rows of variance 9 under white
    noise of variance 4 it reads 9.9; on the shared FMD and W2S images 0; on the STEM images 0.1-1.4 %
    of the white noise, as their row-mean stripe energy says.
    """
    planes = _planes(noisy)
    if planes.shape[-2] < 8 or planes.shape[-1] < 8:
        return 0.0
    steps = planes[:, 1:, :] - planes[:, :-1, :]
    medians = np.median(steps, axis=2)
    spread = 1.4826 * float(np.median(np.abs(medians - np.median(medians))))
    white = (1.4826 * float(np.median(np.abs(steps - medians[..., None])))) ** 2 / 2
    rows = (spread**2 - math.pi / 2 * 2 * white / planes.shape[-1]) / 2
    return rows if rows > MIN_ROW_SHARE * white else 0.0


def _frames(frames: np.ndarray | Sequence[np.ndarray], what: str) -> np.ndarray:
    stack = np.asarray(frames, dtype=np.float64)
    if stack.ndim < 3 or stack.shape[0] < 2:
        raise InputError(
            f"{what}: give at least 2 frames of the same field as a (T, Y, X) stack, got shape {stack.shape}"
        )
    if not np.isfinite(stack).all():
        raise InputError(f"{what} hold NaN or infinite values")
    return stack.reshape(stack.shape[0], -1, *stack.shape[-2:])


def dark_level(dark: np.ndarray | Sequence[np.ndarray]) -> tuple[float, float]:
    """Offset and read variance from dark frames: their mean, and their mean per-pixel temporal variance
    (the temporal variance leaves out the fixed pattern, which is not noise)."""
    stack = _frames(dark, "dark frames")
    return float(stack.mean()), float(stack.var(axis=0, ddof=1).mean())


def fit_from_calibration(
    frames: np.ndarray | Sequence[np.ndarray] | None = None,
    dark: np.ndarray | Sequence[np.ndarray] | None = None,
    *,
    noisy: np.ndarray | None = None,
    denoised: np.ndarray | None = None,
    bins: int = DEFAULT_BINS,
) -> NoiseModel:
    """A noise model from calibration data.

    ``frames``: repeated frames of a static, lit field (T, Y, X): per-pixel temporal mean and variance
    give the bins. ``dark``: frames with the shutter closed: the offset and read variance. Dark frames
    alone give no gain; pair them with ``frames`` or with ``noisy`` + ``denoised`` (a trained model's result).
    """
    offset = read = None
    if dark is not None:
        offset, read = dark_level(dark)
    if frames is not None:
        stack = _frames(frames, "calibration frames")
        mean = stack.mean(axis=0)
        variance = stack.var(axis=0, ddof=1)
        measured = binned_means(mean, variance, bins)
        model = fit_poisson_gaussian(measured, "calibration", offset, read)
        return model.with_correlation(temporal_correlation(stack - mean))
    if noisy is not None and denoised is not None:
        source = "dark+data" if dark is not None else "data"
        return fit_from_prediction(noisy, denoised, bins, offset=offset, read_variance=read, source=source)
    if dark is not None:
        raise InputError(
            "dark frames give the offset and the read noise but not the gain: add repeated frames of a lit field, "
            "or fit the gain from the data (a trained model's result)"
        )
    raise InputError("give calibration frames, dark frames, or a noisy image and its denoised version")


def temporal_correlation(residual: np.ndarray, radius: int = CORRELATION_RADIUS) -> np.ndarray:
    """The spatial correlation kernel of frame-to-frame fluctuations ``(T, P, Y, X)`` (frames minus their mean)."""
    planes = residual.reshape(-1, *residual.shape[-2:])
    planes = planes / np.maximum(planes.std(axis=(1, 2), keepdims=True), 1e-12)
    size = 2 * radius + 1
    kernel = np.zeros((size, size))
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            first, second = _lag_slices(planes.shape, abs(dy), dx if dy >= 0 else -dx)
            kernel[radius + dy, radius + dx] = float(np.mean(planes[first] * planes[second]))
    kernel /= kernel[radius, radius]
    scatter = 3.0 / math.sqrt(planes.size)
    kernel[np.abs(kernel) <= scatter] = 0.0
    kernel[radius, radius] = 1.0
    return _positive_definite(np.clip(kernel, -0.95, 1.0))
