"""Separation: a loaded model applied to audio of any length and rate, chunk by chunk."""
