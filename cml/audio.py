"""Audio for the classification assignment: synthesised sounds that need no download, and real files.

:func:`synthesize` makes a labelled set of short sounds from six documented recipes. They are synthetic,
not recordings: each class is a family of signals with random pitch, timing, loudness and background
noise, so that the classes overlap a little and features have to be chosen with care.
:func:`load_audio_folder` reads real recordings laid out one sub-folder per class (the layout of
ESC-50 or Speech Commands once sorted), and :func:`write_wav` writes a signal as a 16-bit WAV file.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["CLASS_RECIPES", "AudioDataset", "synthesize", "load_audio_folder", "write_wav", "spectrogram"]


@dataclass(frozen=True)
class AudioDataset:
    """Equal-length mono signals with integer labels.

    ``signals`` is float32 ``(n, n_samples)`` in [-1, 1]; ``labels`` int64 ``(n,)`` indexes ``class_names``.
    """

    signals: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    sample_rate: int

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def duration(self) -> float:
        """Seconds per signal."""
        return self.signals.shape[1] / self.sample_rate


# --- synthesis ---------------------------------------------------------------------------------------

Recipe = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]


def _tone(t: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
    frequency = rng.uniform(300, 1500)
    vibrato = rng.uniform(0.0, 0.02) * frequency * np.sin(2 * np.pi * rng.uniform(4, 7) * t)
    return np.sin(2 * np.pi * np.cumsum(frequency + vibrato) / rate)


def _chord(t: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
    root = rng.uniform(150, 400)
    third = 5 / 4 if rng.random() < 0.5 else 6 / 5
    signal = np.zeros_like(t)
    for ratio in (1.0, third, 3 / 2):
        for harmonic in (1, 2, 3):
            signal += np.sin(2 * np.pi * root * ratio * harmonic * t + rng.uniform(0, 2 * np.pi)) / harmonic
    return signal


def _chirp(t: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
    start, end = rng.uniform(200, 3000, size=2)
    while abs(math.log(end / start)) < 0.7:
        start, end = rng.uniform(200, 3000, size=2)
    frequency = start * (end / start) ** (t / t[-1])
    return np.sin(2 * np.pi * np.cumsum(frequency) / rate)


def _noise(t: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
    low = rng.uniform(200, 2000)
    high = min(low * rng.uniform(1.5, 3.0), 0.45 * rate)
    spectrum = np.fft.rfft(rng.standard_normal(len(t)))
    frequencies = np.fft.rfftfreq(len(t), 1 / rate)
    spectrum[(frequencies < low) | (frequencies > high)] = 0
    return np.fft.irfft(spectrum, n=len(t))


def _drum(t: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
    top = rng.uniform(120, 250)
    decay = rng.uniform(0.04, 0.15)
    frequency = top * (0.5 + 0.5 * np.exp(-t / 0.03))
    body = np.sin(2 * np.pi * np.cumsum(frequency) / rate) * np.exp(-t / decay)
    click = rng.standard_normal(len(t)) * np.exp(-t / 0.004) * 0.5
    return body + click


def _buzz(t: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
    fundamental = rng.uniform(80, 300)
    n_harmonics = int(0.4 * rate / fundamental)
    harmonics = np.arange(1, n_harmonics + 1)[:, None]
    sawtooth = (np.sin(2 * np.pi * fundamental * harmonics * t) / harmonics).sum(axis=0)
    return sawtooth * (1 + 0.5 * np.sin(2 * np.pi * rng.uniform(3, 12) * t))


CLASS_RECIPES: dict[str, tuple[Recipe, str]] = {
    "tone": (_tone, "a pure sine at 300-1500 Hz with a slight vibrato"),
    "chord": (_chord, "a major or minor triad on a 150-400 Hz root, three harmonics per note"),
    "chirp": (_chirp, "a sine sweeping exponentially, up or down, between 200 and 3000 Hz"),
    "noise": (_noise, "white noise band-passed to a random band of 1.5-3x width starting at 200-2000 Hz"),
    "drum": (_drum, "a 120-250 Hz sine falling to half its pitch, decaying in 40-150 ms, with a noise click"),
    "buzz": (_buzz, "a band-limited sawtooth at 80-300 Hz with a 3-12 Hz tremolo"),
}
"""Class name -> (the function that draws one signal, the recipe in words)."""


def _envelope(n_samples: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Silence, a 5-50 ms attack, a sustain, a 20-100 ms release, silence: where the sound sits in the clip."""
    onset = int(rng.uniform(0.0, 0.15) * n_samples)
    length = int(rng.uniform(0.5, 0.85) * n_samples)
    attack = max(1, int(rng.uniform(0.005, 0.05) * rate))
    release = max(1, int(rng.uniform(0.02, 0.1) * rate))
    envelope = np.zeros(n_samples)
    end = min(n_samples, onset + length)
    envelope[onset:end] = 1.0
    attack_end = min(onset + attack, n_samples)
    envelope[onset:attack_end] *= np.linspace(0, 1, attack)[: attack_end - onset]
    release_start = max(onset, end - release)  # a release longer than the sound keeps only its tail
    envelope[release_start:end] *= np.linspace(1, 0, release)[release - (end - release_start) :]
    return envelope


def synthesize(
    n_per_class: int = 80,
    *,
    sample_rate: int = 8000,
    duration: float = 0.5,
    noise: float = 0.02,
    seed: int | np.random.Generator = 0,
) -> AudioDataset:
    """Draw ``n_per_class`` synthetic sounds of each class in :data:`CLASS_RECIPES`, shuffled.

    Each sound follows its class recipe with random parameters, sits at a random place in the clip under
    an attack/release envelope, is scaled to a random peak of 0.3-0.9 and gets white background noise of
    standard deviation ``noise``. Returns an :class:`AudioDataset` of ``6 * n_per_class`` signals of
    ``round(duration * sample_rate)`` samples.
    """
    if n_per_class < 1:
        raise ValueError(f"n_per_class must be positive, got {n_per_class}")
    rng = np.random.default_rng(seed)
    n_samples = round(duration * sample_rate)
    t = np.arange(n_samples) / sample_rate
    signals, labels = [], []
    for label, (recipe, _) in enumerate(CLASS_RECIPES.values()):
        for _ in range(n_per_class):
            sound = recipe(t, sample_rate, rng) * _envelope(n_samples, sample_rate, rng)
            sound *= rng.uniform(0.3, 0.9) / max(np.abs(sound).max(), 1e-9)
            signals.append(np.clip(sound + noise * rng.standard_normal(n_samples), -1, 1))
            labels.append(label)
    order = rng.permutation(len(labels))
    return AudioDataset(
        signals=np.asarray(signals, dtype=np.float32)[order],
        labels=np.asarray(labels, dtype=np.int64)[order],
        class_names=tuple(CLASS_RECIPES),
        sample_rate=sample_rate,
    )


# --- files -------------------------------------------------------------------------------------------

def write_wav(path: str | os.PathLike[str], signal: np.ndarray, sample_rate: int) -> Path:
    """Write a mono ``signal (n_samples,)`` in [-1, 1] (clipped) as a 16-bit PCM WAV file; returns the path."""
    from scipy.io import wavfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = np.asarray(signal, dtype=np.float64)
    if samples.ndim != 1:
        raise ValueError(f"write_wav expects one mono signal (n_samples,), got shape {samples.shape}")
    wavfile.write(path, sample_rate, np.round(np.clip(samples, -1, 1) * 32767).astype(np.int16))
    return path


def _read_mono(path: Path) -> tuple[int, np.ndarray]:
    """A WAV file as (sample rate, float64 mono samples in [-1, 1])."""
    import warnings

    from scipy.io import wavfile

    try:
        with warnings.catch_warnings():  # scipy warns about chunks it skips (metadata), which is harmless
            warnings.simplefilter("ignore")
            rate, data = wavfile.read(path)
    except (ValueError, OSError, EOFError) as error:
        raise ValueError(f"could not read {path} as a WAV file: {error}") from error
    if data.dtype == np.uint8:
        samples = (data.astype(np.float64) - 128) / 128
    elif np.issubdtype(data.dtype, np.integer):
        samples = data.astype(np.float64) / float(-np.iinfo(data.dtype).min)
    else:
        samples = data.astype(np.float64)
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    if samples.size == 0:
        raise ValueError(f"{path} holds no samples")
    return int(rate), samples


def _resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return samples
    from scipy.signal import resample_poly

    divisor = math.gcd(rate, target)
    return resample_poly(samples, target // divisor, rate // divisor)


def load_audio_folder(
    root: str | os.PathLike[str],
    *,
    sample_rate: int | None = None,
    duration: float | None = None,
    extensions: tuple[str, ...] = (".wav",),
) -> AudioDataset:
    """Read ``root/<class name>/*.wav`` into an :class:`AudioDataset` (classes in alphabetical order).

    Stereo files are mixed to mono. With ``sample_rate``, every file is resampled to it; without, all
    files must share one rate. Signals are cut or zero-padded to ``duration`` seconds (default: the
    longest file). Files directly in ``root`` and other extensions are ignored; an unreadable file
    raises an error naming it.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder; expected one sub-folder of audio files per class")
    suffixes = tuple(extension.lower() for extension in extensions)
    files_by_class = {
        folder.name: sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
        for folder in sorted(root.iterdir())
        if folder.is_dir() and not folder.name.startswith(".")
    }
    files_by_class = {name: files for name, files in files_by_class.items() if files}
    if not files_by_class:
        raise FileNotFoundError(f"no {'/'.join(suffixes)} files in any sub-folder of {root}")
    recordings = [(label, path, *_read_mono(path))
                  for label, files in enumerate(files_by_class.values()) for path in files]
    rates = {rate for _, _, rate, _ in recordings}
    if sample_rate is None:
        if len(rates) > 1:
            examples = {rate: path.name for _, path, rate, _ in recordings}
            listing = ", ".join(f"{rate} Hz ({name})" for rate, name in sorted(examples.items()))
            raise ValueError(f"the files have different sample rates: {listing}; pass sample_rate= to resample them")
        sample_rate = rates.pop()
    signals = [_resample(samples, rate, sample_rate) for _, _, rate, samples in recordings]
    length = round(duration * sample_rate) if duration is not None else max(len(signal) for signal in signals)
    batch = np.zeros((len(signals), length), dtype=np.float32)
    for row, signal in zip(batch, signals):
        row[: min(length, len(signal))] = signal[:length]
    return AudioDataset(
        signals=np.clip(batch, -1, 1),
        labels=np.asarray([label for label, *_ in recordings], dtype=np.int64),
        class_names=tuple(files_by_class),
        sample_rate=sample_rate,
    )


# --- spectra -----------------------------------------------------------------------------------------

def spectrogram(
    signals: np.ndarray, sample_rate: int, *, frame_length: int = 256, hop_length: int = 128
) -> tuple[np.ndarray, np.ndarray]:
    """Power spectrogram of each signal: Hann-windowed frames, ``|rfft|**2``.

    ``signals (..., n_samples)`` gives ``power (..., n_frames, frame_length // 2 + 1)`` with
    ``n_frames = 1 + (n_samples - frame_length) // hop_length``, and ``freqs (n_bins,)`` in Hz.
    """
    signals = np.asarray(signals, dtype=np.float64)
    if signals.shape[-1] < frame_length:
        raise ValueError(f"signals of {signals.shape[-1]} samples are shorter than one frame ({frame_length})")
    frames = np.lib.stride_tricks.sliding_window_view(signals, frame_length, axis=-1)[..., ::hop_length, :]
    power = np.abs(np.fft.rfft(frames * np.hanning(frame_length), axis=-1)) ** 2
    return power, np.fft.rfftfreq(frame_length, 1 / sample_rate)
