"""Source folders of real recordings for `sepbench prepare`, built from installed Debian packages.

    python scripts/real_dev_sources.py build OUT [--seed 0]   # OUT/speech/<speaker>/, OUT/noise/<kind>/
    python scripts/real_dev_sources.py summary OUT [--data DATA]

Called by scripts/make_real_dev.sh, which installs the packages first. Every file's pieces are
read from the package's own file list (`dpkg-query -L`), so only packaged recordings go in.

Speech: the studio prompts of 7 voice talents (asterisk-core-sounds-*-wav, asterisk-prompt-*).
Prompts are 0.3-6 s; `sepbench prepare` skips files shorter than a clip, so each speaker's prompts
are trimmed of leading/trailing silence and joined, in a seeded random order with 0.2-0.5 s pauses,
into 20-40 s files. One file holds one speaker, and each prompt goes into exactly one file, so
prepare's split by file keeps train and test recordings disjoint (speakers are shared).

Noise, one folder per kind:
  machines, vehicles, nature, city: recorded sound effects of OpenSFX (openttd-opensfx, edited
      freesound.org / pdsounds.org recordings; the few made-from-scratch or cartoon "Toyland" ones
      are left out) and LinCity-NG (lincity-ng-data). Pieces cut from one recording (same OpenSFX
      original, same LinCity name) stay in one file; files of 8-14 s, so that each kind has
      a number of files near those of babble and music (prepare draws noise files uniformly).
  music: whole tracks, one file each (asterisk-moh-opsound-wav, and the songs of lincity-ng-data
      and xmoto-data).
  babble: 3-6 voices talking at once, 15-25 s; the voices are KTuberling's recorded words
      (ktuberling-data, ~20 languages, one recording set each), never the target speakers, and
      each word is used once.
Files joining pieces of different sample rates are written at 16 kHz, all others at their
native rate; prepare resamples to the data set's rate. FLAC, mono, 16 bit. SOURCES.csv lists
the pieces of every file. Deterministic from --seed.
"""
from __future__ import annotations

import argparse
import collections
import csv
import hashlib
import io
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import scipy.signal
import soundfile as sf

SPEAKERS = [  # (speaker, language, package, folder inside /usr/share/asterisk/sounds)
    ("allison_smith", "en", "asterisk-core-sounds-en-wav", "en_US_f_Allison"),
    ("allison_smith", "es", "asterisk-core-sounds-es-wav", "es_MX_f_Allison"),
    ("june_wallack", "fr", "asterisk-core-sounds-fr-wav", "fr_CA_f_June"),
    ("carlo_flora", "it", "asterisk-core-sounds-it-wav", "it_IT_m_Carlo"),
    ("ivrvoice_ru", "ru", "asterisk-core-sounds-ru-wav", "ru_RU_f_IvrvoiceRU"),
    ("paola_dal_zot", "it", "asterisk-prompt-it-menardi-wav", "it_IT_f_Menardi"),
    ("armelle_desjardins", "fr", "asterisk-prompt-fr-armelle", "fr"),
    ("july_jimenez", "es", "asterisk-prompt-es-co", "es"),
]
NOT_SPEECH = re.compile(r"(^|/)(silence/|beep|beeperr|[a-z]+-2tone|tt-monkeys\.)")
BABBLE_PACKAGE = "ktuberling-data"
OPENSFX_PACKAGE = "openttd-opensfx"
LINCITY_PACKAGE = "lincity-ng-data"
MOH_PACKAGE = "asterisk-moh-opsound-wav"
XMOTO_PACKAGE = "xmoto-data"
PACKAGES = sorted({s[2] for s in SPEAKERS} | {BABBLE_PACKAGE, OPENSFX_PACKAGE, LINCITY_PACKAGE, MOH_PACKAGE, XMOTO_PACKAGE})

# OpenSFX sound name (its first words) -> kind. Sounds not listed (made from scratch, Toyland
# cartoon mixes, "Unused") are left out.
OPENSFX_KINDS = {
    "vehicles": ["Steam train station departure", "Steam engine going in tunnel", "Ship horn", "Ferry horn",
                 "Propeller plane start", "Early jet take off", "Diesel/electric train", "Level crossing",
                 "Road vehicle breakdown", "Train/ship breakdown", "Crash", "Big crash", "Helicopter",
                 "Truck/old bus start", "Modern bus start", "Old bus start", "Modern car horn",
                 "Mach 1+ Jet take off", "Modern jet take off", "Maglev train", "Monorail train"],
    "machines": ["Mining machinery", "Electric sparking", "Jackhammer", "Building bridge", "Sawmill",
                 "Lumber mill"],
    "nature": ["Sheep", "Cow", "Horse", "Wind", "Heavy wind", "Tropical: Bird", "Tropical: Lion",
               "Tropical: Monkeys"],
    "city": ["Applause"],
}
# LinCity-NG sound (the name's first capitalised word) -> kind. Left out: Click, Window* (UI
# sounds), Health (mostly silence and monitor beeps), Substation (clean tonal sweeps: maybe synthetic).
# Pieces group by name without the number (Farm1-3); names that share audio (found by band-passed
# cross-correlation of all pairs; identical files are dropped by Unique) group together.
LINCITY_SHARED = {"TraficHigh": "Trafic", "TraficLow": "Trafic"}
LINCITY_KINDS = {
    "machines": ["Blacksmith", "Build", "Coal", "Industry", "Mill", "Ore", "Pottery", "Power", "Raze",
                 "Recycle", "Tip", "Wind"],
    "vehicles": ["Dirt", "Rail", "Trafic", "Harbor", "Rocket"],
    "nature": ["Farm", "Organic", "Green", "Parkland", "Water", "Fire"],
    "city": ["Commune", "Market", "Residential", "School", "Shanty", "Sports", "University", "Monument"],
}
MIXED_RATE = 16000
SPEECH_SECONDS = (20.0, 40.0)
NOISE_SECONDS = (8.0, 14.0)
BABBLE_SECONDS = (15.0, 25.0)
MIN_SECONDS = 4.0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="write the source folders")
    b.add_argument("out", type=Path)
    b.add_argument("--seed", type=int, default=0)
    s = sub.add_parser("summary", help="source files per kind (and per split of a prepared data set)")
    s.add_argument("out", type=Path)
    s.add_argument("--data", type=Path, help="a data set prepared from OUT: count its files per split")
    t = sub.add_parser("tune", help="link the recordings of a prepared data set's train split into OUT/{speech,noise}")
    t.add_argument("sources", type=Path)
    t.add_argument("data", type=Path)
    t.add_argument("out", type=Path)
    sub.add_parser("stamp", help="print what the sources depend on (packages, this script, the seed)").add_argument(
        "--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command == "build":
        build(args.out, args.seed)
    elif args.command == "summary":
        print(summary(args.out, args.data))
    elif args.command == "tune":
        print(f"linked {link_train_files(args.sources, args.data, args.out)} train recordings into {args.out}")
    else:
        print(stamp(args.seed))
    return 0


def link_train_files(sources: Path, data: Path, out: Path) -> int:
    """Symbolic links to the recordings that `data`'s train split was cut from, in the layout of
    `sources`: prepared again, they give a tuning set whose test split shares no recording with
    its train split and none with `data`'s test split."""
    with open(data / "manifest.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "train"]
    files = {("speech", r["speech_file"]) for r in rows} | {("noise", r["noise_file"]) for r in rows}
    for kind, name in sorted(files):
        link = out / kind / name
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():
            link.symlink_to((sources / kind / name).resolve())
    return len(files)


# ---------------------------------------------------------------------------------------- input

def package_files(package: str) -> list[str]:
    out = subprocess.run(["dpkg-query", "-L", package], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"error: package {package} is not installed ({out.stderr.strip()})")
    return sorted(p for p in out.stdout.splitlines() if os.path.isfile(p) and not os.path.islink(p))


def stamp(seed: int) -> str:
    versions = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${Version}\n", *PACKAGES],
                              capture_output=True, text=True).stdout
    script = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]
    return f"seed {seed}\nscript {script}\n{versions}"


def read_mono(path: str) -> tuple[np.ndarray, int]:
    if path.endswith(".gsm"):  # raw GSM 06.10, 8 kHz: libsndfile cannot read it, sox can
        raw = subprocess.run(["sox", "-t", "gsm", "-r", "8000", "-c", "1", path, "-t", "f32", "-"],
                             capture_output=True, check=True).stdout
        return np.frombuffer(raw, dtype="<f4").astype(np.float64), 8000
    data, rate = sf.read(path, dtype="float64", always_2d=True)
    return data.mean(axis=1), rate


def read_buffer(data: bytes) -> tuple[np.ndarray, int]:
    x, rate = sf.read(io.BytesIO(data), dtype="float64", always_2d=True)
    return x.mean(axis=1), rate


def trim(x: np.ndarray, rate: int, below_peak_db: float, floor_db: float = -60.0, margin_s: float = 0.04) -> np.ndarray:
    """Cut leading/trailing stretches quieter than the loudest 10 ms frame minus below_peak_db."""
    hop = max(1, rate // 100)
    n = len(x) // hop
    if n == 0:
        return x[:0]
    energy = 10 * np.log10(np.mean(x[: n * hop].reshape(n, hop) ** 2, axis=1) + 1e-12)
    loud = np.flatnonzero(energy > max(energy.max() - below_peak_db, floor_db))
    if len(loud) == 0:
        return x[:0]
    margin = int(margin_s * rate)
    return x[max(0, loud[0] * hop - margin): min(len(x), (loud[-1] + 1) * hop + margin)]


def fade(x: np.ndarray, rate: int, seconds: float = 0.01) -> np.ndarray:
    k = min(len(x) // 2, int(seconds * rate))
    if k > 0:
        x = x.copy()
        ramp = np.sin(np.linspace(0, np.pi / 2, k)) ** 2
        x[:k] *= ramp
        x[-k:] *= ramp[::-1]
    return x


def resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    if rate_in == rate_out:
        return x
    g = math.gcd(rate_in, rate_out)
    return scipy.signal.resample_poly(x, rate_out // g, rate_in // g)


def rng_for(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


# ---------------------------------------------------------------------------------------- pieces

class Unique:
    """Drops recordings whose samples were seen before: packages ship some files twice under
    other names (LinCity's Harbor3 is Water2, CoalMine2 is Tip2), which would otherwise put one
    recording into two files, possibly one in train and one in test."""

    def __init__(self):
        self.seen = set()

    def __call__(self, x: np.ndarray) -> bool:
        digest = hashlib.sha1(np.round(x * 32768).astype(np.int32).tobytes()).digest()
        new = digest not in self.seen
        self.seen.add(digest)
        return new


class Piece:
    """One trimmed recording, ready to be joined."""

    def __init__(self, label: str, x: np.ndarray, rate: int):
        self.label, self.x, self.rate = label, x, rate

    @property
    def seconds(self) -> float:
        return len(self.x) / self.rate


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


# ---------------------------------------------------------------------------------------- joining

def join(pieces: list[Piece], rng, gap_s: tuple[float, float] | None) -> tuple[np.ndarray, int]:
    rates = {p.rate for p in pieces}
    rate = rates.pop() if len(rates) == 1 else MIXED_RATE
    parts = []
    for i, p in enumerate(pieces):
        if i and gap_s:
            parts.append(np.zeros(int(rng.uniform(*gap_s) * rate)))
        parts.append(resample(p.x, p.rate, rate))
    return np.concatenate(parts), rate


def chunk(units: list, seconds, rng, span: tuple[float, float]) -> list[list]:
    """Consecutive units into runs of span seconds (drawn per run); a short tail joins the last run."""
    runs, run, total, target = [], [], 0.0, rng.uniform(*span)
    for unit in units:
        run.append(unit)
        total += seconds(unit)
        if total >= target:
            runs.append(run)
            run, total, target = [], 0.0, rng.uniform(*span)
    if run:
        if runs and (total < span[0] or total < MIN_SECONDS):
            runs[-1].extend(run)
        else:
            runs.append(run)
    return runs


def babble(voices: dict[str, list[Piece]], seed: int) -> list[tuple[np.ndarray, list[str], int]]:
    """Files of 3-6 voices talking at once, each word used once. A voice that runs out of words
    is taken over by another language not yet in the file, so all k stay busy to the end; files
    stop when the words left could not fill one."""
    rng = rng_for(seed, "babble")
    left = {lang: [words[i] for i in rng.permutation(len(words))] for lang, words in sorted(voices.items())}
    files = []
    while True:
        k = int(rng.integers(3, 7))
        n = int(rng.uniform(*BABBLE_SECONDS) * MIXED_RATE)
        amount = {lang: sum(len(w.x) for w in words) for lang, words in left.items() if words}
        if len(amount) <= k or sum(amount.values()) < 0.8 * k * n:
            return files
        mix, labels, used = np.zeros(n), [], set()

        def take_language():
            options = sorted(lang for lang in amount if lang not in used and left[lang])
            if not options:
                return None
            weight = np.array([amount[lang] for lang in options], dtype=float)
            lang = str(rng.choice(options, p=weight / weight.sum()))
            used.add(lang)
            return lang

        for _ in range(k):
            lang, pos = take_language(), int(rng.uniform(0, 0.3) * MIXED_RATE)
            while lang is not None:
                if not left[lang]:
                    lang = take_language()
                    continue
                word = left[lang][0]
                if pos + len(word.x) > n:
                    break
                left[lang].pop(0)
                mix[pos: pos + len(word.x)] += word.x
                labels.append(word.label)
                pos += len(word.x) + int(rng.uniform(0.05, 0.25) * MIXED_RATE)
        files.append((mix, labels, k))


def write(path: Path, x: np.ndarray, rate: int) -> None:
    peak = np.max(np.abs(x)) if len(x) else 0.0
    if peak > 0.95:
        x = x * (0.95 / peak)
    buffer = io.BytesIO()  # through memory: see benchmark/data/folder.py write_audio
    sf.write(buffer, x, rate, subtype="PCM_16", format="FLAC")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())


def build(out: Path, seed: int) -> None:
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    rows = []

    def emit(rel: str, kind: str, group: str, x: np.ndarray, rate: int, labels: list[str]) -> None:
        write(tmp / rel, x, rate)
        rows.append({"file": rel, "kind": kind, "group": group, "seconds": f"{len(x) / rate:.2f}",
                     "sample_rate": rate, "pieces": len(labels), "sources": " ; ".join(labels)})

    for speaker, prompts in sorted(speech_pieces().items()):
        rng = rng_for(seed, speaker)
        order = [prompts[i] for i in rng.permutation(len(prompts))]
        for j, run in enumerate(chunk(order, lambda u: u[1].seconds + 0.35, rng, SPEECH_SECONDS), 1):
            x, rate = join([p for _, p in run], rng, (0.2, 0.5))
            langs = "+".join(sorted({lang for lang, _ in run}))
            emit(f"speech/{speaker}/{speaker}_{j:03d}.flac", "speech", f"{speaker} ({langs})", x, rate,
                 [p.label for _, p in run])

    effects = collections.defaultdict(list)
    for source in (opensfx_pieces(), lincity_pieces()):
        for kind, groups in source.items():
            effects[kind].extend(groups)
    for kind, groups in sorted(effects.items()):
        rng = rng_for(seed, kind)
        groups = sorted(groups, key=lambda g: g[0].label)
        order = [groups[i] for i in rng.permutation(len(groups))]
        for j, run in enumerate(chunk(order, lambda g: sum(p.seconds for p in g), rng, NOISE_SECONDS), 1):
            pieces = [p for g in run for p in g]
            x, rate = join(pieces, rng, None)
            emit(f"noise/{kind}/{kind}_{j:02d}.flac", kind, kind, x, rate, [p.label for p in pieces])

    for piece in music_pieces():
        name = re.sub(r"[^a-z0-9]+", "_", piece.label.split(":", 1)[1].rsplit(".", 1)[0].lower()).strip("_")
        emit(f"noise/music/{name}.flac", "music", "music", piece.x, piece.rate, [piece.label])

    for j, (x, labels, k) in enumerate(babble(babble_words(), seed), 1):
        voices = sorted({label.split(":", 1)[1].split("/")[0] for label in labels})
        emit(f"noise/babble/babble_{j:02d}.flac", "babble", f"{k} at once, {len(voices)} voices: {'+'.join(voices)}",
             x, MIXED_RATE, labels)

    short = [r["file"] for r in rows if float(r["seconds"]) < MIN_SECONDS]
    if short:
        sys.exit(f"error: files shorter than {MIN_SECONDS} s: {short}")
    with open(tmp / "SOURCES.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (tmp / ".stamp").write_text(stamp(seed))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    print(summary(out))


def summary(out: Path, data: Path | None = None) -> str:
    with open(out / "SOURCES.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    split_of, clips = {}, collections.Counter()
    if data is not None and (data / "manifest.csv").is_file():
        with open(data / "manifest.csv", newline="") as f:
            for r in csv.DictReader(f):
                split_of[("speech/" + r["speech_file"])] = r["split"]
                split_of[("noise/" + r["noise_file"])] = r["split"]
                clips[(r["noise_file"].split("/")[0], r["split"])] += 1
    by_kind = collections.defaultdict(list)
    for r in rows:
        by_kind[r["kind"]].append(r)
    lines = [f"{'kind':<9} {'files':>5} {'minutes':>8} {'mean s':>7}" +
             ("  files train/test  clips train/test" if split_of else "") + "  what"]
    for kind in ["speech"] + sorted(k for k in by_kind if k != "speech"):
        rs = by_kind[kind]
        secs = [float(r["seconds"]) for r in rs]
        sources = [s for r in rs for s in r["sources"].split(" ; ")]
        if kind == "speech":
            groups = collections.Counter(r["group"].split(" (")[0] for r in rs)
            g = f"{len(sources)} prompts; files per speaker: " + ", ".join(f"{k} {v}" for k, v in sorted(groups.items()))
        elif kind == "babble":
            g = f"{len(sources)} words of {len({s.split(':')[1].split('/')[0] for s in sources})} voices"
        else:
            packages = collections.Counter(s.split(":")[0] for s in sources)
            g = f"{len(sources)} recordings: " + ", ".join(f"{k} {v}" for k, v in sorted(packages.items()))
        line = f"{kind:<9} {len(rs):>5} {sum(secs) / 60:>8.1f} {np.mean(secs):>7.1f}"
        if split_of:
            used = collections.Counter(split_of.get(r["file"], "-") for r in rs)
            # every clip has one speech file; noise clips count per kind
            n = [sum(v for (k, split), v in clips.items() if split == want and kind in (k, "speech"))
                 for want in ("train", "test")]
            line += f"  {used['train']:>11}/{used['test']:<4}  {n[0]:>11}/{n[1]:<4}"
        lines.append(f"{line}  {g}")
    total = [float(r["seconds"]) for r in rows]
    noise = [float(r["seconds"]) for r in rows if r["kind"] != "speech"]
    lines.append(f"total: {len(rows)} files, {sum(total) / 60:.1f} min "
                 f"(speech {(sum(total) - sum(noise)) / 60:.1f} min, noise {sum(noise) / 60:.1f} min)")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
