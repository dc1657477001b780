"""cml.audio: the synthesised set, WAV files written and read back, and the spectrogram."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from cml.audio import CLASS_RECIPES, load_audio_folder, spectrogram, synthesize, write_wav


def test_synthesize_is_balanced_bounded_and_seeded() -> None:
    dataset = synthesize(5, sample_rate=4000, duration=0.25, seed=3)
    assert dataset.signals.shape == (30, 1000) and dataset.signals.dtype == np.float32
    assert np.bincount(dataset.labels).tolist() == [5] * len(CLASS_RECIPES)
    assert dataset.class_names == tuple(CLASS_RECIPES)
    assert np.abs(dataset.signals).max() <= 1.0 and dataset.duration == pytest.approx(0.25)
    assert np.array_equal(dataset.signals, synthesize(5, sample_rate=4000, duration=0.25, seed=3).signals)
    assert not np.array_equal(dataset.signals, synthesize(5, sample_rate=4000, duration=0.25, seed=4).signals)


def test_synthetic_classes_differ_in_their_spectra() -> None:
    dataset = synthesize(20, seed=0)
    power, freqs = spectrogram(dataset.signals, dataset.sample_rate)
    spectrum = power.sum(axis=1)  # whole clip, so that the quiet frames' background noise weighs little
    centroid = (spectrum * freqs).sum(-1) / spectrum.sum(-1)
    by_class = {name: np.median(centroid[dataset.labels == k]) for k, name in enumerate(dataset.class_names)}
    assert by_class["drum"] < by_class["chord"] < by_class["chirp"]


def test_spectrogram_of_a_pure_tone_peaks_at_its_frequency() -> None:
    rate, frequency = 8000, 1000.0
    tone = np.sin(2 * np.pi * frequency * np.arange(2048) / rate)
    power, freqs = spectrogram(np.stack([tone, 0.5 * tone]), rate, frame_length=256, hop_length=128)
    assert power.shape == (2, 1 + (2048 - 256) // 128, 129) and freqs.shape == (129,)
    assert freqs[power[0].mean(0).argmax()] == pytest.approx(frequency)
    assert np.allclose(power[1], power[0] / 4)
    with pytest.raises(ValueError, match="shorter than one frame"):
        spectrogram(tone[:100], rate)


def test_written_files_load_back_by_class(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    signals = {("dog", 0): rng.uniform(-0.5, 0.5, 800), ("cat", 0): rng.uniform(-0.5, 0.5, 600),
               ("cat", 1): rng.uniform(-0.5, 0.5, 700)}
    for (name, index), signal in signals.items():
        write_wav(tmp_path / name / f"{index}.wav", signal, 8000)
    (tmp_path / "notes.txt").write_text("ignored")
    (tmp_path / "empty").mkdir()
    dataset = load_audio_folder(tmp_path)
    assert dataset.class_names == ("cat", "dog") and dataset.labels.tolist() == [0, 0, 1]
    assert dataset.signals.shape == (3, 800) and dataset.sample_rate == 8000
    assert np.allclose(dataset.signals[1, :700], signals[("cat", 1)], atol=1e-4)
    assert np.all(dataset.signals[0, 600:] == 0)  # padded
    assert load_audio_folder(tmp_path, duration=0.05).signals.shape == (3, 400)  # trimmed


def test_stereo_eight_bit_and_other_rates_are_converted(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    with wave.open(str(tmp_path / "a" / "stereo8.wav"), "wb") as stream:
        stream.setnchannels(2)
        stream.setsampwidth(1)
        stream.setframerate(16000)
        stream.writeframes(bytes([128 + 64, 128 - 64] * 1600))  # left +0.5, right -0.5: mono 0
    write_wav(tmp_path / "a" / "mono.wav", np.full(800, 0.25), 8000)
    with pytest.raises(ValueError, match="different sample rates.*sample_rate="):
        load_audio_folder(tmp_path)
    dataset = load_audio_folder(tmp_path, sample_rate=8000)
    assert dataset.signals.shape == (2, 800)
    assert np.allclose(dataset.signals[1, 100:700], 0.0, atol=1e-6)
    assert np.allclose(dataset.signals[0, 100:700], 0.25, atol=1e-3)


def test_bad_folders_and_files_get_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a folder"):
        load_audio_folder(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no .wav files"):
        load_audio_folder(tmp_path)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "broken.wav").write_bytes(b"RIFF\x00\x00not a wave")
    with pytest.raises(ValueError, match="broken.wav"):
        load_audio_folder(tmp_path)
    with pytest.raises(ValueError, match="mono"):
        write_wav(tmp_path / "x.wav", np.zeros((2, 10)), 8000)
