"""Leaderboard rendering: summary statistics -> LEADERBOARD.md and its plot (outputs land in this folder)."""
