"""Adapt a detector to a new generator from a few of its samples, and measure what that cost."""
