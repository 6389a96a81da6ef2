"""The listening page, built from a tiny run: 4 generated clips (2 SNR labels), an untrained
lstm_mask checkpoint in a normal run folder and one in a run folder named like an XSS payload,
whose estimates write_examples keeps as `sepbench evaluate` does (2 clips per label).
Checked as files (escaping, relative links, clip choice, levels, determinism, atomic swap) and in
Debian's headless chromium, over http and file://: every player loads its audio, every image
decodes, no request fails, no script runs.

Without chromium + chromedriver the browser tests FAIL (CI installs them: .ci/run); set
SEPBENCH_ALLOW_NO_BROWSER=1 to skip them instead on a machine that lacks them.
"""
from __future__ import annotations

import http.server
import math
import os
import re
import shutil
import threading
import time
from functools import partial
from pathlib import Path
from urllib.parse import quote

import markupsafe
import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from benchmark.cli import main
from benchmark.data.loudness import match_loudness
from benchmark.report import listen, render
from benchmark.scoring import aggregate, examples
from recipes.files import recover_folder

SR = 8000
EVIL = "<script>alert(1)</script>"
EVIL_PROFILE = '"><img src=x onerror=alert(2)>'
# clip id -> (SNR label, input voice SI-SDR): the median pick is 0001 (-3) and 0004 (3), by value
CLIPS = {"0001": (-3, -3.5), "0002": (-3, -2.0), "0003": (3, 3.5), "0004": (3, 2.5)}
MODELS = [("mixture", "-", "reference", 0.0), ("oracle_irm", "-", "oracle", 12.0), ("oracle_ibm", "-", "oracle", 11.0),
          ("lstm_mask", "smoke", "trained", 2.0), (EVIL, EVIL_PROFILE, "trained", 5.0)]
# Ten more trained models, ranked below lstm_mask, for a page as wide as a real one: their rows are
# lstm_mask's checkpoint under other names (its estimates are kept under each name).
COPIES = ["conv_tasnet", "spec_unet", "dcunet", "dprnn", "dccrnet", "wave_unet", "lstm_tasnet", "deep_clustering",
          "sudormrf", "gtcrn"]
MODELS += [(name, "smoke", "trained", 1.9 - k / 10) for k, name in enumerate(COPIES)]
N_COLUMNS = 2 + len(COPIES) + 1  # trained models, then the oracle
# Columns in leaderboard order: the evil name (m01), lstm_mask (m02), the copies, oracle_irm last.
LABELS = [f"{EVIL}/{EVIL_PROFILE}", "lstm_mask/smoke", *[f"{c}/smoke" for c in COPIES], "oracle_irm"]
SAFE_NAME = re.compile(r"^(\d\d_(mix|voice|noise|m\d\d_(voice|noise))\.(wav|png)|si_sdri_by_snr\.png)$")


def _write_data(root: Path) -> Path:
    rng = np.random.default_rng(0)
    t = np.arange(SR) / SR
    for i, (cid, (label, _)) in enumerate(CLIPS.items()):
        voice = 0.3 * (1 + np.sin(2 * np.pi * 3 * t)) / 2 * sum(np.sin(2 * np.pi * k * (150 + 20 * i) * t) / k
                                                                   for k in (1, 2, 3))
        noise = rng.standard_normal(SR) * np.sqrt(np.mean(voice ** 2)) * 10 ** (-label / 20)
        folder = root / "test" / cid
        folder.mkdir(parents=True)
        # Stems stored near full scale (data sets may store them at other gains than in the
        # mixture): estimates matched to their loudness then peak higher, and the row gain acts.
        for name, x in ((f"mix_snr_{label}", voice + noise), ("voice", voice), ("noise", noise)):
            sf.write(str(folder / f"{name}.wav"), 0.98 * x / np.max(np.abs(x)), SR, subtype="PCM_16")
    return root / "test"


def _write_run(root: Path, test_dir: Path) -> tuple[Path, Path]:
    import torch

    import recipes
    from benchmark.scoring.examples import Shown, oracle
    from benchmark.scoring.write_examples import write_examples
    from recipes.checkpoint import save_model
    from recipes.files import file_hash
    from recipes.folder import load_split

    runs = root / "runs"
    args = {"sample_rate": SR, "win_ms": 32.0, "hop_ms": 8.0, "hidden": 8, "n_layers": 1, "dropout": 0.3}
    rows, shown = [], []
    for seed, (model, profile, kind, level) in enumerate(MODELS):
        ckpt = ""
        if model in COPIES:
            ckpt = "runs/lstm_mask/smoke/best.pt"
        elif kind == "trained":
            torch.manual_seed(seed)
            save_model(runs / model / profile / "best.pt", recipes.get("lstm_mask").build(**args), "lstm_mask", args, SR)
            ckpt = f"runs/{model}/{profile}/best.pt"
        digest = file_hash(root / ckpt) if ckpt else ""
        if kind == "trained":
            shown.append(Shown(model, profile, kind, str(root / ckpt), digest))
        for j, (cid, (label, base)) in enumerate(CLIPS.items()):
            gain = level + j / 4
            rows.append({"model": model, "profile": profile, "kind": kind, "clip_id": cid, "snr_label": float(label),
                         "voice_sisdr": base + gain, "voice_sisdri": gain, "noise_sisdr": -base + gain,
                         "noise_sisdri": gain, "input_voice_sisdr": base, "input_noise_sisdr": -base,
                         "checkpoint": ckpt, "checkpoint_hash": digest, "failure_reason": ""})
    pd.DataFrame(rows).to_csv(root / "results.csv", index=False)
    results = aggregate.read_results(root / "results.csv")
    write_examples(root, results, load_split(test_dir), [*shown, oracle()], 2, "cpu", {}, log=lambda m: None)
    # What evaluate writes beside results.csv, and the page shows on top.
    summary = aggregate.summarize(aggregate.read_results(root / "results.csv"))
    aggregate.write_csv(summary, root / "summary.csv")
    render.plot(summary, root / render.PLOT_NAME)
    return runs, root / "results.csv"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("listen")
    test_dir = _write_data(root / "data")
    runs, results = _write_run(root, test_dir)
    return {"test_dir": test_dir, "runs": runs, "results": results, "root": root}


def _build(run, out, clips_per_bucket=1, **kw) -> Path:
    return listen.build_listening_page(run["results"], run["test_dir"], out, clips_per_bucket=clips_per_bucket,
                                       log=lambda m: None, **kw)


@pytest.fixture(scope="module")
def page(run) -> Path:
    return _build(run, run["root"] / "leaderboard")


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_page_content_escaping_and_links(page):
    text = page.read_text(encoding="utf-8")
    # Jinja2's autoescape (markupsafe) writes " as &#34;.
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "&#34;&gt;&lt;img src=x onerror=alert(2)&gt;" in text
    assert "<img src=x" not in text and EVIL not in text and "alert" not in _script_of(text)
    # The one script is the template's own, and the policy allows it by hash and nothing else.
    assert text.lower().count("<script") == 1
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', text).group(1)
    script_src = re.search(r"script-src ([^;]*)", csp).group(1)
    assert re.fullmatch(r"'sha256-[A-Za-z0-9+/]+=*'", script_src), csp
    # Columns in leaderboard order (mean voice SI-SDRi), then the oracle; other references absent.
    header = text[text.index('<table id="clips">'):text.index("</thead>", text.index('<table id="clips">'))]
    positions = [header.index(str(markupsafe.escape(label))) for label in LABELS]
    assert positions == sorted(positions)
    clips_table = text[text.index('<table id="clips">'):]
    assert "oracle_ibm" not in clips_table
    # One row per SNR label: the clip whose input voice SI-SDR is the (lower) median.
    assert re.findall(r"clip (\d{4})<br>SNR label (-?\d+) dB", text) == [("0001", "-3"), ("0004", "3")]
    assert "SI-SDR 1.5 dB, SI-SDRi +5.0 dB" in text  # the evil model's voice score on clip 0001
    links = re.findall(r'(?:src|href)="([^"]*)"', text)
    assert len([x for x in links if x.startswith("audio/")]) == 2 * (3 + 2 * N_COLUMNS)
    assert "img/si_sdri_by_snr.png" in links  # the leaderboard's plot, copied into the folder
    for link in links:
        assert link == "data:," or re.fullmatch(r"(audio|img)/[^/]+", link), link
        assert link == "data:," or (page.parent / link).is_file(), link
    for p in page.parent.rglob("*"):
        assert p.is_dir() or p.name in ("index.html", listen.STAMP) or SAFE_NAME.match(p.name), p
        assert p.stat().st_mode & 0o004, f"{p} is not world-readable: a web server could not serve it"


def test_page_leaderboard_from_summary(page):
    """The ranking on top is summary.csv's: trained models by mean voice SI-SDRi with the CI's
    half-width, as LEADERBOARD.md writes it, then the references."""
    text = page.read_text(encoding="utf-8")
    board = text[text.index('<div class="lb">'):text.index("</table>", text.index('<div class="lb">'))]
    names = re.findall(r'<td>(\d*)</td><td class="t">([^<]*)</td>', board)
    assert [n for _, n in names][:3] == [str(markupsafe.escape(EVIL)), "lstm_mask", COPIES[0]]
    assert [r for r, _ in names] == [str(i) for i in range(1, 13)] + [""] * 3
    assert {n for r, n in names if not r} == {"oracle_irm", "oracle_ibm", "mixture"}
    # The evil model's voice SI-SDRi on its 4 clips: 5, 5.25, 5.5, 5.75 -> 5.375 ± t(3) * s / 2.
    assert "<td>5.38 ± 0.51</td>" in board


def _clips_table(page: Path) -> str:
    """The players' table and what follows it: the ranking above it lists every model scored."""
    text = page.read_text(encoding="utf-8")
    return text[text.index('<table id="clips">'):]


def _script_of(text: str) -> str:
    return text[text.index("<script>"):text.index("</script>")]


def test_levels_loudness_matched_and_unclipped(page, run):
    import pyloudnorm

    meter = pyloudnorm.Meter(SR)
    audio = page.parent / "audio"
    for wav in sorted(audio.glob("*.wav")):
        x, sr = sf.read(str(wav))
        assert sr == SR and sf.info(str(wav)).subtype == "PCM_16"
        assert 0 < np.max(np.abs(x)) < 1, wav.name
    for row in ("01", "02"):
        for source in ("voice", "noise"):
            ref = meter.integrated_loudness(sf.read(str(audio / f"{row}_{source}.wav"))[0])
            for est in sorted(audio.glob(f"{row}_m*_{source}.wav")):
                assert abs(meter.integrated_loudness(sf.read(str(est))[0]) - ref) < 1.0, est.name
    # The true stem is written times the row's stated gain, nothing else.
    gain = float(re.findall(r"gain (-?\d+\.\d) dB", page.read_text(encoding="utf-8"))[0])
    written = sf.read(str(audio / "01_voice.wav"))[0]
    original = sf.read(str(run["test_dir"] / "0001" / "voice.wav"))[0]
    assert abs(20 * np.log10(np.std(written) / np.std(original)) - gain) < 0.06


def test_players_hold_each_columns_own_estimate(page, run):
    """Scale-free check that column j plays model j's separation of the row's clip (so the SI-SDR
    printed beside it belongs to what is heard): written files vs a direct separation."""
    from benchmark.scoring import references
    from benchmark.scoring.metrics import si_sdr
    from benchmark.separate.core import separate
    from recipes.audio import read_audio
    from recipes.checkpoint import load_model

    clip = run["test_dir"] / "0001"
    mix = read_audio(clip / "mix_snr_-3.wav")[0]
    sources = np.stack([read_audio(clip / f"{s}.wav")[0] for s in ("voice", "noise")])
    evil, lstm = (separate(load_model(run["runs"] / m / p / "best.pt")[0], mix) for m, p in ((EVIL, EVIL_PROFILE),
                                                                                               ("lstm_mask", "smoke")))
    # A copy plays its checkpoint's (lstm_mask's) separation; the oracle is the last column.
    direct = {1: evil, 2: lstm, 3: lstm, N_COLUMNS: references.estimate("oracle_irm", mix, sources, SR)}
    audio = page.parent / "audio"
    for j, est in direct.items():
        for s, source in enumerate(("voice", "noise")):
            heard = si_sdr(sf.read(str(audio / f"01_m{j:02d}_{source}.wav"))[0], sf.read(str(audio / f"01_{source}.wav"))[0])
            assert abs(heard - si_sdr(est[s], sources[s])) < 0.1, (j, source)


def test_match_loudness_short_and_silent():
    t = np.arange(int(0.2 * SR)) / SR  # shorter than the 0.4 s gating block: RMS matching
    ref, est = 0.5 * np.sin(2 * np.pi * 300 * t), 0.05 * np.sin(2 * np.pi * 700 * t)
    out = match_loudness(est, ref, SR)
    assert math.isclose(np.sqrt(np.mean(out ** 2)), np.sqrt(np.mean(ref ** 2)), rel_tol=1e-9)
    assert not np.any(match_loudness(np.zeros(SR), np.ones(SR) * 0.1, SR))


def test_deterministic_atomic_and_filtered(run, tmp_path, monkeypatch):
    out = tmp_path / "lb"
    first = _files(_build(run, out).parent)
    assert _files(_build(run, out, force=True).parent) == first  # same bytes: html, audio and images
    assert sorted(p.name for p in out.iterdir()) == [".listen.lock", "listen"]  # no temporary folder left

    def broken(*args, **kw):
        raise RuntimeError("interrupted")
    monkeypatch.setattr(listen, "_png", broken)
    with pytest.raises(RuntimeError):
        _build(run, out, force=True)
    assert _files(out / "listen") == first and sorted(p.name for p in out.iterdir()) == [".listen.lock", "listen"]
    monkeypatch.undo()

    # A crash between the swap's two renames: the old page is put back before the next build.
    (out / ".listen.old-y").mkdir()
    os.replace(out / "listen", out / ".listen.old-y" / "listen")
    recover_folder(out / "listen")
    assert _files(out / "listen") == first and sorted(p.name for p in out.iterdir()) == [".listen.lock", "listen"]

    text = _clips_table(_build(run, out, models=["oracle_irm"], clips_per_bucket=2))
    assert "lstm_mask" not in text and "alert" not in text and text.count("<audio") == 4 * (3 + 2)


def _mtimes(folder: Path) -> dict[str, int]:
    """Of everything but the lock file, which each build takes (its PID is written into it)."""
    return {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns for p in [folder, *folder.rglob("*")]
            if p.name != ".listen.lock"}


def test_rebuild_only_when_inputs_change(run, tmp_path):
    """A second build from the same inputs writes nothing (a no-op ./run_all.sh re-run stays fast);
    a changed results.csv, summary.csv, plot, kept estimate or audio file rebuilds the page."""
    board = tmp_path / "board"
    board.mkdir()
    for name in ("results.csv", "summary.csv", render.PLOT_NAME):
        shutil.copy2(run["results"].parent / name, board / name)
    shutil.copytree(run["results"].parent / "cache", board / "cache")
    data = Path(shutil.copytree(run["test_dir"], tmp_path / "test"))
    out, said = tmp_path / "lb", []

    def build(**kw):
        said.clear()
        started = time.perf_counter()
        page = listen.build_listening_page(board / "results.csv", data, out, log=said.append, **kw)
        return page, time.perf_counter() - started

    page, full = build()
    before, html = _mtimes(out), page.read_text(encoding="utf-8")
    _, noop = build()
    assert said == [f"listening page up to date: {page}"]
    assert _mtimes(out) == before, "an up-to-date page was rewritten"
    print(f"listening page: full build {full:.2f} s, no-op {noop:.3f} s")

    results = pd.read_csv(board / "results.csv", dtype={"clip_id": str}, keep_default_na=False)
    results.loc[(results["model"] == "lstm_mask") & (results["clip_id"] == "0001"), "voice_sisdr"] = 9.7
    results.to_csv(board / "results.csv", index=False)
    build()
    assert not any("up to date" in m for m in said) and _mtimes(out) != before
    assert "SI-SDR 9.7 dB" in page.read_text(encoding="utf-8") and page.read_text(encoding="utf-8") != html

    # A touched audio file of a clip on the page (same size, new modification time) rebuilds too.
    before = _mtimes(out)
    voice = data / "0004" / "voice.wav"
    os.utime(voice, ns=(voice.stat().st_atime_ns, voice.stat().st_mtime_ns + 10**9))
    build()
    assert not any("up to date" in m for m in said) and _mtimes(out) != before
    build()
    assert said == [f"listening page up to date: {page}"]
    before = _mtimes(out)
    build(force=True)
    assert _mtimes(out) != before


def test_listen_command(run, tmp_path, capsys):
    """`sepbench listen` on a scored leaderboard folder and a data set root holding test/."""
    out = tmp_path / "lb"
    out.mkdir()
    shutil.copy(run["results"], out / "results.csv")
    shutil.copytree(run["results"].parent / "cache", out / "cache")
    argv = ["listen", "--data", str(run["test_dir"].parent), "--out", str(out), "--clips-per-bucket", "1",
            "--models", "lstm_mask, oracle_irm"]
    assert main(argv) == 0
    text = _clips_table(out / "listen" / "index.html")
    assert "lstm_mask/smoke" in text and "oracle_irm" in text and "alert" not in text
    assert text.count("<audio") == 2 * (3 + 2 * 2)  # one clip per SNR label, two models
    # Beside this results.csv there is no plot (none on the page) and no summary.csv (summarised).
    full = (out / "listen" / "index.html").read_text(encoding="utf-8")
    assert "img/si_sdri_by_snr.png" not in full and "<td>2.38 ± 0.51</td>" in full
    capsys.readouterr()
    assert main(argv) == 0 and "listening page up to date" in capsys.readouterr().err
    assert main([*argv, "--force"]) == 0 and "up to date" not in capsys.readouterr().err


def test_listen_command_without_results(run, tmp_path, capsys):
    out = tmp_path / "empty"
    assert main(["listen", "--data", str(run["test_dir"]), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(out / "results.csv") in err, err
    assert not out.exists()


def _board(run, tmp_path) -> Path:
    """A copy of the fixture's leaderboard folder (results, summary, plot, kept estimates)."""
    board = tmp_path / "board"
    board.mkdir()
    for name in ("results.csv", "summary.csv", render.PLOT_NAME):
        shutil.copy2(run["results"].parent / name, board / name)
    shutil.copytree(run["results"].parent / "cache", board / "cache")
    return board


def _refused(argv, capsys) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_listen_refuses_what_the_kept_estimates_cannot_show(run, tmp_path, capsys):
    """Each refusal is one line, and no page is written: an unknown model name, more clips than
    evaluate kept, a results.csv that lost a shown row, estimates of another checkpoint, no
    estimates at all. None of them is a page quietly missing a column or a row."""
    board = _board(run, tmp_path)
    argv = ["listen", "--data", str(run["test_dir"]), "--out", str(board)]
    assert "--models nosuch" in _refused([*argv, "--models", "lstm_mask,nosuch"], capsys)
    err = _refused([*argv, "--clips-per-bucket", "3"], capsys)
    assert "2 clips per SNR label" in err and "--listen-clips 3" in err
    assert "--clips-per-bucket 0" in _refused([*argv, "--clips-per-bucket", "0"], capsys)
    assert not (board / "listen").exists()

    results = pd.read_csv(board / "results.csv", dtype={"clip_id": str}, keep_default_na=False)
    truncated = results[~((results["model"] == "lstm_mask") & (results["clip_id"] == "0004"))]
    truncated.to_csv(board / "results.csv", index=False)
    err = _refused(argv, capsys)
    assert "no row of lstm_mask/smoke for clip 0004" in err
    retrained = results.copy()
    retrained.loc[retrained["model"] == "lstm_mask", "checkpoint_hash"] = "0" * 64
    retrained.to_csv(board / "results.csv", index=False)
    assert "another checkpoint" in _refused(argv, capsys)
    results.to_csv(board / "results.csv", index=False)
    assert main(argv) == 0 and (board / "listen" / "index.html").is_file()

    shutil.rmtree(board / "cache")
    assert "no estimates for the listening page" in _refused(argv, capsys)


def test_page_plays_the_estimates_evaluate_kept(run, tmp_path):
    """An edited kept estimate is what the page plays, and touching one rebuilds the page: the
    page reads the files; it does not separate again."""
    board = _board(run, tmp_path)
    where = board / "cache" / "listen"
    index = examples.read_index(where)
    entry = next(e for e in index["models"] if e["label"] == "lstm_mask/smoke")
    path = examples.estimate_path(where, entry, "0001", "voice")
    voice = sf.read(str(run["test_dir"] / "0001" / "voice.wav"))[0]
    sf.write(str(path), voice.astype(np.float32), SR, subtype="FLOAT")  # a perfect estimate
    page = listen.build_listening_page(board / "results.csv", run["test_dir"], tmp_path / "lb", clips_per_bucket=1,
                                       log=lambda m: None)
    column = LABELS.index("lstm_mask/smoke") + 1
    heard = sf.read(str(page.parent / "audio" / f"01_m{column:02d}_voice.wav"))[0]
    true = sf.read(str(page.parent / "audio" / "01_voice.wav"))[0]
    assert np.corrcoef(heard, true)[0, 1] > 0.999


def test_report_layer_loads_no_model():
    """benchmark.report imports neither torch nor the separation code: the page only reads files."""
    import subprocess
    import sys

    code = ("import sys, benchmark.report.listen, benchmark.listen_cmd; "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith(('torch.', 'benchmark.separate', "
            "'recipes.checkpoint'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parent.parent)
    assert out.stdout.strip() == "[]", out.stdout


# ---- in a real browser ----
_AUDIO_JS = """return Array.from(document.querySelectorAll('audio'), a => ({src: a.getAttribute('src'),
  ready: a.readyState, duration: isFinite(a.duration) ? a.duration : -1, error: a.error ? a.error.code : null}));"""
_IMG_JS = """return Array.from(document.images, i => ({src: i.getAttribute('src'), complete: i.complete,
  width: i.naturalWidth}));"""
_RESOURCES_JS = """return performance.getEntriesByType('resource').map(e => ({name: e.name,
  status: e.responseStatus === undefined ? null : e.responseStatus}));"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        webdriver = None
    chromium, driver_path = shutil.which("chromium") or "/usr/bin/chromium", "/usr/bin/chromedriver"
    if webdriver is None or not (os.access(chromium, os.X_OK) and os.access(driver_path, os.X_OK)):
        reason = ("the browser test needs selenium, Debian's chromium and chromium-driver "
                  "(apt-get install chromium chromium-driver)")
        if os.environ.get("SEPBENCH_ALLOW_NO_BROWSER") == "1":
            pytest.skip(reason + "; skipped because SEPBENCH_ALLOW_NO_BROWSER=1")
        pytest.fail(reason + "; set SEPBENCH_ALLOW_NO_BROWSER=1 to skip it instead", pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--mute-audio", "--window-size=1600,1000",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path: Selenium Manager never runs, so nothing is downloaded.
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def server(page):
    log: list[tuple[str, int]] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_request(self, code="-", size="-"):
            log.append((self.path, int(code) if str(code).isdigit() else 0))

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(page.parent)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", log
    httpd.shutdown()
    httpd.server_close()


def _check_loaded(driver, page: Path) -> None:
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.support.ui import WebDriverWait

    n_audio = len(list((page.parent / "audio").iterdir()))
    WebDriverWait(driver, 60, poll_frequency=0.2).until(
        lambda d: all(a["ready"] >= 1 or a["error"] is not None for a in d.execute_script(_AUDIO_JS))
        and all(i["complete"] for i in d.execute_script(_IMG_JS)))
    audio, images = driver.execute_script(_AUDIO_JS), driver.execute_script(_IMG_JS)
    assert len(audio) == len(images) - 1 == n_audio  # one spectrogram per player, and the plot
    bad = [a for a in audio if a["error"] is not None or not a["duration"] > 0]
    assert not bad, f"audio that did not load: {bad}"
    assert all(abs(a["duration"] - 1.0) < 0.01 for a in audio), audio
    assert not [i for i in images if i["width"] <= 0], images
    scripts = driver.find_elements("tag name", "script")
    assert len(scripts) == 1 and "alert" not in scripts[0].get_attribute("textContent")
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text
    shown = driver.find_element("tag name", "body").text
    assert EVIL in shown and EVIL_PROFILE in shown  # shown as text, not markup
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors


def test_browser_over_http(page, browser, server):
    url, log = server
    browser.get(url + "index.html")
    _check_loaded(browser, page)
    failed = [(path, code) for path, code in log if not 200 <= code < 400]
    assert not failed, f"failed requests: {failed}"
    served = {path.split("#")[0].lstrip("/") for path, _ in log}
    expected = {p.relative_to(page.parent).as_posix() for p in page.parent.rglob("*")
                if p.is_file() and p.name != listen.STAMP}
    assert served == expected, "every file of the folder is requested, and nothing else"
    for entry in browser.execute_script(_RESOURCES_JS):
        assert entry["name"].startswith(url), entry  # no resource from elsewhere
        assert entry["status"] in (None, 0, 200, 206, 304), entry


def test_browser_from_file(page, browser):
    browser.get(page.as_uri())  # as a copied folder opened locally: relative paths must resolve
    _check_loaded(browser, page)


# Which columns are shown, per model label: visible players and header cells of its column.
_SHOWN_JS = """const seen = (c) => c.getClientRects().length > 0;
  return Array.from(document.querySelectorAll('#pick input'), b => ({label: b.value, checked: b.checked,
    cells: Array.from(document.querySelectorAll('#clips td.' + b.id.slice(1)), seen),
    head: seen(document.querySelector('#clips th.' + b.id.slice(1))),
    header_row: seen(document.querySelector('#clips thead tr'))}));"""


def _shown(driver) -> dict[str, bool]:
    """label -> shown, checking that a model's box, its cells in both rows and its header cell
    (where the header row is shown: not on a phone) agree."""
    state = {}
    for box in driver.execute_script(_SHOWN_JS):
        assert box["cells"] == [box["checked"]] * 2, box
        assert box["head"] == (box["checked"] and box["header_row"]), box
        state[box["label"]] = box["checked"]
    return state


def _fragment(labels) -> str:
    return "#show=" + ",".join(quote(label, safe="/") for label in labels)


def test_browser_model_choice_in_the_url(page, browser, server, tmp_path):
    """Unticking a model hides its column and writes the choice into the URL; that URL, loaded
    anew or reloaded, shows the same choice; the page reads at desktop and phone widths."""
    url, _ = server
    browser.set_window_size(1280, 900)
    browser.get(url + "index.html")
    _check_loaded(browser, page)
    assert _shown(browser) == dict.fromkeys(LABELS, True) and "#" not in browser.current_url
    assert len(LABELS) >= 10

    browser.find_element("id", "sm02").click()  # lstm_mask/smoke
    browser.find_element("id", "sm01").click()  # the evil name: its label must survive the URL
    kept = [label for label in LABELS if label not in LABELS[:2]]
    assert _shown(browser) == {label: label in kept for label in LABELS}
    assert browser.current_url == url + "index.html" + _fragment(kept)
    browser.refresh()
    _check_loaded(browser, page)
    assert _shown(browser) == {label: label in kept for label in LABELS}

    # A link with a choice, opened anew (not a jump within the page), and a bare model name.
    chosen = [LABELS[0], "oracle_irm"]
    browser.get("about:blank")
    browser.get(url + "index.html" + _fragment(chosen) + ",conv_tasnet")
    _check_loaded(browser, page)
    assert _shown(browser) == {label: label in chosen + ["conv_tasnet/smoke"] for label in LABELS}
    browser.find_element("id", "none").click()
    assert not any(_shown(browser).values()) and browser.current_url.endswith("#show=")
    browser.find_element("id", "all").click()
    assert all(_shown(browser).values()) and browser.current_url == url + "index.html"

    # Desktop: the header row and the first column stay in view while the table scrolls.
    browser.execute_script("document.querySelector('.w').scrollTo(600, 300)")
    stuck = browser.execute_script("""const box = document.querySelector('.w').getBoundingClientRect();
      const corner = document.querySelector('#clips thead .c0').getBoundingClientRect();
      const first = document.querySelector('#clips tbody tr:last-child .c0').getBoundingClientRect();
      return [corner.left - box.left, corner.top - box.top, first.left - box.left];""")
    assert all(abs(x) < 2 for x in stuck), stuck
    # The screenshot (docs/listen.png is one): the model choice and the players of every model.
    browser.execute_script("document.querySelector('.w').scrollTo(0, 0); document.getElementById('pick').scrollIntoView()")
    browser.save_screenshot(str(tmp_path / "listen-desktop.png"))

    # A phone (390 px, as a phone reports it): nothing wider than the screen but inside its own
    # scroll box (the ranking), the models stacked per clip with their names, no sideways scroll.
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True})
    try:
        browser.get(url + "index.html" + _fragment(LABELS[1:4]))
        _check_loaded(browser, page)
        widths = browser.execute_script("""return [window.innerWidth, document.documentElement.scrollWidth,
          document.body.scrollWidth, document.querySelector('#clips').getBoundingClientRect().width,
          getComputedStyle(document.querySelector('#clips thead')).display];""")
        assert widths[0] == 390 and widths[1] <= 390 and widths[2] <= 390 and widths[3] <= 390, widths
        assert widths[4] == "none", widths
        label = browser.execute_script("return getComputedStyle(document.querySelector('#clips td.m02'), '::before')"
                                       ".content")
        assert "lstm_mask/smoke" in label
        assert _shown(browser) == {label: label in LABELS[1:4] for label in LABELS}
        browser.save_screenshot(str(tmp_path / "listen-phone.png"))
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    for name in ("listen-desktop.png", "listen-phone.png"):
        assert (tmp_path / name).stat().st_size > 10_000, name


def test_browser_model_choice_from_file(page, browser):
    """Opened from disk (file://), the choice goes into the URL and comes back on reload too."""
    browser.get(page.as_uri() + _fragment(["oracle_irm"]))
    _check_loaded(browser, page)
    assert _shown(browser) == {label: label == "oracle_irm" for label in LABELS}
    browser.find_element("id", "sm02").click()
    assert browser.current_url == page.as_uri() + _fragment(["lstm_mask/smoke", "oracle_irm"])
    browser.refresh()
    _check_loaded(browser, page)
    assert _shown(browser) == {label: label in ("lstm_mask/smoke", "oracle_irm") for label in LABELS}


def test_only_each_models_lowest_seed_is_played_and_scored():
    import pandas as pd

    from benchmark.scoring.examples import first_seed as _first_seed

    df = pd.DataFrame({"model": ["a", "a", "a", "a", "mixture"], "profile": ["cpu"] * 4 + ["-"],
                       "kind": ["trained"] * 4 + ["reference"], "seed": ["1", "1", "0", "0", ""],
                       "clip_id": ["0001", "0002", "0001", "0002", "0001"],
                       "checkpoint": ["runs/a/cpu-seed1/best.pt"] * 2 + ["runs/a/cpu/best.pt"] * 2 + [""]})
    kept = _first_seed(df)
    assert list(kept["seed"]) == ["0", "0", ""] and set(kept["checkpoint"]) == {"runs/a/cpu/best.pt", ""}
    assert _first_seed(df.drop(columns="seed")).equals(df.drop(columns="seed"))


def test_listen_refuses_another_test_set_and_damaged_results(run, tmp_path, capsys):
    """A test set with the same clip ids but other audio (a demo set made again), and a
    results.csv cut short or emptied: one line each, and the page already there is kept."""
    board = _board(run, tmp_path)
    argv = ["listen", "--data", str(run["test_dir"]), "--out", str(board)]
    assert main(argv) == 0
    page = _files(board / "listen")
    other = Path(shutil.copytree(run["test_dir"], tmp_path / "other" / "test"))
    voice = next(other.glob("*/voice.wav"))
    x, sr = sf.read(str(voice))
    sf.write(str(voice), 0.5 * x, sr, subtype="PCM_16")
    err = _refused(["listen", "--data", str(other), "--out", str(board), "--force"], capsys)
    assert "differ from those" in err and str(other) in err
    text = (board / "results.csv").read_bytes()
    for damaged in (text[: len(text) // 2 + 7], b""):
        (board / "results.csv").write_bytes(damaged)
        err = _refused([*argv, "--force"], capsys)
        assert "results.csv is damaged" in err and "sepbench evaluate" in err
    assert _files(board / "listen") == page


def test_a_second_build_of_one_page_is_refused(run, tmp_path, capsys):
    """While one `listen` builds the page, another is refused in one line, and the first's
    half-built folder is left alone (it used to be cleared as a crash's leftover)."""
    from recipes.lock import exclusive_lock

    board = _board(run, tmp_path)
    with exclusive_lock(board, "listening page", name=".listen.lock"):
        (board / ".listen.new-abc").mkdir()  # what the holder is building
        err = _refused(["listen", "--data", str(run["test_dir"]), "--out", str(board)], capsys)
        assert "locked by another sepbench listening page" in err and (board / ".listen.new-abc").is_dir()
    assert main(["listen", "--data", str(run["test_dir"]), "--out", str(board)]) == 0
