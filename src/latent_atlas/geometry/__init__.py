"""The geometry stage (docs/architecture.md: compute modules, figures.py, jobs.py): how a model's
latent points fill their space, compared with a Gaussian of the same mean and covariance.

Compute modules (pure functions on arrays and frames): baseline (the cloud and its filled
Gaussian), axes (density along each axis), radius, pca, planes (planes and zoom occupancy),
neighbours (nearest neighbours, intrinsic dimension), summary, tables (all of them for one
model), maps (t-SNE/UMAP tables), random_points (decoding random latents, plausibility).
"""
