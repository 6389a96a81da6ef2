"""The listening page, built from a tiny run: 4 generated clips (2 SNR labels), an untrained
lstm_mask checkpoint in a normal run folder and one in a run folder named like an XSS payload.
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
from functools import partial
from pathlib import Path

import markupsafe
import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from benchmark.cli import main
from benchmark.data.loudness import match_loudness
from benchmark.report import listen
from recipes.files import recover_folder

SR = 8000
EVIL = "<script>alert(1)</script>"
EVIL_PROFILE = '"><img src=x onerror=alert(2)>'
# clip id -> (SNR label, input voice SI-SDR): the median pick is 0001 (-3) and 0004 (3), by value
CLIPS = {"0001": (-3, -3.5), "0002": (-3, -2.0), "0003": (3, 3.5), "0004": (3, 2.5)}
MODELS = [("mixture", "-", "reference", 0.0), ("oracle_irm", "-", "oracle", 12.0), ("oracle_ibm", "-", "oracle", 11.0),
          ("lstm_mask", "smoke", "trained", 2.0), (EVIL, EVIL_PROFILE, "trained", 5.0)]
SAFE_NAME = re.compile(r"^\d\d_(mix|voice|noise|m\d\d_(voice|noise))\.(wav|png)$")


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


def _write_run(root: Path) -> tuple[Path, Path]:
    import torch

    import recipes
    from recipes.checkpoint import save_model

    runs = root / "runs"
    args = {"sample_rate": SR, "win_ms": 32.0, "hop_ms": 8.0, "hidden": 8, "n_layers": 1, "dropout": 0.3}
    rows = []
    for seed, (model, profile, kind, level) in enumerate(MODELS):
        ckpt = ""
        if kind == "trained":
            torch.manual_seed(seed)
            save_model(runs / model / profile / "best.pt", recipes.get("lstm_mask").build(**args), "lstm_mask", args, SR)
            ckpt = f"runs/{model}/{profile}/best.pt"
        for j, (cid, (label, base)) in enumerate(CLIPS.items()):
            gain = level + j / 4
            rows.append({"model": model, "profile": profile, "kind": kind, "clip_id": cid, "snr_label": float(label),
                         "voice_sisdr": base + gain, "voice_sisdri": gain, "noise_sisdr": -base + gain,
                         "noise_sisdri": gain, "input_voice_sisdr": base, "input_noise_sisdr": -base,
                         "checkpoint": ckpt, "checkpoint_hash": "", "failure_reason": ""})
    pd.DataFrame(rows).to_csv(root / "results.csv", index=False)
    return runs, root / "results.csv"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("listen")
    test_dir = _write_data(root / "data")
    runs, results = _write_run(root)
    return {"test_dir": test_dir, "runs": runs, "results": results, "root": root}


def _build(run, out, **kw) -> Path:
    return listen.build_listening_page(run["results"], run["test_dir"], out, runs_dir=run["runs"], log=lambda m: None, **kw)


@pytest.fixture(scope="module")
def page(run) -> Path:
    return _build(run, run["root"] / "leaderboard")


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_page_content_escaping_and_links(page):
    text = page.read_text(encoding="utf-8")
    # Jinja2's autoescape (markupsafe) writes " as &#34;.
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "&#34;&gt;&lt;img src=x onerror=alert(2)&gt;" in text
    assert "<script" not in text.lower() and "<img src=x" not in text and EVIL not in text
    # Columns in leaderboard order (mean voice SI-SDRi), then the oracle; other references absent.
    evil_label = str(markupsafe.escape(f"{EVIL}/{EVIL_PROFILE}"))
    header = text[text.index("<thead>"):text.index("</thead>")]
    assert header.index(evil_label) < header.index("lstm_mask/smoke") < header.index("oracle_irm")
    assert "oracle_ibm" not in text
    # One row per SNR label: the clip whose input voice SI-SDR is the (lower) median.
    assert re.findall(r"clip (\d{4})<br>SNR label (-?\d+) dB", text) == [("0001", "-3"), ("0004", "3")]
    assert "SI-SDR 1.5 dB<br>(+5.0 dB)" in text  # the evil model's voice score on clip 0001
    links = re.findall(r'(?:src|href)="([^"]*)"', text)
    assert len([x for x in links if x.startswith("audio/")]) == 2 * (3 + 2 * 3)
    for link in links:
        assert link == "data:," or re.fullmatch(r"(audio|img)/[^/]+", link), link
        assert link == "data:," or (page.parent / link).is_file(), link
    for p in page.parent.rglob("*"):
        assert p.is_dir() or p.name == "index.html" or SAFE_NAME.match(p.name), p
        assert p.stat().st_mode & 0o004, f"{p} is not world-readable: a web server could not serve it"


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
    direct = [separate(load_model(run["runs"] / m / p / "best.pt")[0], mix) for m, p in ((EVIL, EVIL_PROFILE),
                                                                                           ("lstm_mask", "smoke"))]
    direct.append(references.estimate("oracle_irm", mix, sources, SR))
    audio = page.parent / "audio"
    for j, est in enumerate(direct, 1):
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
    assert _files(_build(run, out).parent) == first  # same bytes: html, audio and images
    assert sorted(p.name for p in out.iterdir()) == ["listen"]  # no temporary folder left

    def broken(*args, **kw):
        raise RuntimeError("interrupted")
    monkeypatch.setattr(listen, "_png", broken)
    with pytest.raises(RuntimeError):
        _build(run, out)
    assert _files(out / "listen") == first and sorted(p.name for p in out.iterdir()) == ["listen"]
    monkeypatch.undo()

    # A crash between the swap's two renames: the old page is put back before the next build.
    (out / ".listen.old-y").mkdir()
    os.replace(out / "listen", out / ".listen.old-y" / "listen")
    recover_folder(out / "listen")
    assert _files(out / "listen") == first and sorted(p.name for p in out.iterdir()) == ["listen"]

    text = _build(run, out, models=["oracle_irm"], clips_per_bucket=2).read_text(encoding="utf-8")
    assert "lstm_mask" not in text and "alert" not in text and text.count("<audio") == 4 * (3 + 2)


def test_listen_command(run, tmp_path):
    """`sepbench listen` on a scored leaderboard folder and a data set root holding test/."""
    out = tmp_path / "lb"
    out.mkdir()
    shutil.copy(run["results"], out / "results.csv")
    assert main(["listen", "--data", str(run["test_dir"].parent), "--out", str(out), "--runs", str(run["runs"]),
                 "--models", "lstm_mask, oracle_irm"]) == 0
    text = (out / "listen" / "index.html").read_text(encoding="utf-8")
    assert "lstm_mask/smoke" in text and "oracle_irm" in text and "alert" not in text
    assert text.count("<audio") == 2 * (3 + 2 * 2)  # one clip per SNR label, two models


def test_listen_command_without_results(run, tmp_path, capsys):
    out = tmp_path / "empty"
    assert main(["listen", "--data", str(run["test_dir"]), "--out", str(out), "--runs", str(run["runs"])]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(out / "results.csv") in err, err
    assert not out.exists()


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
    assert len(audio) == len(images) == n_audio
    bad = [a for a in audio if a["error"] is not None or not a["duration"] > 0]
    assert not bad, f"audio that did not load: {bad}"
    assert all(abs(a["duration"] - 1.0) < 0.01 for a in audio), audio
    assert not [i for i in images if i["width"] <= 0], images
    assert driver.find_elements("tag name", "script") == []
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text
    shown = driver.find_element("tag name", "table").text
    assert EVIL in shown and EVIL_PROFILE in shown  # shown as text, not markup
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors


def test_browser_over_http(page, browser, server):
    url, log = server
    browser.get(url + "index.html")
    _check_loaded(browser, page)
    failed = [(path, code) for path, code in log if not 200 <= code < 400]
    assert not failed, f"failed requests: {failed}"
    served = {path.lstrip("/") for path, _ in log}
    expected = {p.relative_to(page.parent).as_posix() for p in page.parent.rglob("*") if p.is_file()}
    assert served == expected, "every file of the folder is requested, and nothing else"
    for entry in browser.execute_script(_RESOURCES_JS):
        assert entry["name"].startswith(url), entry  # no resource from elsewhere
        assert entry["status"] in (None, 0, 200, 206, 304), entry


def test_browser_from_file(page, browser):
    browser.get(page.as_uri())  # as a copied folder opened locally: relative paths must resolve
    _check_loaded(browser, page)
