"""Names the command line offers before it imports anything heavy: the aggregation itself
imports pandas and scipy.stats (which pulls scipy.signal), a second on every `sepbench --help`."""
from __future__ import annotations

RANK_METRIC = "voice_sisdri"  # what the leaderboard ranks by: mean voice SI-SDRi over all clips
BUCKET_MODES = ("label", "measured")
# Metrics a run adds to the fixed set with `--metrics +NAME`: they cost time or need an extra.
OPTIONAL_METRICS = ("dnsmos",)


def parse_metrics(text: str | None) -> tuple[str, ...]:
    """'+dnsmos' (comma-separated, each with a '+': added to the fixed set) -> ('dnsmos',); None
    or '' -> (). ValueError with a one-line reason otherwise."""
    chosen = []
    for part in (p.strip() for p in (text or "").split(",")):
        if not part:
            continue
        if not part.startswith("+") or part[1:] not in OPTIONAL_METRICS:
            raise ValueError(f"--metrics {text}: expected +NAME[,+NAME...] with NAME one of "
                             f"{', '.join(OPTIONAL_METRICS)} (the fixed metrics are always computed)")
        if part[1:] not in chosen:
            chosen.append(part[1:])
    return tuple(chosen)
