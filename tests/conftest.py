"""Shared fixtures: tiny generated data sets, and helpers (as fixtures: a `tests` package in
site-packages can shadow this folder) that write clip folders by hand."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from benchmark.data.demo import generate
from recipes import folder as folder_format


@pytest.fixture(scope="session", autouse=True)
def own_cache(tmp_path_factory):
    """The tests' own XDG_CACHE_HOME (validation records): never the user's, and inherited by the
    commands the tests start."""
    previous = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if previous is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = previous


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """24 train + 9 test clips of 1 s at 8 kHz, labels -3/0/3 dB, made once per session.
    Shared by many tests: never modify it; use `tiny_copy` for a private, writable copy."""
    return generate(tmp_path_factory.mktemp("tiny") / "data", n_train=24, n_test=9, seconds=1.0,
                    sample_rate=8000, snrs=[-3, 0, 3], seed=0)


@pytest.fixture
def tiny_copy(tiny_data, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_data, tmp_path / "data"))


def _write_clip(folder: Path, voice: np.ndarray, noise: np.ndarray, snr: str | float = 0, sr: int = 8000,
               mix: np.ndarray | None = None, subtype: str = "PCM_16", suffix: str = ".wav") -> Path:
    """One clip folder; the mixture is voice + noise unless given. Arrays are [T] or [T, C]."""
    return folder_format.write_clip(folder, voice, noise, voice + noise if mix is None else mix, sr, snr, subtype, suffix)


def _tone_and_noise(n: int = 4000, sr: int = 8000, snr_db: float = 0.0, seed: int = 0):
    """A 200 Hz tone (the 'voice') and white noise at the given power ratio, peaks well below 1."""
    rng = np.random.default_rng(seed)
    voice = 0.2 * np.sin(2 * np.pi * 200 * np.arange(n) / sr)
    noise = rng.standard_normal(n)
    noise *= np.sqrt(np.mean(voice**2) / np.mean(noise**2)) * 10 ** (-snr_db / 20)
    return voice.astype(np.float32), noise.astype(np.float32)


@pytest.fixture
def write_clip():
    return _write_clip


@pytest.fixture
def tone_and_noise():
    return _tone_and_noise
