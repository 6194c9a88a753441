"""The anomaly stage: autoencoders as anomaly detectors.

`scores` holds the per-sample scores of a model (reconstruction error, a VAE's negative ELBO) and
their evaluation against labelled anomalies (ROC and PR curves, a threshold at a false-positive
rate, the confusion table at it, the top-k samples); `baselines` the PyOD detectors (Isolation
Forest, ECOD, kNN) on the raw inputs or the latents; `figures` draws the stage's tables (their
columns are listed there).
"""
