"""`sepbench separate` and the chunked separation core it shares with the benchmark."""
from __future__ import annotations

import argparse
import os
import pickle
import shlex
import sys
import time
from pathlib import Path

import julius
import numpy as np
import pytest
import soundfile as sf
import torch

import recipes
from benchmark import separate_cmd
from benchmark.separate.core import StreamResampler, resample_stream, separate
from recipes.checkpoint import save_model
from recipes.errors import SepbenchError

RATE = 8000
# Per-frame cLN gives a finite receptive field: 2 blocks (dilation 1, 2) -> 3 frames each side.
TINY = dict(n_filters=16, bn_chan=8, hid_chan=16, skip_chan=8, n_blocks=2, n_repeats=1, norm_type="cLN")


def tiny_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return recipes.get("conv_tasnet").build(sample_rate=RATE, **TINY).eval()


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_model(path, tiny_model(), recipe="conv_tasnet", model_args={"sample_rate": RATE, **TINY}, sample_rate=RATE)
    return path


class _Passthrough(torch.nn.Module):
    """voice = a * mixture, noise = b * mixture: outputs whose right values are known exactly."""

    def __init__(self, voice_gain: float, noise_gain: float):
        super().__init__()
        self.gains = (voice_gain, noise_gain)

    def forward(self, x):
        return torch.stack([x * self.gains[0], x * self.gains[1]], dim=-2)


@pytest.fixture
def passthrough(tmp_path, monkeypatch):
    """Checkpoint factory for a test-only recipe, registered for this test only."""
    build = lambda sample_rate, voice_gain=1.0, noise_gain=0.0: _Passthrough(voice_gain, noise_gain)  # noqa: E731
    monkeypatch.setitem(recipes._REGISTRY, "test_passthrough",
                        recipes.Recipe("test_passthrough", "test only", build, Path(__file__).parent))

    def make(voice_gain=1.0, noise_gain=0.0, rate=RATE) -> Path:
        path = tmp_path / f"pass_{voice_gain}_{noise_gain}_{rate}.pt"
        save_model(path, _Passthrough(voice_gain, noise_gain), recipe="test_passthrough",
                   model_args={"sample_rate": rate, "voice_gain": voice_gain, "noise_gain": noise_gain}, sample_rate=rate)
        return path
    return make


def cli(argv) -> int:
    """What `sepbench separate ARGV` does (benchmark/cli.py turns SepbenchError into one line, exit 2)."""
    parser = argparse.ArgumentParser(prog="sepbench separate")
    separate_cmd.add_arguments(parser)
    try:
        return separate_cmd.run(parser.parse_args([str(a) for a in argv]))
    except SepbenchError as exc:
        print(f"sepbench separate: error: {exc}", file=sys.stderr)
        return 2


def tones(n: int, sr: int, channels: int = 1) -> np.ndarray:
    """Low tones (well inside an 8 kHz model's band), a different one per channel. [n, C]"""
    t = np.arange(n) / sr
    return np.stack([0.3 * np.sin(2 * np.pi * (300 + 200 * c) * t) + 0.1 * np.sin(2 * np.pi * 1000 * t)
                     for c in range(channels)], axis=1).astype(np.float32)


def test_chunked_equals_whole_for_finite_receptive_field():
    model = tiny_model()
    mix = np.random.RandomState(1).randn(RATE * 12).astype(np.float32) * 0.1
    whole = separate(model, mix)
    # Odd chunk and context: chunk starts are moved to the encoder's frame grid by iter_separate.
    chunked = separate(model, mix, chunk=RATE + 3, context=203, fade=100)
    assert chunked.shape == whole.shape == (2, len(mix))
    # Tolerance: float32 rounding, 1e-4 of the peak (measured ~1e-6 of it).
    assert np.abs(chunked - whole).max() <= 1e-4 * np.abs(whole).max()
    # Without context the chunk borders do show: the comparison above can fail.
    seams = separate(model, mix, chunk=RATE + 3, context=0, fade=0)
    assert np.abs(seams - whole).max() > 1e-2 * np.abs(whole).max()
    # Channels go through the model as a batch; each must come out as if separated alone.
    stereo = np.stack([mix, mix[::-1].copy()])
    both = separate(model, stereo, chunk=RATE + 3, context=203, fade=100)
    assert np.abs(both[0] - whole).max() <= 1e-4 * np.abs(whole).max()
    assert np.abs(both[1] - separate(model, stereo[1])).max() <= 1e-4 * np.abs(whole).max()


@pytest.mark.parametrize("old,new", [(44100, 8000), (16000, 8000), (8000, 44100)])
def test_stream_resampler_matches_whole_signal_julius(old, new):
    x = np.random.RandomState(2).randn(2, 30011).astype(np.float32)
    whole = julius.resample_frac(torch.from_numpy(x), old, new, full=True).numpy()
    rs = StreamResampler(old, new)
    n_out = rs.out_length(x.shape[-1])
    assert n_out == whole.shape[-1]
    cuts = [0, 1, 977, 5000, 5001, 20000, x.shape[-1]]
    blocks = ((a, x[..., a:b]) for a, b in zip(cuts, cuts[1:]))
    streamed = np.concatenate([b for _, b in resample_stream(blocks, rs, x.shape[-1], n_out)], axis=-1)
    np.testing.assert_allclose(streamed, whole, atol=1e-6)
    part = rs(lambda a, b: x[..., a:b], x.shape[-1], 123, 4567)
    np.testing.assert_allclose(part, whole[..., 123:4567], atol=1e-6)


@pytest.mark.parametrize("sr", [16000, 44100])
def test_sample_rate_round_trip_keeps_length_and_timing(tmp_path, passthrough, sr):
    n = int(sr * 3.37) + 1  # not a whole number of model samples
    sf.write(tmp_path / "in.wav", tones(n, sr), sr, subtype="FLOAT")
    summary = separate_cmd.separate_files(passthrough(0.75, 0.25), [tmp_path / "in.wav"], tmp_path / "out",
                                          chunk_seconds=1.0, context_seconds=0.1)
    assert summary["done"] == 1 and summary["failed"] == 0
    voice, vsr = sf.read(tmp_path / "out" / "in_voice.wav", dtype="float32")
    noise, _ = sf.read(tmp_path / "out" / "in_noise.wav", dtype="float32")
    assert vsr == sr and len(voice) == len(noise) == n
    # The tones survive 8 kHz unchanged: same timing, no seams (tolerance: resampler ripple;
    # the first and last 10 ms are left out, where the tones start and stop abruptly).
    ref, edge = tones(n, sr)[:, 0], sr // 100
    assert np.abs(voice - 0.75 * ref)[edge:-edge].max() < 5e-3
    assert np.abs(noise - 0.25 * ref)[edge:-edge].max() < 5e-3


def test_stereo_in_stereo_out_and_downmix(tmp_path, passthrough):
    sr = 16000
    sf.write(tmp_path / "st.wav", tones(sr * 2, sr, channels=2), sr, subtype="FLOAT")
    ckpt = passthrough()
    assert cli(["--checkpoint", ckpt, tmp_path / "st.wav", "--out", tmp_path / "out"]) == 0
    voice, _ = sf.read(tmp_path / "out" / "st_voice.wav", dtype="float32")
    assert voice.shape == (sr * 2, 2)
    ref = tones(sr * 2, sr, channels=2)
    assert np.abs(voice - ref)[160:-160].max() < 5e-3  # each channel stays in its place
    assert cli(["--checkpoint", ckpt, tmp_path / "st.wav", "--out", tmp_path / "mono", "--downmix"]) == 0
    mono, _ = sf.read(tmp_path / "mono" / "st_voice.wav", dtype="float32")
    assert mono.ndim == 1 and np.abs(mono - ref.mean(axis=1))[160:-160].max() < 5e-3


@pytest.mark.parametrize("name,subtype", [("a.wav", "PCM_16"), ("b.flac", "PCM_16"), ("c.flac", "PCM_24"),
                                          ("d.wav", "FLOAT")])
def test_output_keeps_format_and_subtype(tmp_path, tiny_ckpt, name, subtype):
    sf.write(tmp_path / name, tones(RATE, RATE), RATE, subtype=subtype)
    assert cli(["--checkpoint", tiny_ckpt, tmp_path / name, "--out", tmp_path / "out"]) == 0
    stem, suffix = name.split(".")
    for part in ("voice", "noise"):
        info = sf.info(str(tmp_path / "out" / f"{stem}_{part}.{suffix}"))
        assert (info.format, info.subtype, info.frames) == (sf.info(str(tmp_path / name)).format, subtype, RATE)


def test_peak_safe_scaling_one_gain_for_both_stems(tmp_path, passthrough):
    sf.write(tmp_path / "loud.wav", tones(RATE, RATE), RATE, subtype="PCM_16")  # peak ~0.4
    assert cli(["--checkpoint", passthrough(4.0, 2.0), tmp_path / "loud.wav", "--out", tmp_path / "o"]) == 0
    voice, _ = sf.read(tmp_path / "o" / "loud_voice.wav")
    noise, _ = sf.read(tmp_path / "o" / "loud_noise.wav")
    assert abs(np.abs(voice).max() - separate_cmd.PEAK_LIMIT) < 1e-3  # scaled, not clipped
    big = np.abs(voice) > 0.1
    np.testing.assert_allclose(voice[big] / noise[big], 2.0, rtol=1e-3)  # one gain: ratio kept


def test_existing_outputs_kept_unless_overwrite(tmp_path, tiny_ckpt, passthrough, capsys):
    sf.write(tmp_path / "x.wav", tones(RATE, RATE), RATE)
    out = tmp_path / "out"
    assert cli(["--checkpoint", passthrough(1.0, 0.0), tmp_path / "x.wav", "--out", out]) == 0
    first = (out / "x_noise.wav").read_bytes()
    assert cli(["--checkpoint", tiny_ckpt, tmp_path / "x.wav", "--out", out]) == 0
    assert (out / "x_noise.wav").read_bytes() == first
    assert "kept existing" in capsys.readouterr().err
    assert cli(["--checkpoint", tiny_ckpt, tmp_path / "x.wav", "--out", out, "--overwrite"]) == 0
    assert (out / "x_noise.wav").read_bytes() != first


def test_bad_inputs_one_line_each_others_still_separated(tmp_path, tiny_ckpt, capsys):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    sf.write(folder / "good.wav", tones(RATE, RATE), RATE)
    sf.write(folder / "sub" / "also_good.flac", tones(RATE, RATE), RATE)
    (folder / "garbage.wav").write_bytes(b"RIFF\x00\x00not audio at all")
    sf.write(folder / "empty.wav", np.zeros(0, dtype=np.float32), RATE)
    code = cli(["--checkpoint", tiny_ckpt, folder, tmp_path / "missing.wav", "--out", tmp_path / "out"])
    err = capsys.readouterr().err
    assert code != 0
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 3 and "Traceback" not in err
    for name in ("garbage.wav", "empty.wav", "missing.wav"):
        assert sum(name in line for line in errors) == 1
    assert (tmp_path / "out" / "good_voice.wav").is_file()
    assert (tmp_path / "out" / "sub" / "also_good_noise.flac").is_file()  # sub-path mirrored


def _tampered(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _reshaped(path: Path, tiny_ckpt: Path) -> None:
    payload = torch.load(tiny_ckpt, weights_only=True)
    payload["model_args"]["n_filters"] = 32  # weights no longer fit the model it describes
    torch.save(payload, path)


@pytest.mark.parametrize("kind", ["missing", "foreign", "truncated", "reshaped", "rate 0", "rate -8000", "rate True"])
def test_bad_checkpoint_one_line_nothing_written(tmp_path, tiny_ckpt, capsys, kind):
    ckpt = tmp_path / "model.pt"
    if kind.startswith("rate"):  # a rate of 0 used to divide by zero deep inside separation
        payload = torch.load(tiny_ckpt, weights_only=True)
        payload["sample_rate"] = {"0": 0, "-8000": -8000, "True": True}[kind.split()[1]]
        torch.save(payload, ckpt)
    elif kind == "foreign":
        torch.save({"state_dict": {"w": torch.zeros(3)}, "epoch": 3}, ckpt)
    elif kind == "truncated":
        ckpt.write_bytes(tiny_ckpt.read_bytes())
        _tampered(ckpt)
    elif kind == "reshaped":
        _reshaped(ckpt, tiny_ckpt)
    sf.write(tmp_path / "x.wav", tones(RATE, RATE), RATE)
    assert cli(["--checkpoint", ckpt, tmp_path / "x.wav", "--out", tmp_path / "out"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(ckpt) in err[0]
    if kind.startswith("rate"):
        assert "sample rate" in err[0] and "not a positive number of Hz" in err[0]
    assert not (tmp_path / "out").exists()


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


def test_checkpoint_that_runs_code_on_load_is_refused_unrun(tmp_path, capsys):
    # The payload is live: unpickling it the unsafe way does run the command.
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(_Evil(control)))
    assert control.exists()
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "evil.pt"
    torch.save({"format": "sepbench-model", "format_version": 1, "recipe": "conv_tasnet", "x": _Evil(marker)}, ckpt)
    sf.write(tmp_path / "x.wav", tones(RATE, RATE), RATE)
    assert cli(["--checkpoint", ckpt, tmp_path / "x.wav", "--out", tmp_path / "out"]) == 2
    assert not marker.exists()
    assert "refused" in capsys.readouterr().err


def test_best_picks_top_trained_model_by_overall_voice_sisdri(tmp_path):
    board = tmp_path / "lb"
    board.mkdir()
    rows = [("a", "cpu", "trained", "all", "voice_sisdri", "5.0"), ("b", "cpu", "trained", "all", "voice_sisdri", "7.5"),
            ("oracle_mask", "-", "oracle", "all", "voice_sisdri", "20"), ("c", "cpu", "trained", "0dB", "voice_sisdri", "30"),
            ("d", "gpu", "trained", "all", "voice_sdr", "50"), ("e", "cpu", "trained", "all", "voice_sisdri", "nan")]
    lines = ["model,profile,kind,snr_bucket,metric,n,mean,median"] + [",".join(r[:5]) + f",10,{r[5]},1" for r in rows]
    (board / "summary.csv").write_text("\n".join(lines) + "\n")
    assert separate_cmd.best_checkpoint(board, tmp_path / "runs") == tmp_path / "runs" / "b" / "cpu" / "best.pt"
    with pytest.raises(SepbenchError, match="not found"):
        separate_cmd.best_checkpoint(tmp_path / "nowhere", tmp_path / "runs")
    # With several seeds of the best model, the seed that scored best on the clips.
    (board / "results.csv").write_text("model,profile,kind,seed,clip_id,voice_sisdri\n"
                                       "b,cpu,trained,0,0001,7.0\nb,cpu,trained,2,0001,8.0\n"
                                       "a,cpu,trained,5,0001,99.0\nmixture,-,reference,,0001,0.0\n")
    assert separate_cmd.best_checkpoint(board, tmp_path / "runs") == tmp_path / "runs" / "b" / "cpu-seed2" / "best.pt"
    (board / "summary.csv").write_text("clip,score\nx,1\n")
    with pytest.raises(SepbenchError, match=r"summary.csv is damaged \(no column model, profile, kind, snr_bucket"):
        separate_cmd.best_checkpoint(board, tmp_path / "runs")


def test_chunked_file_equals_whole_file_through_resampling(tmp_path, tiny_ckpt):
    sr = 16000
    sf.write(tmp_path / "long.wav", np.random.RandomState(3).randn(sr * 9, 1).astype(np.float32) * 0.1, sr,
             subtype="FLOAT")
    for name, chunk in (("whole", "0"), ("chunked", "1.3")):
        assert cli(["--checkpoint", tiny_ckpt, tmp_path / "long.wav", "--out", tmp_path / name,
                    "--chunk-seconds", chunk, "--context-seconds", "0.05"]) == 0
    whole, _ = sf.read(tmp_path / "whole" / "long_voice.wav")
    chunked, _ = sf.read(tmp_path / "chunked" / "long_voice.wav")
    assert np.abs(chunked - whole).max() <= 1e-4 * np.abs(whole).max()


# ---- one bad input is one line; the others are separated ----

def _errors(capsys) -> tuple[list[str], str]:
    printed = capsys.readouterr()
    assert "Traceback" not in printed.err
    return [line for line in printed.err.splitlines() if "error:" in line], printed.out


def test_same_file_name_in_two_folders_is_refused_for_the_second(tmp_path, passthrough, capsys):
    for folder, gain in (("a", 0.5), ("b", 0.25)):
        (tmp_path / folder).mkdir()
        sf.write(tmp_path / folder / "x.wav", gain * tones(RATE, RATE), RATE, subtype="FLOAT")
    sf.write(tmp_path / "z.wav", tones(RATE, RATE), RATE)
    out = tmp_path / "out"
    rc = cli(["--checkpoint", passthrough(), tmp_path / "a" / "x.wav", tmp_path / "b" / "x.wav", tmp_path / "z.wav",
              "--out", out])
    errors, printed = _errors(capsys)
    assert rc == 1 and len(errors) == 1  # used to be a KeyError that also skipped z.wav
    assert f"{tmp_path / 'b' / 'x.wav'}: not separated" in errors[0] and str(tmp_path / "a" / "x.wav") in errors[0]
    assert "2 done, 1 failed" in printed
    voice, _ = sf.read(out / "x_voice.wav", dtype="float32")
    assert np.abs(voice - 0.5 * tones(RATE, RATE)[:, 0]).max() < 1e-6  # a/x.wav's, not replaced
    assert (out / "z_voice.wav").is_file()


def test_an_output_folder_that_cannot_be_written_is_one_line_per_file(tmp_path, passthrough, capsys, monkeypatch):
    sf.write(tmp_path / "x.wav", tones(RATE, RATE), RATE)
    sf.write(tmp_path / "y.wav", tones(RATE, RATE), RATE)
    blocker = tmp_path / "out"
    blocker.write_text("a file where the output folder should be")
    rc = cli(["--checkpoint", passthrough(), tmp_path / "x.wav", tmp_path / "y.wav", "--out", blocker])
    errors, printed = _errors(capsys)
    assert rc == 1 and len(errors) == 2 and all(f"into {blocker} (not a folder)" in e for e in errors)
    assert "nothing was separated" in printed and "nan" not in printed
    assert blocker.read_text() == "a file where the output folder should be"
    # Permission denied (simulated: the tests may run as root, who may write anywhere).
    real = separate_cmd.tempfile.NamedTemporaryFile

    def no_write_for_x(*args, **kwargs):
        if kwargs["prefix"].startswith(".x_"):
            raise PermissionError(13, "Permission denied", kwargs["dir"])
        return real(*args, **kwargs)

    monkeypatch.setattr(separate_cmd.tempfile, "NamedTemporaryFile", no_write_for_x)
    rc = cli(["--checkpoint", passthrough(), tmp_path / "x.wav", tmp_path / "y.wav", "--out", tmp_path / "o2"])
    errors, _ = _errors(capsys)
    assert rc == 1 and len(errors) == 1 and "x.wav: cannot write its outputs into" in errors[0]
    assert "(Permission denied)" in errors[0]
    assert (tmp_path / "o2" / "y_voice.wav").is_file()
    assert not [p for p in (tmp_path / "o2").iterdir() if p.name.startswith(".")]  # no temp left behind


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_output_folder_is_one_line(tmp_path, passthrough, capsys):
    sf.write(tmp_path / "x.wav", tones(RATE, RATE), RATE)
    (tmp_path / "ro").mkdir(mode=0o500)
    try:
        rc = cli(["--checkpoint", passthrough(), tmp_path / "x.wav", "--out", tmp_path / "ro"])
    finally:
        (tmp_path / "ro").chmod(0o700)
    errors, _ = _errors(capsys)
    assert rc == 1 and len(errors) == 1 and "(Permission denied)" in errors[0]


def test_a_one_sample_input_is_separated_and_tiny_chunks_are_refused(tmp_path, tiny_ckpt, capsys):
    # conv_tasnet's 16-sample filterbank used to refuse it with raw PyTorch text.
    sf.write(tmp_path / "one.wav", np.array([0.1], dtype=np.float32), RATE, subtype="FLOAT")
    assert cli(["--checkpoint", tiny_ckpt, tmp_path / "one.wav", "--out", tmp_path / "out"]) == 0
    assert sf.info(str(tmp_path / "out" / "one_voice.wav")).frames == 1
    capsys.readouterr()
    assert cli(["--checkpoint", tiny_ckpt, tmp_path / "one.wav", "--out", tmp_path / "o2", "--chunk-seconds",
                "0.001"]) == 2
    err = capsys.readouterr().err
    assert err == "sepbench separate: error: --chunk-seconds 0.001: must be 0 (whole files) or at least 0.1\n"
    assert not (tmp_path / "o2").exists()


def test_non_finite_input_is_blamed_on_the_file_not_the_model(tmp_path, tiny_ckpt, capsys):
    bad = tones(RATE * 2, RATE)
    bad[RATE + 5] = np.nan
    sf.write(tmp_path / "nan.wav", bad, RATE, subtype="FLOAT")
    sf.write(tmp_path / "good.wav", tones(RATE, RATE), RATE)
    rc = cli(["--checkpoint", tiny_ckpt, tmp_path / "nan.wav", tmp_path / "good.wav", "--out", tmp_path / "out",
              "--chunk-seconds", "0.5"])
    errors, _ = _errors(capsys)
    assert rc == 1 and len(errors) == 1
    assert f"nan.wav: holds non-finite samples (NaN or infinity) from frame {RATE + 5}" in errors[0]
    assert "model" not in errors[0]
    assert (tmp_path / "out" / "good_voice.wav").is_file() and not (tmp_path / "out" / "nan_voice.wav").exists()


def test_a_failing_model_is_one_line_and_the_next_file_is_separated(tmp_path, passthrough, capsys, monkeypatch):
    sf.write(tmp_path / "a.wav", tones(RATE, RATE), RATE)
    sf.write(tmp_path / "b.wav", tones(RATE // 2, RATE), RATE)

    def fail_on_long_inputs(self, x):
        if x.shape[-1] == RATE:
            raise ValueError("simulated\nsecond line")
        return torch.stack([x, 0 * x], dim=-2)

    monkeypatch.setattr(_Passthrough, "forward", fail_on_long_inputs)
    rc = cli(["--checkpoint", passthrough(), tmp_path / "a.wav", tmp_path / "b.wav", "--out", tmp_path / "out"])
    errors, _ = _errors(capsys)
    assert rc == 1 and len(errors) == 1
    assert f"a.wav: the model failed on this input ({RATE} samples at {RATE} Hz): ValueError: second line" in errors[0]
    assert (tmp_path / "out" / "b_voice.wav").is_file()


def test_stale_temp_files_in_the_output_folder_are_removed(tmp_path, passthrough, capsys):
    out = tmp_path / "out"
    out.mkdir()
    stale, young = out / ".x_voice.wav.abcdefgh.f32", out / ".y_voice.wav.abcdefgh.f32"
    for path, age in ((stale, 7200), (young, 60)):  # an older sepbench's; only the old one is stale
        path.write_bytes(b"\0" * 64)
        os.utime(path, (time.time() - age, time.time() - age))
    sf.write(tmp_path / "x.wav", tones(RATE, RATE), RATE)
    assert cli(["--checkpoint", passthrough(), tmp_path / "x.wav", "--out", out]) == 0
    assert not stale.exists() and young.exists()
    assert f"removed {stale}" in capsys.readouterr().err


def test_best_refuses_names_that_are_not_folder_names(tmp_path):
    board = tmp_path / "lb"
    board.mkdir()
    (board / "summary.csv").write_text("model,profile,kind,snr_bucket,metric,n,mean\n"
                                       "../../elsewhere,cpu,trained,all,voice_sisdri,10,9.0\n")
    with pytest.raises(SepbenchError, match=r"the best model name '\.\./\.\./elsewhere' is not a run folder name"):
        separate_cmd.best_checkpoint(board, tmp_path / "runs")
