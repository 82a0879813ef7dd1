"""Screening one's own images with a trained or the bundled detector: ``detect`` and the local web page ``serve``."""
