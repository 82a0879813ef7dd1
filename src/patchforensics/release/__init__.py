"""Making the bundled detector: ``release`` trains the candidates, chooses one, calibrates, exports and writes its card."""
