"""What makes fakes detectable: heatmap galleries (visualize), top patches, their face regions, the HTML report."""
