"""report.md of the prepared GPU check, rendered from report.json's dict (perf/gpu_stages.py).
Missing figures print as "-": a run cut short renders what it has."""
from __future__ import annotations

import math


def _f(x, digits=2, unit="") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:.{digits}f}{unit}"


def _pct(x, digits=0) -> str:
    return "-" if x is None else f"{100 * x:.{digits}f} %"


def _machine(r: dict) -> list[str]:
    m = r.get("machine", {})
    lines = [f"# sepbench GPU check ({'DRY RUN, CPU' if r['dry_run'] else 'GPU'}): {r['status']}", "",
             f"Started {r['started']}, {r.get('elapsed_s', 0):.0f} s of a {r['plan']['budget_s']:.0f} s budget; "
             f"profile `{r['profile']}`, {r['plan']['minutes_per_training']:g} min per training; "
             f"commit {m.get('git_commit', '?')}"
             + (f" (carry built at {r['carry']['build']['git_commit']})" if (r.get("carry") or {}).get("build") else "")
             + ".", ""]
    if m:
        lines += [f"Machine: {m.get('gpu') or 'no GPU'}, driver {m.get('driver') or '-'}, torch {m.get('torch')} "
                  f"(CUDA {m.get('torch_cuda') or '-'}, cuDNN {m.get('cudnn') or '-'}), Lightning {m.get('lightning')}, "
                  f"Python {m.get('python')}, {m.get('cpu_cores')} cores. fp32 matmul precision "
                  f"`{m.get('float32_matmul_precision')}`, cuDNN TF32 {m.get('cudnn_allow_tf32')}.", ""]
    if r.get("errors"):
        lines += ["Errors:", "", *[f"- {e}" for e in r["errors"]], ""]
    return lines


def _trainings(r: dict) -> list[str]:
    if not r["trainings"]:
        return []
    o, dev = r.get("oracle", {}), "CPU" if r["dry_run"] else "GPU"
    first = r["trainings"][0]
    lines = ["## Training at equal minutes", "",
             f"| run | steps | steps/s | samples/s | step ms | {dev} busy, in epochs | waiting for loader, in epochs "
             "| epoch boundaries, of the wall | peak GPU MiB | val SI-SDRi | val / IRM | test SI-SDRi | test / IRM | stop |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for t in r["trainings"]:
        w = t["wall_shares"]
        lines.append(f"| {t['tag']} | {t['steps_total']} | {_f(t['steps_per_s'])} | {_f(t['samples_per_s'], 1)} | "
                     f"{_f(t['step_ms_median'], 1)} | {_pct(t['busy_share'])} | {_pct(t['loader_wait_share'])} | "
                     f"{_pct(w['epoch_boundaries'])} | {_f(t['peak_gpu_mib'], 0)} | {_f(t['val_sisdri'])} | "
                     f"{_pct(t.get('val_share_of_irm'))} | {_f(t.get('test_sisdri'))} | "
                     f"{_pct(t.get('test_share_of_irm'))} | {t['stop_reason']} |")
    return lines + [
        "", f"Batch {first['batch_size']} x {first['segment_s']:g} s, {first['num_workers']} loader workers, dynamic "
        f"mixing {'on' if first['dynamic_mixing'] else 'off'}. Oracle IRM voice SI-SDRi: validation crops "
        f"{_f(o.get('val_irm_sisdri'))} dB, test {_f(o.get('test_irm_sisdri'))} dB. Busy: the share of the time within "
        f"epochs that the {dev} spends inside a training step (timer: {first['timer']}); the rest of it, it waits for "
        "the next batch. Epoch boundaries: validation and the DataLoader's restart. Steps/s and samples/s are over "
        f"the whole training loop, validation included; the first {first['warmup_steps_left_out']} steps of each run "
        "are left out as warm-up.", ""]


def _precisions(r: dict) -> list[str]:
    b, lines = r.get("bf16_vs_fp32", {}), []
    if "same_minutes" in b:
        s = b["same_minutes"]
        lines += [f"## bf16-mixed against fp32 ({s['recipe']}, {s['minutes']:g} min each)", "",
                  "| precision | steps/s | samples/s | step ms | peak GPU MiB | val SI-SDRi | test SI-SDRi |",
                  "|---|---|---|---|---|---|---|"]
        for p in ("bf16-mixed", "32-true"):
            x = s[p]
            lines.append(f"| {p} | {_f(x['steps_per_s'])} | {_f(x['samples_per_s'], 1)} | {_f(x['step_ms_median'], 1)} | "
                         f"{_f(x['peak_gpu_mib'], 0)} | {_f(x['val_sisdri'])} | {_f(x['test_sisdri'])} |")
        lines.append("")
    if "same_batch" in b:
        s = b["same_batch"]
        lines += [f"On one batch of {s['batch']} ({s['recipe']}, {s['steps']} timed steps each): bf16-mixed "
                  f"{_f(s['bf16-mixed']['step_ms_median'], 1)} ms, fp32 {_f(s['32-true']['step_ms_median'], 1)} ms per "
                  f"step ({_f(s['speedup_bf16'])}x); the bf16 forward's output is {_f(s['bf16_output_vs_fp32_db'], 1)} dB "
                  "SI-SDR from the fp32 one.", ""]
    return lines


def _evaluation(r: dict) -> list[str]:
    runs = [t for t in r["trainings"] if "eval" in t or "row_cost" in t]
    if not runs:
        return []
    lines = ["## Evaluation", "",
             "| run | rows | wall s | wall ms per row | separation, of the wall | separation ms per row (batch; alone) "
             "| metrics ms per row | separation, of a row | goal < 10 % |",
             "|---|---|---|---|---|---|---|---|---|"]
    for t in runs:
        e, c = t.get("eval", {}), t.get("row_cost", {})
        lines.append(f"| {t['tag']} | {e.get('rows', '-')} | {_f(e.get('wall_s'), 1)} | {_f(e.get('ms_per_row'), 1)} | "
                     f"{_pct(e.get('separation_share_of_wall'))} | {_f(c.get('separation_ms_per_row'))}; "
                     f"{_f(c.get('separation_ms_per_row_alone'))} | {_f(c.get('metrics_ms_per_row'), 1)} | "
                     f"{_pct(c.get('separation_share'), 1)} | {'met' if c.get('goal_met') else ('-' if not c else 'NOT met')} |")
    c = next((t["row_cost"] for t in runs if "row_cost" in t), None)
    if c:
        lines += ["", f"Wall: `sepbench evaluate` of that run alone (model load, separation, metrics in parallel "
                  f"processes, the leaderboard's tables and plots). Per row: {c['rows']} test clips of {c['clip_s']:g} s "
                  f"in one process, separation on the {'CPU' if r['dry_run'] else 'GPU'} in batches of {c['batch']} "
                  f"(as evaluate batches there) and one clip alone, metrics on one CPU process; the mixture's own "
                  f"scores, computed once per clip for all models, cost {_f(c['input_scores_ms_per_clip'], 1)} ms "
                  "and are not counted in a row."]
    return lines + [""]


def _provenance(r: dict) -> list[str]:
    lines = []
    d = r.get("data")
    if d:
        lines += [f"Data: {d['n_train']} train + {d['n_test']} test clips of {d['seconds']:g} s at {d['sr']} Hz from "
                  f"{d['sources']}, prepared in {d['prepare_s']:.0f} s.", ""]
    if r.get("carry"):
        lines += [r["carry"]["line"] + ".", ""]
    inst = r.get("install", {})
    if inst.get("dry_run"):
        lines += [f"Install (dry run, pip left out): would install "
                  f"{', '.join(f'{k} {v}' for k, v in inst['would_install'].items()) or 'nothing'}; would keep "
                  f"{len(inst['kept_machine'])} as this Python has them (wheels from {inst['from']}).", ""]
    if "installed" in inst:
        lines += [f"Installed from carried wheels: {', '.join(f'{k} {v}' for k, v in sorted(inst['installed'].items()))}. "
                  f"The machine's own: {', '.join(f'{k} {v}' for k, v in sorted(inst['kept_machine'].items())) or '-'}.", ""]
    own = r.get("dependencies", {}).get("machine_own_versions")
    if own:
        lines += ["Kept the machine's versions against pyproject.toml's pins: "
                  + ", ".join(f"{k} {v['machine']} (pin {v['pinned']})" for k, v in sorted(own.items())) + ".", ""]
    lines += ["## Stages", "", "| stage | status | s |", "|---|---|---|"]
    lines += [f"| {s['name']} | {s['status']}{': ' + s['error'] if s.get('error') else ''} | {s['seconds']} |"
              for s in r["stages"]]
    return lines


def markdown(r: dict) -> str:
    parts = _machine(r) + _trainings(r) + _precisions(r) + _evaluation(r) + _provenance(r)
    return "\n".join(parts) + "\n"
