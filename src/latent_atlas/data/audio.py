"""Spoken-digit recordings as spectrogram images, as in the permutation-importance study.

A recording is read, resampled to one rate, band-pass filtered, turned into a power spectrogram,
expressed in dB relative to its loudest bin and clipped to a fixed range (the study: -30..0 dB),
lightly smoothed, resized to a square image and min-max normalised. Image rows are frequencies
(high at the top, as spectrograms are drawn), columns are time (left to right). With a fixed
`duration` every recording is zero-padded or cut to that length first, so a column is the same
time span in every image (`image_axes` gives each row's frequency and each column's time);
without one each recording is stretched to the image width.
"""

from __future__ import annotations

import functools
import math
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage, signal
from scipy.io import wavfile

# `{digit}_{speaker}_{index}.wav`: the AudioMNIST and Free Spoken Digit Dataset naming.
WAV_NAME = re.compile(r"^(?P<digit>\d+)_(?P<speaker>[^_]+)_(?P<index>\d+)\.wav$", re.IGNORECASE)


class AudioError(ValueError):
    """A recording that cannot be used; the message names the file."""


@dataclass(frozen=True)
class SpectrogramParams:
    """How a recording becomes an image (the defaults are the config schema's, `$defs/dataset`).

    Parameters
    ----------
    sample_rate : int
        Rate (Hz) every recording is resampled to before filtering.
    band : (float, float)
        Band-pass edges (Hz); the image keeps only the frequency bins inside the band.
        ``high`` must lie below ``sample_rate / 2``.
    db_range : (float, float)
        Levels in dB relative to the loudest bin of the recording, clipped to this range.
    n_fft, hop_length : int
        STFT window length and hop (samples, at ``sample_rate``); Hann window.
    smoothing_sigma : float
        Standard deviation (spectrogram bins) of the Gaussian smoothing before resizing; 0 = none.
    size : int
        Output image height = width (pixels).
    duration : float or None
        Seconds every recording is zero-padded (at its end) or cut to before filtering; None =
        each recording's own length, stretched to the image width.
    """

    sample_rate: int
    band: tuple[float, float]
    db_range: tuple[float, float]
    n_fft: int
    hop_length: int
    smoothing_sigma: float
    size: int
    duration: float | None = None

    def __post_init__(self):
        low, high = self.band
        if not 0 <= low < high < self.sample_rate / 2:
            raise ValueError(
                f"band: need 0 <= low < high < sample_rate/2 = {self.sample_rate / 2:g} Hz, "
                f"got [{low}, {high}]"
            )
        if not self.db_range[0] < self.db_range[1]:
            raise ValueError(f"db_range: need low < high, got {list(self.db_range)}")
        if self.duration is not None and self.duration * self.sample_rate < 1:
            raise ValueError(f"duration: {self.duration} s holds no sample at {self.sample_rate} Hz")

    @property
    def n_samples(self) -> int | None:
        """Samples per recording with a fixed `duration` (None without one)."""
        return None if self.duration is None else int(round(self.duration * self.sample_rate))

    def band_frequencies(self) -> np.ndarray:
        """Centre frequencies (Hz, increasing) of the STFT bins inside the band."""
        freqs = np.fft.rfftfreq(self.n_fft, 1.0 / self.sample_rate)
        return freqs[(freqs >= self.band[0]) & (freqs <= self.band[1])]


def parse_wav_name(path: str | os.PathLike) -> tuple[int, str, int]:
    """(digit, speaker, index) from a file named ``{digit}_{speaker}_{index}.wav``."""
    match = WAV_NAME.match(Path(path).name)
    if match is None:
        raise AudioError(f"{path}: file name does not follow {{digit}}_{{speaker}}_{{index}}.wav")
    return int(match["digit"]), match["speaker"], int(match["index"])


def find_wavs(folder: str | os.PathLike) -> list[Path]:
    """Every ``*.wav`` below `folder` (any depth), sorted by path relative to `folder`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"audio folder not found: {folder}")
    files = sorted(
        (p for p in folder.rglob("*") if p.suffix.lower() == ".wav" and p.is_file()),
        key=lambda p: p.relative_to(folder).as_posix(),
    )
    if not files:
        raise FileNotFoundError(f"no .wav files below {folder}")
    return files


def read_wav(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read a WAV file as mono float64 in [-1, 1]; returns (samples (n,), sample rate)."""
    try:
        with warnings.catch_warnings():  # metadata chunks (LIST, ...) are common and harmless
            warnings.simplefilter("ignore", wavfile.WavFileWarning)
            rate, x = wavfile.read(path)
    except Exception as err:  # scipy raises ValueError, EOFError, struct.error, ... on bad files
        raise AudioError(f"cannot read WAV file {path}: {err}") from err
    if x.dtype == np.uint8:
        x = (x.astype(np.float64) - 128.0) / 128.0
    elif np.issubdtype(x.dtype, np.integer):
        x = x.astype(np.float64) / float(-np.iinfo(x.dtype).min)
    else:
        x = x.astype(np.float64)
    if x.ndim == 2:
        x = x.mean(axis=1)
    if x.size == 0:
        raise AudioError(f"WAV file {path} holds no samples")
    return x, int(rate)


def resample(x: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Polyphase resampling of `x` (n,) from `rate` to `target` Hz."""
    if rate == target:
        return x
    g = math.gcd(rate, target)
    return signal.resample_poly(x, target // g, rate // g)


def spectrogram_image(x: np.ndarray, params: SpectrogramParams) -> np.ndarray:
    """Spectrogram image of one recording.

    Parameters
    ----------
    x : ndarray of shape (n_samples,)
        Mono samples at ``params.sample_rate``.
    params : SpectrogramParams

    Returns
    -------
    image : ndarray of shape (size, size), float32 in [0, 1]
        Row 0 is the highest frequency of the band, column 0 the start of the recording.
    """
    rate = params.sample_rate
    low, high = params.band
    if params.n_samples is not None:  # a fixed length: every column is the same time span
        x = np.pad(x[: params.n_samples], (0, max(0, params.n_samples - x.size)))
    # Pad short recordings to one window so every file gives at least one frame.
    if x.size < params.n_fft:
        x = np.pad(x, (0, params.n_fft - x.size))
    sos = _band_filter(rate, low, high)
    padlen = min(x.size - 1, 3 * (2 * len(sos) + 1))
    x = signal.sosfiltfilt(sos, x, padlen=padlen)

    frames = _frames(x, params.n_fft, params.hop_length)
    window = signal.get_window("hann", params.n_fft)
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2  # (time, freq)
    freqs = np.fft.rfftfreq(params.n_fft, 1.0 / rate)
    in_band = (freqs >= low) & (freqs <= high)  # the bins of params.band_frequencies()
    power = power[:, in_band].T[::-1]  # (freq, time), high frequencies first

    lo_db, hi_db = params.db_range
    peak = power.max()
    if peak <= 0:  # digital silence: a flat image
        return np.zeros((params.size, params.size), np.float32)
    db = 10.0 * np.log10(np.maximum(power, peak * 10 ** (lo_db / 10 - 1)) / peak)
    db = np.clip(db, lo_db, hi_db)
    if params.smoothing_sigma > 0:
        db = ndimage.gaussian_filter(db, params.smoothing_sigma, mode="nearest")
    img = np.asarray(
        Image.fromarray(db.astype(np.float32)).resize((params.size, params.size), Image.Resampling.BILINEAR)
    )
    return minmax(img)


@functools.lru_cache(maxsize=8)
def _band_filter(rate: int, low: float, high: float) -> np.ndarray:
    """4th-order Butterworth band-pass (low-pass when low = 0) as second-order sections."""
    if low > 0:
        return signal.butter(4, [low, high], btype="bandpass", fs=rate, output="sos")
    return signal.butter(4, high, btype="lowpass", fs=rate, output="sos")


def image_axes(params: SpectrogramParams) -> dict:
    """The physical axes of the images `spectrogram_image` makes, as `store.ImageAxes` fields.

    rows : (size,) frequency (Hz) at each image row's centre, row 0 the highest; cols : (size,)
    time (s) of each column's centre from the recording's start (the STFT frame centres, resized
    as the image is), or without a fixed `duration` the share of the recording (0..1).
    The resize maps output pixel i's centre to input coordinate (i + 0.5) * n_in / size - 0.5.
    """
    size = params.size
    centre = lambda n_in: (np.arange(size) + 0.5) * n_in / size - 0.5  # noqa: E731
    freqs = params.band_frequencies()[::-1]
    step = params.sample_rate / params.n_fft
    rows = freqs[0] - step * centre(len(freqs))
    settings = {"sample_rate": params.sample_rate, "n_fft": params.n_fft, "hop_length": params.hop_length,
                "band": list(params.band), "db_range": list(params.db_range), "duration": params.duration,
                "frequency_bins": len(freqs), "window": "hann"}
    if params.n_samples is None:
        return {"rows": rows, "cols": (np.arange(size) + 0.5) / size, "row_label": "frequency (Hz)",
                "col_label": "time (share of the recording)", "settings": settings}
    n_frames = _n_frames(max(params.n_samples, params.n_fft), params.n_fft, params.hop_length)
    cols = (centre(n_frames) * params.hop_length + params.n_fft / 2) / params.sample_rate
    return {"rows": rows, "cols": cols, "row_label": "frequency (Hz)", "col_label": "time (s)",
            "settings": {**settings, "frames": n_frames}}


def _n_frames(n: int, n_fft: int, hop: int) -> int:
    return 1 + int(math.ceil(max(n - n_fft, 0) / hop))


def _frames(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """(n_frames, n_fft) view of `x` in windows of n_fft every hop samples (the tail zero-padded)."""
    n_frames = _n_frames(x.size, n_fft, hop)
    x = np.pad(x, (0, (n_frames - 1) * hop + n_fft - x.size))
    return np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop]


def minmax(img: np.ndarray) -> np.ndarray:
    """Scale `img` to [0, 1] (float32); a constant image becomes all zeros."""
    img = img.astype(np.float32)
    lo, hi = float(img.min()), float(img.max())
    if hi <= lo:
        return np.zeros_like(img)
    return ((img - lo) / (hi - lo)).astype(np.float32)


def wav_to_image(path: str | os.PathLike, params: SpectrogramParams) -> np.ndarray:
    """Read one WAV file and return its (size, size) spectrogram image (errors name the file)."""
    x, rate = read_wav(path)
    x = resample(x, rate, params.sample_rate)
    try:
        return spectrogram_image(x, params)
    except ValueError as err:
        raise AudioError(f"cannot make a spectrogram of {path}: {err}") from err


def wav_to_waveform(path: str | os.PathLike, sample_rate: int, duration: float) -> np.ndarray:
    """Read one WAV file as a (1, round(duration * sample_rate)) float32 waveform in [-1, 1]:
    resampled to `sample_rate` Hz, scaled to a peak of 1 (a recording's loudness depends on the
    speaker's distance to the microphone and its gain; the spectrogram images are normalised per
    recording too), zero-padded at its end or cut to `duration` seconds. A silent recording stays 0."""
    x, rate = read_wav(path)
    x = resample(x, rate, sample_rate)
    peak = float(np.abs(x).max()) if x.size else 0.0
    if peak > 0:
        x = x / peak
    n = int(round(duration * sample_rate))
    out = np.zeros((1, n), np.float32)
    out[0, :min(n, len(x))] = x[:n]
    return out
