"""Reporting: the markdown leaderboard, its plots and the listening page, from scored rows."""
