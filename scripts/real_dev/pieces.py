"""Each package's recordings as trimmed pieces, grouped by speaker, kind or original recording."""
from __future__ import annotations

import collections
import re
import struct
from pathlib import Path

import numpy as np

from recipes.audio import resample

from .catalogue import (
    BABBLE_PACKAGE,
    LINCITY_KINDS,
    LINCITY_PACKAGE,
    LINCITY_SHARED,
    MIXED_RATE,
    MOH_PACKAGE,
    NOT_SPEECH,
    OPENSFX_KINDS,
    OPENSFX_PACKAGE,
    SPEAKERS,
    XMOTO_PACKAGE,
    package_files,
)
from .sound import Piece, Unique, fade, read_buffer, read_mono, trim


def speech_pieces() -> dict[str, list[tuple[str, Piece]]]:
    """speaker -> [(language, prompt)]"""
    speakers, unique = collections.defaultdict(list), Unique()
    for speaker, language, package, folder in SPEAKERS:
        prefix = f"/usr/share/asterisk/sounds/{folder}/"
        for path in package_files(package):
            rel = path[len(prefix):] if path.startswith(prefix) else None
            if rel is None or not rel.endswith((".wav", ".gsm")) or NOT_SPEECH.search(rel):
                continue
            x, rate = read_mono(path)
            x = trim(x, rate, below_peak_db=40.0)
            if len(x) >= 0.15 * rate and unique(x):
                speakers[speaker].append((language, Piece(f"{package}:{rel}", fade(x, rate), rate)))
    return speakers


def opensfx_pieces() -> dict[str, list[list[Piece]]]:
    """kind -> groups of pieces cut from one original recording."""
    cat = next(p for p in package_files(OPENSFX_PACKAGE) if p.endswith(".cat"))
    blob = Path(cat).read_bytes()
    count = (struct.unpack_from("<I", blob, 0)[0] & 0x7FFFFFFF) // 8
    kinds, unique = collections.defaultdict(lambda: collections.defaultdict(list)), Unique()
    for i in range(count):  # OpenTTD .cat: (offset, size) table; at offset a name, then a RIFF WAV
        offset, size = struct.unpack_from("<II", blob, 8 * i)
        offset &= 0x7FFFFFFF
        length = blob[offset]
        name = blob[offset + 1: offset + 1 + length].rstrip(b"\0").decode("latin-1")
        title = name.split('"')[1] if name.startswith('"') else name
        kind = next((k for k, titles in OPENSFX_KINDS.items() for t in titles if title.startswith(t)), None)
        if kind is None or "Original" not in name:  # the others were made from scratch
            continue
        # Sounds edited from one original recording share it: keep them in one file.
        originals = re.findall(r'"([^"]+\.(?:wav|mp3|aif|flac|ogg))"', name, flags=re.I)
        key = originals[0] if originals else title
        x, rate = read_buffer(blob[offset + 1 + length: offset + 1 + length + size])
        x = trim(x, rate, below_peak_db=50.0)
        if len(x) >= 0.5 * rate and unique(x):
            kinds[kind][key].append(Piece(f"{OPENSFX_PACKAGE}:#{i} {title}", fade(x, rate, 0.02), rate))
    return {k: list(v.values()) for k, v in kinds.items()}


def lincity_pieces() -> dict[str, list[list[Piece]]]:
    kinds = collections.defaultdict(lambda: collections.defaultdict(list))
    kind_of = {stem: kind for kind, stems in LINCITY_KINDS.items() for stem in stems}
    unique = Unique()
    for path in package_files(LINCITY_PACKAGE):
        if "/sounds/" not in path or not path.endswith(".wav"):
            continue
        stem = re.match(r"[A-Z][a-z]+", Path(path).name)
        kind = kind_of.get(stem.group(0)) if stem else None
        if kind is None:
            continue
        x, rate = read_mono(path)
        if not unique(x):
            continue
        x = trim(x, rate, below_peak_db=50.0)
        name = re.sub(r"\d+$", "", Path(path).stem)
        if len(x) >= 0.5 * rate:
            kinds[kind][LINCITY_SHARED.get(name, name)].append(Piece(f"{LINCITY_PACKAGE}:{Path(path).name}", fade(x, rate, 0.02), rate))
    return {k: list(v.values()) for k, v in kinds.items()}


def music_pieces() -> list[Piece]:
    tracks = [p for p in package_files(MOH_PACKAGE) if p.endswith(".wav")]
    tracks += [p for p in package_files(LINCITY_PACKAGE) if "/music/" in p and p.endswith(".ogg")]
    tracks += [p for p in package_files(XMOTO_PACKAGE) if "/Musics/" in p and p.endswith(".ogg")]
    pieces = []
    for path in tracks:
        x, rate = read_mono(path)
        package = MOH_PACKAGE if "/asterisk/" in path else LINCITY_PACKAGE if "/lincity" in path else XMOTO_PACKAGE
        pieces.append(Piece(f"{package}:{Path(path).name}", fade(trim(x, rate, 60.0), rate, 0.05), rate))
    return pieces


def babble_words() -> dict[str, list[Piece]]:
    """language -> words; identical files (sr, sr@latin, ...) are kept once."""
    unique, voices = Unique(), collections.defaultdict(list)
    for path in package_files(BABBLE_PACKAGE):
        if "/sounds/" not in path or not path.endswith((".ogg", ".wav")):
            continue
        x, rate = read_mono(path)
        x = trim(x, rate, below_peak_db=40.0)
        if len(x) < 0.15 * rate or not unique(x):
            continue
        x = resample(x, rate, MIXED_RATE)
        x = x / (np.sqrt(np.mean(x ** 2)) + 1e-9) * 0.05  # equal level for every word and voice
        language = Path(path).parent.name.split("@")[0]
        voices[language].append(Piece(f"{BABBLE_PACKAGE}:{language}/{Path(path).name}", fade(x, MIXED_RATE), MIXED_RATE))
    return voices
