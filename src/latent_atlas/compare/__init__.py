"""The compare stage: how alike two latent spaces of the same samples are.

`measures` holds pure functions on two representations X (n, d_a) and Y (n, d_b) of the same n
samples, rows aligned: linear and RBF CKA, Procrustes disparity, SVCCA, per-point k-NN overlap
(with the atlas's neighbour search), cross-validated linear probes in both directions, linear
class-probe accuracy, and dimensions matched one to one by correlation; `pair_measures` runs them
all for one pair.
"""
