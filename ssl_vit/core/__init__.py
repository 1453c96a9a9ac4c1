"""Core: what every other package uses and that imports nothing else of sslvit but ``ssl_vit.errors`` -- atomic
file writes, who may write a run directory, derived seeds, the attention switch, the backbone's input spec,
the precision (autocast dtype, device), list parsing, 'did you mean'. One concept per module."""
