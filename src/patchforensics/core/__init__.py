"""Foundation shared by every stage: validated configs, atomic file IO, robust image loading, devices, heatmap colours."""
