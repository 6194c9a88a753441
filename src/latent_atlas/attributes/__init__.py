"""The attributes stage: probes, directions, traversals and disentanglement scores of a model's latents against per-sample attributes."""
