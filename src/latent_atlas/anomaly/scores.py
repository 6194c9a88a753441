"""Anomaly scores of an autoencoder and how well they find labelled anomalies.

Scores (higher = more anomalous), one per sample, from a stream of float32 batches (B, C, H, W)
so that memory stays flat in the number of samples:

- `reconstruction_scores`: the mean over the C x H x W cells of the squared reconstruction error
  (error "mse"), or of the squared error in units of that cell's residual spread on the train split
  (error "standardised", the spread from `residual_scale`); with the per-cell terms, inputs and
  reconstructions of the few rows asked for (the top-k figure), never of all rows.
- `negative_elbo`: a VAE's negative evidence lower bound (nats per sample).

Evaluation (`is_anomaly` a bool array, `score` a float array, both (n,)): `roc_pr` (curves thinned
for the tables, areas on the full data, as sklearn computes them), `threshold_at_fpr` (from the
scores of normal reference samples), `confusion_at`, `top_k`, and `curve_table` (a method's rows of
the curves table).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Iterator, Sequence

import numpy as np

from latent_atlas.runtime import configure_torch

if TYPE_CHECKING:
    import pandas as pd

    torch = configure_torch()

ERRORS = ("mse", "standardised")
# Smallest residual spread (data units) a cell's squared error is divided by. A cell the model
# reconstructs (almost) perfectly on every train sample, such as a border pixel that is always 0,
# has a spread of ~0, and any deviation there would give an infinite or overwhelming score; 1e-3
# is below the resolution of the data (an 8-bit level is 1/255 ~ 4e-3; tables and series are in
# standard deviations of their train split), so cells with a real spread are left alone.
SCALE_FLOOR = 1e-3
# Points of each curve kept for the tables (enough to draw it; the areas use every point).
CURVE_POINTS = 2000


@dataclass
class Reconstruction:
    """Scores of every sample and the details of the rows asked for.

    Attributes
    ----------
    score : ndarray of shape (n,), float64
        The per-sample score: the mean of `cells` over C x H x W (data units squared for "mse",
        dimensionless for "standardised").
    rows : ndarray of shape (r,), int64
        Positions in the stream (0-based over all batches) of the rows below, in the order asked.
    cells : ndarray of shape (r, C, H, W), float32
        Per-cell terms of those rows' scores: (x - x_hat)^2, or ((x - x_hat) / s)^2.
    inputs, reconstructions : ndarray of shape (r, C, H, W), float32
        x and x_hat of those rows (data units).
    """

    score: np.ndarray
    rows: np.ndarray
    cells: np.ndarray
    inputs: np.ndarray
    reconstructions: np.ndarray


def _tensors(batches: Iterable[np.ndarray], device) -> Iterator["torch.Tensor"]:
    """Each batch (B, C, H, W) as a contiguous float32 tensor on `device`."""
    torch = configure_torch()

    for batch in batches:
        yield torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(device)


def _reconstructed(model, batches: Iterable[np.ndarray], device) -> Iterator[tuple["torch.Tensor", "torch.Tensor"]]:
    """(x, x_hat) per batch, without gradients; x_hat = decode(encode(x)) (a VAE: decoded from the
    posterior mean), in data units."""
    torch = configure_torch()
    from latent_atlas.devices import model_device

    device = model_device(model) if device is None else torch.device(device)
    with torch.no_grad():
        for x in _tensors(batches, device):
            x_hat = model.decode(model.encode(x)).float()
            if x_hat.shape != x.shape:
                raise ValueError(f"model {getattr(model, 'arch', type(model).__name__)!r} reconstructs "
                                 f"shape {tuple(x_hat.shape)} from inputs of shape {tuple(x.shape)}")
            yield x, x_hat


def residual_scale(model, train_batches: Iterable[np.ndarray], floor: float = SCALE_FLOOR,
                   device=None) -> np.ndarray:
    """Per-cell scale of the reconstruction residuals on the train split: (C, H, W) float32.

    s = max(root mean square over the train samples of x - x_hat, `floor`), summed batch by
    batch in float64. The root mean square, not the standard deviation: a cell the model gets
    wrong by the same amount on every train sample (a sigmoid that never reaches a background's
    0 exactly) has a deviation of ~0 but a residual, and dividing that residual by the floor
    would make the cell outweigh every other; its scale is then the residual itself, and a
    normal sample scores ~1 per cell. The floor: see SCALE_FLOOR.
    """
    torch = configure_torch()

    n, total = 0, None
    for x, x_hat in _reconstructed(model, train_batches, device):
        squares = ((x - x_hat).double() ** 2).sum(dim=0)
        total = squares if total is None else total + squares
        n += x.shape[0]
    if not n:
        raise ValueError("residual_scale needs train samples (error 'standardised'); the train split is empty")
    return np.maximum(torch.sqrt(total / n).cpu().numpy(), floor).astype(np.float32)


def reconstruction_scores(model, batches: Iterable[np.ndarray], error: str = "mse",
                          residual_scale: np.ndarray | None = None, rows: Sequence[int] = (),
                          device=None) -> Reconstruction:
    """Per-sample reconstruction error of `model` over `batches` (each (B, C, H, W) float32).

    error "mse": mean over cells of (x - x_hat)^2. error "standardised": mean over cells of
    ((x - x_hat) / s)^2 with `residual_scale` s (C, H, W) from `residual_scale(...)` on the train
    split. `rows` (positions over the whole stream) are the samples whose cells, inputs and
    reconstructions come back; memory holds the scores and those rows only. `device`: the
    model's by default.
    """
    torch = configure_torch()

    if error not in ERRORS:
        raise ValueError(f"anomaly.error must be one of {list(ERRORS)}, got {error!r}")
    if (error == "standardised") != (residual_scale is not None):
        raise ValueError(f"anomaly.error {error!r}: residual_scale is needed for 'standardised' and "
                         f"only there, got {'an array' if residual_scale is not None else 'None'}")
    wanted = np.asarray(rows, dtype=np.int64).reshape(-1)
    kept: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    scores, start, scale, shape = [], 0, None, ()
    for x, x_hat in _reconstructed(model, batches, device):
        if residual_scale is not None and scale is None:
            scale = torch.as_tensor(np.asarray(residual_scale, np.float32), device=x.device)
            if scale.shape != x.shape[1:]:
                raise ValueError(f"residual_scale has shape {tuple(scale.shape)}, the samples "
                                 f"{tuple(x.shape[1:])}")
        diff = x - x_hat
        cells = (diff if scale is None else diff / scale) ** 2
        scores.append((cells.flatten(1).sum(dim=1, dtype=torch.float64) / cells[0].numel()).cpu().numpy())
        for row in wanted[(wanted >= start) & (wanted < start + len(x))]:
            i = int(row) - start
            kept[int(row)] = (cells[i].cpu().numpy(), x[i].cpu().numpy(), x_hat[i].cpu().numpy())
        start, shape = start + len(x), tuple(x.shape[1:])
    missing = sorted(set(wanted.tolist()) - set(kept))
    if missing:
        raise ValueError(f"rows {missing[:5]} asked for, but the batches hold {start} samples")
    picked = [kept[int(r)] for r in wanted]
    parts = [np.stack([p[j] for p in picked]) if picked else np.zeros((0, *shape), np.float32) for j in range(3)]
    return Reconstruction(np.concatenate(scores) if scores else np.zeros(0), wanted, *parts)


def negative_elbo(model, batches: Iterable[np.ndarray], device=None) -> np.ndarray:
    """A VAE's negative ELBO per sample over `batches` (each (B, C, H, W)): (n,) float64, nats.

    -ELBO = -log p(x | z = mu) + KL(q(z | x) || N(0, I)), mu the posterior mean. The reconstruction
    term decodes the mean instead of sampling z, so the score is deterministic (log p(x | mu) in
    place of the expectation over q: no longer a strict bound, but the same number on every run,
    as the training's evaluation computes it). The likelihood is the model's training
    loss: output "sigmoid": Bernoulli cross-entropy summed over cells (for x in [0, 1] not 0/1 a
    cross-entropy, not a normalised density); output "linear": Gaussian with unit variance,
    0.5 * (x - x_hat)^2 + 0.5 * log(2 pi) per cell. KL closed-form for the diagonal Gaussian.
    """
    torch = configure_torch()
    from torch.nn import functional as F

    from latent_atlas.devices import model_device

    name = getattr(model, "arch", type(model).__name__)
    if not getattr(model, "variational", False):
        raise ValueError(f"the negative ELBO needs a VAE (encode_distribution); model {name!r} is not one")
    output = getattr(model, "output", "sigmoid")
    if output not in ("sigmoid", "linear"):
        raise ValueError(f"model {name!r}: unknown output {output!r}; the negative ELBO knows sigmoid and linear")
    device = model_device(model) if device is None else torch.device(device)
    out = []
    with torch.no_grad():
        for x in _tensors(batches, device):
            mean, logvar = model.encode_distribution(x)
            logits = model.decode_logits(mean).float()
            if output == "sigmoid":
                nll = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1, dtype=torch.float64)
            else:
                nll = (0.5 * (x - logits) ** 2).flatten(1).sum(1, dtype=torch.float64) \
                    + 0.5 * math.log(2 * math.pi) * x[0].numel()
            kl = -0.5 * (1 + logvar - mean ** 2 - logvar.exp()).double().sum(dim=1)
            out.append((nll + kl).cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def _checked(is_anomaly: np.ndarray, score: np.ndarray, both: bool) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(is_anomaly)
    s = np.asarray(score, dtype=np.float64)
    if y.dtype != bool or y.shape != s.shape or y.ndim != 1:
        raise ValueError(f"is_anomaly must be a bool array of the scores' shape (n,), got {y.dtype} "
                         f"{y.shape} and scores {s.shape}")
    if not np.isfinite(s).all():
        raise ValueError(f"{int((~np.isfinite(s)).sum())} of {len(s)} scores are not finite")
    if both and (y.all() or not y.any()):
        raise ValueError(f"ROC and PR need normal and anomalous samples; got {int(y.sum())} anomalies "
                         f"among {len(y)}")
    return y, s


def thinned(n: int, max_points: int) -> np.ndarray:
    """At most `max_points` (>= 2) indices into n curve points, evenly spaced, first and last kept."""
    if n <= max_points:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, max_points)).astype(np.int64))


@dataclass
class RocPr:
    """ROC and PR curves (thinned to at most CURVE_POINTS each) and their areas (full data).

    fpr, tpr : ROC points, (m,) each, from (0, 0) to (1, 1).
    recall, precision : PR points, (m',) each, recall decreasing to 0 (sklearn's order).
    roc_auc : sklearn.metrics.roc_auc_score; average_precision : average_precision_score.
    """

    fpr: np.ndarray
    tpr: np.ndarray
    recall: np.ndarray
    precision: np.ndarray
    roc_auc: float
    average_precision: float


def roc_pr(is_anomaly: np.ndarray, score: np.ndarray, max_points: int = CURVE_POINTS) -> RocPr:
    """ROC and PR of `score` (n,) against `is_anomaly` (n,) bool, ties as sklearn treats them (a
    threshold takes every sample of a tied score at once)."""
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

    y, s = _checked(is_anomaly, score, both=True)
    fpr, tpr, _ = roc_curve(y, s)
    precision, recall, _ = precision_recall_curve(y, s)
    r, p = thinned(len(fpr), max_points), thinned(len(recall), max_points)
    return RocPr(fpr[r], tpr[r], recall[p], precision[p], float(roc_auc_score(y, s)),
                 float(average_precision_score(y, s)))


def threshold_at_fpr(normal_scores: np.ndarray, fpr: float) -> float:
    """The threshold t at which at most a share `fpr` of `normal_scores` (n,) exceed it (score > t).

    With the scores sorted ascending, s_1 <= ... <= s_n, and m = floor(fpr * n) (fpr * n rounded to
    9 decimals first, so 0.29 x 100 allows 29 and not 28), t = s_(n - m): the (n - m)-th smallest
    score (the inverted-CDF quantile at 1 - m / n, taken by index, free of the rounding of
    1 - m / n). Then at most m normal scores are above t (fewer where scores tie at t). Needs
    0 < fpr < 1 and n >= 1.
    """
    s = np.sort(np.asarray(normal_scores, dtype=np.float64).reshape(-1))
    if not 0 < fpr < 1:
        raise ValueError(f"anomaly.fpr must be in (0, 1), got {fpr}")
    if not len(s):
        raise ValueError("threshold_at_fpr needs normal reference scores; there are none")
    if not np.isfinite(s).all():
        raise ValueError(f"{int((~np.isfinite(s)).sum())} of {len(s)} normal scores are not finite")
    m = math.floor(round(fpr * len(s), 9))
    return float(s[len(s) - m - 1])


def confusion_at(is_anomaly: np.ndarray, score: np.ndarray, threshold: float) -> dict[str, float]:
    """Counts and rates when `score` > `threshold` flags an anomaly: tp, fp, tn, fn (int), fpr =
    fp / (fp + tn), tpr = recall = tp / (tp + fn), precision = tp / (tp + fp); a rate whose
    denominator is 0 is NaN."""
    y, s = _checked(is_anomaly, score, both=False)
    flagged = s > threshold
    tp, fp = int((flagged & y).sum()), int((flagged & ~y).sum())
    fn, tn = int((~flagged & y).sum()), int((~flagged & ~y).sum())

    def rate(a: int, b: int) -> float:
        return a / (a + b) if a + b else math.nan

    return {"tp": tp, "fp": fp, "tn": tn, "fn": fn, "fpr": rate(fp, tn), "tpr": rate(tp, fn),
            "precision": rate(tp, fp)}


def top_k(score: np.ndarray, k: int) -> np.ndarray:
    """Positions of the `k` highest scores (n,), highest first; ties: the earlier sample first;
    NaN last. Fewer than k when n < k."""
    if k < 0:
        raise ValueError(f"anomaly.top_k must be >= 0, got {k}")
    return np.argsort(-np.asarray(score, dtype=np.float64), kind="stable")[:k]


def curve_table(method: str, input: str, result: RocPr) -> "pd.DataFrame":
    """The curves-table rows of one method (columns in `anomaly.figures`): ROC (x fpr, y tpr) then
    PR (x recall, y precision)."""
    import pandas as pd

    parts = [("roc", result.fpr, result.tpr), ("pr", result.recall, result.precision)]
    return pd.DataFrame({"method": method, "input": input,
                         "curve": np.concatenate([[c] * len(x) for c, x, _ in parts]),
                         "x": np.concatenate([x for _, x, _ in parts]),
                         "y": np.concatenate([y for _, _, y in parts])})
