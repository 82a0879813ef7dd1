"""Producing checkpoints: ``train`` and the safe import of the seed's weights (``import-seed``)."""
