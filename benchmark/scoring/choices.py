"""Names the command line offers before it imports anything heavy: the aggregation itself
imports pandas and scipy.stats (which pulls scipy.signal), a second on every `sepbench --help`."""
from __future__ import annotations

RANK_METRIC = "voice_sisdri"  # what the leaderboard ranks by: mean voice SI-SDRi over all clips
BUCKET_MODES = ("label", "measured")
