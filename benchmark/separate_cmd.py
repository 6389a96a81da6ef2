"""`sepbench separate`: a trained model on your own recordings, any rate, channels and length.

Per input, in bounded memory whatever its length:
1. the file is read in chunks (SoundFile.seek) and resampled to the model's rate chunk by chunk,
   each chunk reading the few kernel widths of input its samples depend on, so the model sees
   exactly what resampling the whole file would give (StreamResampler);
2. chunks with context are separated (benchmark.separate.core.iter_separate, the benchmark's own code
   path; channels go through the model as a batch, each separated on its own); a model exported by
   `sepbench export` (ONNX, TorchScript) runs behind the torch model's call interface on this same
   path (benchmark.separate.export.load_separator);
3. the estimates are resampled back to the input's rate as they stream out (resample_stream)
   and appended to raw float32 temp files beside the outputs, while the peak is tracked;
4. peak-safe policy: if any sample of either stem exceeds PEAK_LIMIT, voice and noise of that file
   are both scaled by ONE gain so the larger peak lands on PEAK_LIMIT (voice + noise then still
   add up to the scaled mixture); otherwise the samples are written unchanged. The temp files are
   converted to the input's format and subtype in blocks and renamed into place (atomic).
A problem with one input (unreadable, non-finite samples, an output that cannot be written, two
inputs that would write the same outputs) is one line for that file and the others go on; the
temp files of an earlier, killed run are removed from the output folders at start.
Resampling the input and the model output per block (rather than the whole file, or a chunk with
ad-hoc padding) is what keeps memory flat and leaves no seams at chunk borders.
"""
from __future__ import annotations

import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from benchmark.commands import CONTEXT_SECONDS
from benchmark.commands import separate as add_arguments  # noqa: F401 (tests/test_separate.py parses with it)
from benchmark.scoring import aggregate
from benchmark.separate.core import StreamResampler, iter_separate, pick_device, resample_stream
from benchmark.separate.export import load_separator
from recipes.audio import AUDIO_SUFFIXES, audio_info
from recipes.errors import SepbenchError
from recipes.files import atomic_files, remove_stale_temps, temp_prefix
from recipes.folder import sound_writer
from recipes.runs import DEFAULT_SEED, run_folder
from recipes.safe_names import RULE, is_safe_name

PEAK_LIMIT = 0.99           # -0.09 dBFS: headroom for integer rounding in PCM/FLAC subtypes
FADE_SECONDS = 0.25         # hides seams of models with utterance-level state (BiLSTM, gLN)
# Shorter chunks each still carry 2 x context: at 1 ms and 1 s of context a model ran 2000
# times per second of audio.
MIN_CHUNK_SECONDS = 0.1
_BLOCK = 1 << 16            # frames per block when converting the float temp files


def run(args) -> int:
    if args.checkpoint is not None:
        ckpt = args.checkpoint
    elif args.run is not None:
        ckpt = args.run / "best.pt"
    else:
        ckpt = best_checkpoint(args.leaderboard, args.runs)
        print(f"separate: --best is {ckpt}", file=sys.stderr)
    summary = separate_files(ckpt, args.inputs, args.out, device=args.device, chunk_seconds=args.chunk_seconds,
                             context_seconds=args.context_seconds, downmix=args.downmix, overwrite=args.overwrite)
    return 1 if summary["failed"] else 0


def best_checkpoint(leaderboard: Path, runs: Path) -> Path:
    """runs/<model>/<profile>[-seed<K>]/best.pt of the trained model with the highest overall mean voice
    SI-SDRi (summary.csv), and of its seeds the one that scored best (results.csv)."""
    path = Path(leaderboard) / "summary.csv"
    if not path.is_file():
        raise SepbenchError(f"{path}: not found; run `sepbench evaluate` first, or use --run/--checkpoint")
    summary = aggregate.read_summary(path)  # one that is not a summary is named as damaged
    best = aggregate.best_trained(summary)
    if best is None:
        raise SepbenchError(f"{path}: no trained model with an overall {aggregate.RANK_METRIC} mean")
    for key, name in zip(("model", "profile"), best):  # they become path parts: '../..' must not
        if not is_safe_name(name):
            raise SepbenchError(f"{path}: the best {key} name {name!r} is not a run folder name ({RULE})")
    return Path(runs) / best[0] / run_folder(best[1], _best_seed(Path(leaderboard) / "results.csv", best)) / "best.pt"


def _best_seed(results_csv: Path, best: tuple[str, str]) -> int:
    """The seed of `best` with the highest mean RANK_METRIC in results.csv (run_all --seeds N);
    the default seed when the file is absent or holds no seed column (older ones); a damaged one
    is an error, not a guess."""
    if not results_csv.is_file():
        return DEFAULT_SEED
    results = aggregate.read_results(results_csv)
    if "seed" not in results.columns or aggregate.RANK_METRIC not in results.columns:
        return DEFAULT_SEED
    rows = results[(results["model"] == best[0]) & (results["profile"] == best[1]) & (results["kind"] == "trained")
                   & results["seed"].str.fullmatch(r"[0-9]+")]
    means = rows.groupby(rows["seed"].astype(int))[aggregate.RANK_METRIC].mean().dropna()
    return int(means.idxmax()) if len(means) else DEFAULT_SEED


def find_inputs(inputs, out: Path) -> list[tuple[Path, Path | None, str | None]]:
    """(input, output stem path, error) per file; folder inputs are searched recursively and their
    sub-paths mirrored under `out`, leaving out anything already under `out`."""
    out_abs = Path(out).resolve()
    found = []
    for item in map(Path, inputs):
        if item.is_dir():
            files = sorted(p for p in item.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()
                           and not p.name.startswith(".") and out_abs not in p.resolve().parents)
            if not files:
                found.append((item, None, f"no {'/'.join(s[1:].upper() for s in AUDIO_SUFFIXES)} files in this folder"))
            found += [(p, Path(out) / p.relative_to(item).with_suffix(""), None) for p in files]
        elif item.is_file():
            found.append((item, Path(out) / item.stem, None))
        else:
            found.append((item, None, "no such file or folder"))
    return found


def output_paths(stem: Path, src: Path) -> tuple[Path, Path]:
    return (stem.with_name(f"{stem.name}_voice{src.suffix}"), stem.with_name(f"{stem.name}_noise{src.suffix}"))


class _Progress:
    """tqdm bars when stderr is a terminal; plain lines otherwise (logs, pipes)."""

    def __init__(self, n_files: int):
        self.tqdm = tqdm if sys.stderr.isatty() else None
        self.files = self.tqdm(total=n_files, unit="file", desc="files") if self.tqdm else None
        self.n_files, self.chunks, self.total, self.count = n_files, None, 0, 0

    def line(self, text: str) -> None:
        (self.tqdm.write if self.tqdm else print)(text, file=sys.stderr)

    def start_file(self, name: str, n_chunks: int) -> None:
        self.total, self.count = n_chunks, 0
        if self.tqdm:
            self.chunks = self.tqdm(total=n_chunks, unit="chunk", desc=name[-30:], leave=False)

    def chunk(self) -> None:
        self.count += 1
        if self.chunks is not None:
            self.chunks.update()
        elif self.total >= 20 and self.count % (self.total // 10) == 0:
            self.line(f"separate:   {self.count}/{self.total} chunks")

    def end_file(self) -> None:
        if self.chunks is not None:
            self.chunks.close()
            self.chunks = None
        if self.files is not None:
            self.files.update()

    def close(self) -> None:
        if self.files is not None:
            self.files.close()


def separate_files(checkpoint_path, inputs, out="separated", *, device: str = "cpu", chunk_seconds: float = 8.0,
                   context_seconds: float = CONTEXT_SECONDS, fade_seconds: float = FADE_SECONDS,
                   downmix: bool = False, overwrite: bool = False) -> dict:
    """Separate every input file; one stderr line per problem input, which is skipped. A bad
    checkpoint raises SepbenchError (nothing can be separated). Returns the run's summary."""
    if not (chunk_seconds == 0 or chunk_seconds >= MIN_CHUNK_SECONDS):  # NaN is refused too
        raise SepbenchError(f"--chunk-seconds {chunk_seconds:g}: must be 0 (whole files) or at least "
                            f"{MIN_CHUNK_SECONDS:g}")
    if not context_seconds >= 0:
        raise SepbenchError(f"--context-seconds {context_seconds:g}: must be 0 or more")
    device = pick_device(device)
    model, payload = load_separator(checkpoint_path, device)  # exported models run the same path
    rate = payload["sample_rate"]
    chunk = round(chunk_seconds * rate) if chunk_seconds > 0 else None
    context = round(context_seconds * rate)
    fade = min(round(fade_seconds * rate), chunk // 2) if chunk else 0
    jobs = find_inputs(inputs, out)
    progress = _Progress(len(jobs))
    for folder in sorted({stem.parent for _, stem, _ in jobs if stem is not None}):
        for path in remove_stale_temps(folder):
            progress.line(f"separate: removed {path}, left by an interrupted run")
    summary = {"done": 0, "failed": 0, "skipped": 0, "audio_seconds": 0.0, "wall_seconds": 0.0,
               "outputs": [], "errors": []}
    claimed: dict[Path, Path] = {}
    t_all = time.perf_counter()
    for i, (src, stem, error) in enumerate(jobs, 1):
        try:
            if error:
                raise SepbenchError(f"{src}: {error}")
            outs = output_paths(stem, src)
            other = next((claimed[p.resolve()] for p in outs if p.resolve() in claimed), None)
            if other is not None:  # e.g. a/x.wav and b/x.wav: both would write OUT/x_voice.wav
                raise SepbenchError(f"{src}: not separated: its outputs {outs[0]} and {outs[1]} are those of "
                                    f"{other} in this run; separate it with another --out")
            claimed.update({p.resolve(): src for p in outs})
            for p in outs:
                # Not "kept existing" (exit 0, nothing separated), nor with --overwrite a failed
                # rename naming a temporary file.
                if p.is_dir():
                    raise SepbenchError(f"{src}: not separated: {p} is a folder, not a file")
                if p.exists() and not p.is_file():
                    raise SepbenchError(f"{src}: not separated: {p} is not a regular file")
            existing = [str(p) for p in outs if p.exists()]
            if existing and not overwrite:
                summary["skipped"] += 1
                progress.line(f"separate: [{i}/{len(jobs)}] {src}: kept existing {', '.join(existing)} (use --overwrite)")
                continue
            t0 = time.perf_counter()
            seconds, gain = separate_file(model, rate, src, outs, chunk, context, fade, device, downmix, progress)
            wall = time.perf_counter() - t0
            summary["done"] += 1
            summary["audio_seconds"] += seconds
            summary["outputs"] += [str(p) for p in outs]
            note = f", scaled by {20 * math.log10(gain):.1f} dB to avoid clipping" if gain < 1 else ""
            progress.line(f"separate: [{i}/{len(jobs)}] {src}: {seconds:.1f} s in {wall:.1f} s{note}")
        except Exception as exc:  # one file's problem, whatever it is, must not stop the others
            message = str(exc) if isinstance(exc, SepbenchError) else f"{src}: {_describe(exc)}"
            summary["failed"] += 1
            summary["errors"].append((str(src), message))
            progress.line(f"separate: [{i}/{len(jobs)}] error: {message}")
        finally:
            progress.end_file()
    progress.close()
    summary["wall_seconds"] = time.perf_counter() - t_all
    summary["rtf"] = summary["wall_seconds"] / summary["audio_seconds"] if summary["audio_seconds"] else float("nan")
    timing = (f"{summary['audio_seconds']:.1f} s of audio in {summary['wall_seconds']:.1f} s "
              f"(real-time factor {summary['rtf']:.3f})" if summary["audio_seconds"] else "nothing was separated")
    print(f"separate: {summary['done']} done, {summary['failed']} failed, {summary['skipped']} kept; {timing}")
    return summary


def _describe(exc: BaseException) -> str:
    """One line for an unexpected error: an OSError's reason and file, else type and last line."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[-1]}" if lines else type(exc).__name__


def separate_file(model, rate: int, src: Path, outs: tuple[Path, Path], chunk, context: int, fade: int,
                  device: str, downmix: bool, progress: _Progress) -> tuple[float, float]:
    """Two streaming passes (see the module docstring). Returns (audio seconds, gain applied)."""
    info = audio_info(src)
    n, sr, channels = info.frames, info.samplerate, info.channels
    if n <= 0:
        raise SepbenchError(f"{src}: holds no audio samples")
    out_ch = 1 if downmix else channels
    to_model, to_input = StreamResampler(sr, rate), StreamResampler(rate, sr)
    m = to_model.out_length(n)
    progress.start_file(src.name, 1 + -(-(m - chunk) // (chunk - fade)) if chunk and chunk < m else 1)
    temps = []
    try:
        try:
            outs[0].parent.mkdir(parents=True, exist_ok=True)
            for p in outs:
                temps.append(tempfile.NamedTemporaryFile(dir=p.parent, prefix=temp_prefix(p), suffix=".f32",
                                                         delete=False))
        except OSError as exc:
            reason = ("not a folder" if isinstance(exc, (FileExistsError, NotADirectoryError))
                      else exc.strerror or type(exc).__name__)
            raise SepbenchError(f"{src}: cannot write its outputs into {outs[0].parent} ({reason})") from None
        with sf.SoundFile(str(src)) as fh:
            def read_input(a: int, b: int) -> np.ndarray:
                fh.seek(a)
                x = fh.read(b - a, dtype="float32", always_2d=True)
                if len(x) != b - a:
                    raise SepbenchError(f"{src}: file ends early ({a + len(x)} of {n} frames readable)")
                finite = np.isfinite(x).all(axis=1)
                if not finite.all():  # checked here, or the model would be blamed for its output
                    raise SepbenchError(f"{src}: holds non-finite samples (NaN or infinity) from frame "
                                        f"{a + int(np.argmin(finite))}; not separated")
                return (x.mean(axis=1, keepdims=True) if downmix else x).T  # [C, frames]

            def on_chunks():
                blocks = iter_separate(model, lambda lo, hi: to_model(read_input, n, lo, hi), m,
                                       chunk, context, fade, device)
                while True:
                    try:
                        start, est = next(blocks)
                    except StopIteration:
                        return
                    except (SepbenchError, OSError, sf.LibsndfileError):
                        raise
                    except Exception as exc:  # not the reader's (it raises the above): the model's
                        raise SepbenchError(f"{src}: the model failed on this input ({m} samples at {rate} Hz): "
                                            f"{_describe(exc)}") from None
                    progress.chunk()
                    yield start, est.reshape(out_ch * 2, -1)  # rows: ch0 voice, ch0 noise, ch1 voice, ...

            peak = 0.0
            for _, block in resample_stream(on_chunks(), to_input, m, n):
                if not np.isfinite(block).all():
                    raise SepbenchError(f"{src}: the model produced non-finite samples")
                peak = max(peak, float(np.abs(block).max(initial=0.0)))
                for k, tmp in enumerate(temps):
                    tmp.write(np.ascontiguousarray(block[k::2].T, dtype="<f4").tobytes())  # frames x channels
        gain = PEAK_LIMIT / peak if peak > PEAK_LIMIT else 1.0
        # Voice and noise replace the old pair as one: a full disk never leaves a mixed pair.
        with atomic_files(dict(enumerate(outs))) as staged:
            for k, tmp in enumerate(temps):
                tmp.close()
                _convert(Path(tmp.name), staged[k], gain, sr, out_ch, info.format, info.subtype)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise SepbenchError(f"{src}: {_describe(exc)}") from None
    finally:
        for tmp in temps:
            tmp.close()
            if os.path.exists(tmp.name):
                os.unlink(tmp.name)
    return n / sr, gain


def _convert(raw: Path, dst: Path, gain: float, sr: int, channels: int, fmt: str, subtype: str) -> None:
    """Raw float32 frames -> the input's format and subtype, block by block, into `dst`."""
    with open(raw, "rb") as fh, sound_writer(dst, samplerate=sr, channels=channels, format=fmt, subtype=subtype) as out:
        while True:
            block = np.fromfile(fh, dtype="<f4", count=_BLOCK * channels)
            if block.size == 0:
                break
            out.write(block.reshape(-1, channels) * np.float32(gain))
