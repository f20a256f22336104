"""Absolute Zero self-play: one policy proposes and solves program tasks (docs/azr.md)."""
