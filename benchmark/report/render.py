"""summary.csv (+ run cards and logs) -> LEADERBOARD.md, si_sdri_by_snr.png and learning_curves.png.

Pure: the output depends only on the arguments (the date shown is the newest result's, never
the clock), so the same inputs give a byte-identical file and a snapshot test can pin it.
Every string that comes from the inputs (model, profile and bucket names, paths, versions) is
escaped for Markdown and shown as plain text in the plot: a name is displayed, never interpreted.
"""
from __future__ import annotations

import html
import io
import math
import re
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from benchmark.scoring import compare
from benchmark.scoring.aggregate import ALL, KIND_ORDER, RANK_METRIC, bucket_sort_key
from benchmark.scoring.metrics import DNSMOS_COLUMNS, METRICS, PESQ_MAX_SECONDS, pesq_mode
from recipes.files import atomic_path

PLOT_NAME = "si_sdri_by_snr.png"
CURVES_NAME = "learning_curves.png"
TABLE_METRICS = ["voice_sisdri", "voice_sdri", "PESQ", "voice_stoi", "voice_estoi", "noise_sisdri"]
DNSMOS_RATE = 16000  # the rate DNSMOS was trained at and scores at (scoring/dnsmos.py resamples to it)
# Characters Markdown (GitHub's flavour: tables, strikethrough, math) would act on anywhere in a
# line. '_' only acts at a word's edge, so 'conv_tasnet' stays readable in the raw file.
_MD_ACTIVE = re.compile(r"[\\`*\[\]|~$]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _plain(value) -> str:
    """One line: a newline in a name would end a table row or start a Markdown block."""
    return _CONTROL.sub(lambda m: " " if m.group() in "\t\n\r" else "\ufffd", str(value))


def md(value) -> str:
    """`value` as literal Markdown text, also inside a table cell: HTML-escaped, and every
    Markdown-active character backslash-escaped (a '|' would otherwise add a column)."""
    return _MD_ACTIVE.sub(lambda m: "\\" + m.group(), html.escape(_plain(value), quote=False))


def _code(value) -> str:
    """`value` as inline code when it is a plain path or hash; anything else as escaped text
    (inside a code span '&lt;' would show literally, and '`' or '|' could still end it)."""
    text = str(value)
    return f"`{text}`" if re.fullmatch(r"[A-Za-z0-9_./+=-]+", text) else md(text)


class SummaryTable:
    """Lookup of one statistic row by (model, profile, kind, bucket, metric)."""

    def __init__(self, summary: pd.DataFrame):
        if "n_seeds" not in summary.columns:  # a summary.csv written before seeds were pooled
            summary = summary.assign(n_seeds=1, seed_std=math.nan)
        self.rows = {tuple(r[:5]): r for r in summary[["model", "profile", "kind", "snr_bucket", "metric", "n",
                                                       "n_failed", "mean", "ci95_low", "ci95_high", "n_seeds",
                                                       "seed_std"]].itertuples(index=False)}
        self.models = sorted({k[:3] for k in self.rows}, key=self._rank_key)
        self.buckets = sorted({k[3] for k in self.rows}, key=bucket_sort_key)
        pesq = [m for m in ("voice_pesq_nb", "voice_pesq_wb") if any(k[4] == m for k in self.rows)]
        self.pesq = pesq[0] if pesq else "voice_pesq_nb"
        # DNSMOS is optional (evaluate --metrics +dnsmos): its columns show when it was scored.
        self.dnsmos = any(k[4] == DNSMOS_COLUMNS[-1] for k in self.rows)
        self.table_metrics = TABLE_METRICS + (list(DNSMOS_COLUMNS) if self.dnsmos else [])

    def get(self, model, metric, bucket=ALL):
        return self.rows.get((*model, bucket, metric))

    def ranked(self, bucket=ALL) -> list[tuple[str, str]]:
        """Trained (model, profile)s, best mean RANK_METRIC in `bucket` first."""
        trained = [m for m in self.models if m[2] == "trained"]
        return [m[:2] for m in sorted(trained, key=lambda m: self._rank_key(m, bucket))]

    def seeds(self, model) -> str:
        row = self.get(model, RANK_METRIC)
        if row is None or row.n_seeds <= 1:
            return "1"
        return f"{row.n_seeds} (sd {row.seed_std:.2f})"

    def _rank_key(self, model, bucket=ALL):
        row = self.rows.get((*model, bucket, RANK_METRIC))
        mean = row.mean if row is not None and not math.isnan(row.mean) else -math.inf
        return (KIND_ORDER.get(model[2], 9), -mean, model[0], model[1])

    def metric(self, name: str) -> str:
        return self.pesq if name == "PESQ" else name

    def cell(self, model, metric, bucket=ALL) -> str:
        """mean ± half-width of the 95% CI; no interval when it is undefined (n = 1)."""
        row, spec = self.get(model, metric, bucket), METRICS[metric]
        if row is None or row.n == 0:
            return "–"
        if math.isnan(row.ci95_low):
            return f"{row.mean:.{spec.digits}f}"
        return f"{row.mean:.{spec.digits}f} ± {(row.ci95_high - row.ci95_low) / 2:.{spec.digits}f}"

    def failed(self, model, names) -> int:
        return max((r.n_failed for r in (self.get(model, self.metric(n)) for n in names) if r is not None), default=0)


def _header(metric: str) -> str:
    m = METRICS[metric]
    unit = f" ({m.unit})" if m.unit == "dB" else ""
    return f"{m.label}{unit} {m.arrow}".strip()


def _params(card: dict) -> str:
    n = card.get("n_params")
    if not isinstance(n, (int, float)):
        return "–"
    return f"{n / 1e6:.2f} M" if n >= 1e6 else f"{n / 1e3:.1f} k"


def _duration(card: dict) -> str:
    s = card.get("train_seconds")
    if not isinstance(s, (int, float)):
        return "–"
    return f"{s:.0f} s" if s < 120 else (f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h")


def _table(rows, headers) -> str:
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def main_table(summary: pd.DataFrame, cards: dict, pairs: pd.DataFrame | None = None) -> str:
    """Trained models ranked by overall voice SI-SDRi; with `pairs` (compare.pairs), a Tier
    column; a Seeds column when some model was trained with more than one seed."""
    s = SummaryTable(summary)
    tiers = compare.tiers(pairs, s.ranked()) if pairs is not None else {}
    seeded = any(s.seeds(m) != "1" for m in s.models if m[2] == "trained")
    rows = []
    for model in (m for m in s.models if m[2] == "trained"):
        card = cards.get(model[:2], {})
        rows.append([len(rows) + 1, *([tiers.get(model[:2], "–")] if tiers else []), md(model[0]), md(model[1]),
                     *([s.seeds(model)] if seeded else []),
                     *[s.cell(model, s.metric(n)) for n in s.table_metrics],
                     _params(card), _rtf(s, model), _duration(card), s.failed(model, s.table_metrics)])
    if not rows:
        return "_No trained models yet: train one with `sepbench train`._"
    headers = ["#", *(["Tier"] if tiers else []), "Model", "Profile", *(["Seeds"] if seeded else []),
               *[_header(s.metric(n)) for n in s.table_metrics], "Params", _header("rtf"), "Train time", "Failed"]
    return _table(rows, headers)


def _rtf(s: SummaryTable, model) -> str:
    rtf = s.get(model, "rtf")
    return "–" if rtf is None or math.isnan(rtf.mean) else f"{rtf.mean:.3g}"


def reference_table(summary: pd.DataFrame) -> str:
    s = SummaryTable(summary)
    rows = [[md(model[0]), md(model[2]), *[s.cell(model, s.metric(n)) for n in s.table_metrics],
             s.failed(model, s.table_metrics)]
            for model in s.models if model[2] not in ("trained", "pretrained")]
    if not rows:
        return "_Reference rows were not computed (`--no-references`)._"
    return _table(rows, ["Reference", "Kind", *[_header(s.metric(n)) for n in s.table_metrics], "Failed"])


def _versus_best(s: SummaryTable, pairs, model) -> str:
    """The row's voice SI-SDRi minus the best trained model's, on the clips both scored, with the
    paired bootstrap 95% interval; '*' when the Wilcoxon test (Holm, pretrained family) says it
    differs at 5%."""
    ranked = s.ranked()
    if pairs is None or not ranked:
        return "–"
    got = compare.versus(pairs, model[:2], ranked[0])
    if got is None or math.isnan(got["mean_diff"]):
        return "–"
    interval = "" if math.isnan(got["ci95_low"]) else f" [{got['ci95_low']:+.2f}, {got['ci95_high']:+.2f}]"
    return f"{got['mean_diff']:+.2f}{interval}{' *' if got['significant'] else ''}"


def pretrained_table(summary: pd.DataFrame, facts: dict, pairs: pd.DataFrame | None = None) -> str:
    """The pretrained enhancers, best mean voice SI-SDRi first, each with its paired difference to
    the best trained model, its size and speed, and the facts it declares (facts: {name: dict}
    from references.pretrained_facts); then its out-of-domain note, one line per row."""
    s = SummaryTable(summary)
    models = sorted((m for m in s.models if m[2] == "pretrained"), key=lambda m: s._rank_key(m))
    rows, notes = [], []
    for model in models:
        fact = facts.get(model[0], {})
        rate = fact.get("sample_rate")
        native = "–" if "sample_rate" not in fact else "the input's" if rate is None else f"{rate / 1000:g} kHz"
        rows.append([md(model[0]), native,
                     *[s.cell(model, s.metric(n)) for n in s.table_metrics], _versus_best(s, pairs, model),
                     _params(fact), _rtf(s, model), md(fact.get("licence", "–")),
                     s.failed(model, s.table_metrics)])
        source = f" ({_code(fact['source'])})" if fact.get("source") else ""
        notes.append(f"- **{md(model[0])}**{source}: {md(fact.get('out_of_domain') or 'no note declared')}")
    if not rows:
        return ""
    vs = f"{METRICS[RANK_METRIC].label} vs best trained (dB)"
    headers = ["Enhancer", "Native rate", *[_header(s.metric(n)) for n in s.table_metrics], vs, "Params",
               _header("rtf"), "Licence", "Failed"]
    return "\n".join([_table(rows, headers), "", *notes])


def _pretrained_section(summary: pd.DataFrame, info: dict, pairs) -> list[str]:
    """The pretrained enhancers' section: absent from a run that did not ask for them, so its
    leaderboard is the one it always was."""
    pretrained = info.get("pretrained")
    if not pretrained:
        return []
    table = pretrained_table(summary, pretrained.get("rows", {}), pairs)
    skipped = [f"- not scored: {md(n)}" for n in pretrained.get("skipped", [])]
    return ["## Pretrained enhancers (not trained here; kind `pretrained`)", "",
            "Downloaded-weight enhancers run on the same clips with the same metrics, in a tier of their own: they "
            "are not ranked with the trained models. The difference column is paired (clip by clip) against the "
            "best trained model, Holm-corrected among the pretrained rows' pairs.", "",
            *([table, ""] if table else ["_No pretrained enhancer was scored._", ""]),
            *([*skipped, ""] if skipped else [])]


def _dnsmos_note(info: dict) -> str:
    return dnsmos_note(int(info.get("sample_rate", 8000)))


def dnsmos_note(sr: int, audio: str = "the test set's") -> str:
    """DNSMOS is trained on 16 kHz speech: said next to its columns wherever the audio is not."""
    where = (f"{audio} {sr} Hz audio is upsampled to {DNSMOS_RATE // 1000} kHz for it, which is out of "
             "DNSMOS's domain (no energy above the original band): compare rows with each other, not with published "
             "DNSMOS figures" if sr < DNSMOS_RATE else
             f"{audio} {sr} Hz audio is resampled to {DNSMOS_RATE // 1000} kHz for it" if sr != DNSMOS_RATE
             else "it scores the 16 kHz audio as it is")
    return (f"DNSMOS (SIG, BAK, OVRL: ITU-T P.835 ratings predicted without a reference, of the voice estimate; "
            f"the mixture's is its input's): {where}.")


def snr_table(summary: pd.DataFrame, pairs: pd.DataFrame | None = None, metric: str = RANK_METRIC) -> str:
    """Voice SI-SDRi (or `metric`) per bucket; with `pairs` (of voice SI-SDRi), the trained models
    tied with each bucket's best trained model (not significantly worse, compare.ties_with_best)
    are in bold."""
    s = SummaryTable(summary)
    ties = {b: compare.ties_with_best(pairs, s.ranked(b), b) for b in s.buckets} if pairs is not None else {}
    headers = ["Model", "Profile", "Kind", *[("All" if b == ALL else f"SNR {md(b)} dB") for b in s.buckets]]

    def cell(model, bucket):
        text = s.cell(model, metric, bucket)
        return f"**{text}**" if model[:2] in ties.get(bucket, ()) and model[2] == "trained" else text

    rows = [[*map(md, model), *[cell(model, b) for b in s.buckets]] for model in s.models]
    return _table(rows, headers)


def dnsmos_snr_table(summary: pd.DataFrame) -> str:
    """DNSMOS OVRL per SNR bucket (mean ± 95% CI), every row the mixture's included."""
    return snr_table(summary, None, DNSMOS_COLUMNS[-1])


def _note(info: dict, pesq_metric: str, dnsmos: bool = False) -> str:
    sr = int(info.get("sample_rate", 8000))
    mode, rate = pesq_mode(sr)
    pesq = ("narrow-band (ITU-T P.862) at 8 kHz" if mode == "nb" else "wide-band (ITU-T P.862.2) at 16 kHz")
    if rate != sr:
        pesq += f"; the test set's {sr} Hz audio is resampled to 16 kHz for PESQ only"
    return "\n".join([
        "## How to read this", "",
        "- **SI-SDRi** (dB): scale-invariant signal-to-distortion ratio of the estimate minus that of the "
        "unprocessed mixture, against the true stem. 0 dB means no better than doing nothing; the overall gain "
        "of the estimate does not count. Sources are scored in fixed order (voice, noise), never re-paired, so a "
        "model that swaps its outputs scores negative.",
        "- Cells are the mean over clips ± the half-width of the 95% confidence interval of that mean "
        "(Student t). A model trained with several seeds (Seeds: how many, and the standard deviation of "
        "their means) shows the mean over seeds and a two-level bootstrap interval over seeds and clips.",
        "- **Tier**: every model is scored on the same clips, so models are compared clip by clip "
        "(`pairs.csv`: mean difference with a paired bootstrap 95% interval, Wilcoxon signed-rank p-value, "
        "Holm-corrected over the pairs). A tier starts at its best model and holds every model below it "
        "that is not significantly worse at 5%; the first that is opens the next tier. In the per-SNR table, "
        "**bold** marks the models tied with that bucket's best the same way.",
        "- ↑ higher is better, ↓ lower is better. SDRi is BSS-eval SDR (512-tap filter) improvement; "
        "STOI/ESTOI are intelligibility scores in [0, 1]; RTF is separation time / audio duration on the "
        "evaluating machine (one CPU thread per clip, or the GPU).",
        f"- PESQ ({pesq_metric.split('_')[-1].upper()}) is {pesq}, computed on the voice only; a clip longer than "
        f"{PESQ_MAX_SECONDS:.0f} s is scored in equal pieces of at most that length, averaged by length "
        "(the reference implementation is undefined beyond about two minutes).",
        *([f"- {_dnsmos_note(info)}"] if dnsmos else []),
        "- **Oracle** rows build masks from the true stems on a 32 ms / 8 ms STFT and apply them to the mixture: "
        "an upper reference for magnitude-masking models on that STFT (learned-basis models such as "
        "Conv-TasNet can exceed it). **mixture** is the unprocessed input: improvement 0 by construction.",
        "- **Failed**: clips where a metric could not be computed (e.g. PESQ on a near-silent voice); they are "
        "left out of the means and listed with a reason in `results.csv`.",
        "- Per-clip rows: `results.csv`; every statistic per SNR bucket: `summary.csv`.",
    ])


def _bucket_title(info: dict) -> str:
    if info.get("bucket", "label") != "measured":
        return "by SNR label of the mixture"
    edges = ", ".join(f"{e:g}" for e in info.get("edges") or [])
    return f"by SNR measured on the stems (bin edges {md(edges or 'none')} dB; `--bucket measured`)"


def render(summary: pd.DataFrame, cards: dict, info: dict, pairs: pd.DataFrame | None = None) -> str:
    """The whole LEADERBOARD.md. info: data, data_hash, n_clips, date, git_commit, version,
    sample_rate, and optionally bucket ("label" | "measured") and edges; pairs: compare.pairs."""
    s = SummaryTable(summary)
    parts = [
        "<!-- Generated by `sepbench evaluate`: do not edit; re-run it instead. -->",
        "# sepbench leaderboard", "",
        f"- Test set: {_code(info['data'])} (content hash {_code(info['data_hash'])}, {md(info['n_clips'])} clips, "
        f"{md(info.get('sample_rate', '?'))} Hz)",
        f"- Results of: {md(info['date'])}",
        f"- Benchmark: version {md(info['version'])}, git commit {md(info['git_commit'])}",
        f"- SNR buckets: {'measured on the stems' if info.get('bucket') == 'measured' else 'labels of the mixtures'}",
        "",
        f"## Trained models, ranked by {_header(RANK_METRIC)} (mean ± 95% CI)", "",
        main_table(summary, cards, pairs), "",
        *([f"_{_dnsmos_note(info)}_", ""] if s.dnsmos else []),
        *_pretrained_section(summary, info, pairs),
        "## References (not trained models)", "",
        reference_table(summary), "",
        f"## {_header(RANK_METRIC)} {_bucket_title(info)}", "",
        snr_table(summary, pairs), "",
        *([f"## {_header(DNSMOS_COLUMNS[-1])} {_bucket_title(info)}", "", dnsmos_snr_table(summary), ""]
          if s.dnsmos else []),
        f"![{METRICS[RANK_METRIC].label} by SNR]({PLOT_NAME})", "",
        *(["## Learning curves: validation voice SI-SDRi against training time", "",
           f"![validation voice SI-SDRi against training minutes]({CURVES_NAME})", "",
           "One line per trained model, from its `log.csv` (one point per epoch, on the validation split, "
           "not the test set): whether a model had flattened out or was still improving when its time "
           "budget ended.", ""] if info.get("curves") else []),
        _note(info, s.pesq, s.dnsmos), "",
    ]
    return "\n".join(parts)


def _label(text: str) -> str:
    """A legend label shown as written: matplotlib leaves out labels that start with '_'."""
    text = _plain(text)
    return "\u200b" + text if text.startswith("_") else text


def plot_png(summary: pd.DataFrame, measured: bool = False) -> bytes:
    """Voice SI-SDRi against SNR label, one line per model with its CI band; oracles dashed,
    the mixture dotted. PNG bytes with no software version stamped in them."""
    # Late: matplotlib takes about a second to import; only the plots need it.
    import matplotlib

    # Names are plain text: '$...$' in a name was parsed as math (and failed the whole
    # evaluation on a bad expression), and usetex would hand it to LaTeX.
    with matplotlib.rc_context({"text.parse_math": False, "text.usetex": False}):
        return _plot_png(summary, measured)


def _plot_png(summary: pd.DataFrame, measured: bool) -> bytes:
    # Late: matplotlib takes about a second to import; only the plots need it.
    from matplotlib.figure import Figure

    s = SummaryTable(summary)
    buckets = [b for b in s.buckets if b != ALL]
    # Measured-SNR bins ("<a", "a..b") are named, not numbers: evenly spaced in their order.
    x = list(range(len(buckets))) if measured else [float(b) for b in buckets]
    fig = Figure(figsize=(7.0, 4.5), dpi=100)
    ax = fig.add_subplot()
    colors = model_color_map(f"{m[0]}/{m[1]}" for m in s.models if m[2] == "trained")
    others = [m for m in s.models if m[2] != "trained"]
    for model in s.models:
        rows = [s.get(model, RANK_METRIC, b) for b in buckets]
        mean, low, high = ([math.nan if r is None else getattr(r, a) for r in rows]
                           for a in ("mean", "ci95_low", "ci95_high"))
        if model[2] == "trained":
            style, marker, color = "-", "o", colors[f"{model[0]}/{model[1]}"]
        else:  # pretrained, oracles and references: grey, dash-dot, dashed or dotted, one marker each
            k = others.index(model)
            style = {"pretrained": "-.", "oracle": "--"}.get(model[2], ":")
            marker, color = "sDv^<>PX*h"[k % 10], f"{0.25 + 0.1 * (k % 4):.2f}"
        ax.plot(x, mean, style, marker=marker, color=color,
                label=_label(f"{model[0]} ({model[1]})" if model[2] == "trained" else model[0]))
        ax.fill_between(x, low, high, color=color, alpha=0.15, linewidth=0)
    ax.set_xlabel("SNR measured on the stems (dB)" if measured else "SNR label of the mixture (dB)")
    ax.set_ylabel(_header(RANK_METRIC))
    ax.set_xticks(x, [_plain(b) for b in buckets])
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", loc="best")
    return _png_bytes(fig)


def learning_curves_png(curves: dict[str, list[tuple[float, float]]]) -> bytes:
    """Validation voice SI-SDRi against training minutes, one line per run: {label: [(minutes,
    dB), ...]}, label "model/profile" or "model/profile seed K". A model has the colour it has in
    the SNR plot (model_color_map); its seeds differ by line style. PNG bytes with no software
    version stamped in them."""
    # Late: matplotlib takes about a second to import; only the plots need it.
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context({"text.parse_math": False, "text.usetex": False}):
        fig = Figure(figsize=(7.0, 4.5), dpi=100)
        ax = fig.add_subplot()
        colors = model_color_map(label.split(" seed ")[0] for label in curves)
        seen: dict[str, int] = {}
        for label, points in sorted(curves.items()):
            model = label.split(" seed ")[0]
            k = seen[model] = seen.get(model, -1) + 1
            ax.plot([p[0] for p in points], [p[1] for p in points], ["-", "--", ":", "-."][k % 4], marker=".",
                    color=colors[model], label=_label(label))
        ax.set_xlabel("training time (minutes, wall clock)")
        ax.set_ylabel("validation voice SI-SDRi (dB)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small", loc="lower right")
        return _png_bytes(fig)


def model_color_map(names) -> dict:
    """{model name: colour}, assigned in sorted name order, so every plot of the same models gives
    each the same colour whatever order it draws them in."""
    unique = sorted(set(names))
    return dict(zip(unique, model_colors(len(unique))))


def model_colors(n: int) -> list:
    """n distinct colours for trained models: tab10's 9 non-grey colours, then tab20's 18, then
    evenly spaced hues; grey is left to the reference rows."""
    # Late: matplotlib takes about a second to import; only the plots need it.
    from matplotlib import colormaps

    for name, size in (("tab10", 10), ("tab20", 20)):
        palette = [c for c in (colormaps[name](i) for i in range(size)) if not c[0] == c[1] == c[2]]
        if n <= len(palette):
            return palette[:n]
    return [colormaps["hsv"](i / n) for i in range(n)]


def _png_bytes(fig) -> bytes:
    """The figure as PNG bytes, with no software version stamped in them (byte-stable output)."""
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def plot(summary: pd.DataFrame, path) -> None:
    """plot_png written atomically to `path`."""
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(plot_png(summary))
