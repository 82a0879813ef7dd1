"""Measuring a trained model: ``test``, ``test-suite`` and the decision thresholds ``calibrate`` chooses on the validation split."""
