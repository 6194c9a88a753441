"""latent-atlas: map what neural networks learn.

One module per pipeline stage (data, models, training, latents, geometry, projections, explain,
importance, featureviz), plus shared helpers (io, plotting). Everything is importable without
Snakemake; `workflow/scripts/` only adapt Snakemake's objects to these functions.
"""

__version__ = "0.1.0"
