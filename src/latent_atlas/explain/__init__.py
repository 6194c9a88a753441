"""The explain stage: what a 2-D map of learned features means, in numbers and in pictures.

Reproduces a walkthrough that took a CNN classifier's 128-D penultimate features and asked what
a 2-D map of them means, and runs the same analyses on autoencoder latents:

- `maps`: the samples mapped, PCA, t-SNE (openTSNE) and UMAP of them, new samples placed;
- `quality`: trustworthiness, continuity and k-NN class accuracy of each map;
- `features`: per-feature statistics (dead, near-constant) and the clustered correlation matrix;
- `ridge`: each map axis as a ridge regression of the features;
- `pca`: scree, loadings, and a sample's PCA coordinates as per-feature contributions;
- `clusters`: clusters of the UMAP map and their feature profiles;
- `samples`: the samples explained end to end and their first layer's activations;
- `figures`: every figure, drawn from the tables only; `jobs`: one function per rule.
"""
