"""The architecture registry without torch: each arch's parameters, their defaults, derived sizes.

Snakemake's DAG code needs a model's kind and latent size (which figures to draw) before any
model exists; this module answers that without importing torch. `latent_atlas.models` builds
the networks from the parameters resolved here.
"""

from __future__ import annotations

from typing import Any, Mapping

# Defaults of every arch's `params` (config `models.<name>.params`); unknown keys are errors.
ARCH_DEFAULTS: dict[str, dict[str, Any]] = {
    "dense_ae": {"hidden": [], "latent_dim": 32, "latent_activation": "linear"},
    "dense_vae": {"hidden": [256], "latent_dim": 2},
    "conv_ae": {"channels": [32, 64, 128, 256], "latent_dim": 32, "kernel_size": 3},
    "conv_vae": {"channels": [32, 64, 128, 256], "latent_dim": 32, "kernel_size": 3},
    "cnn_classifier": {"channels": [32, 64], "feature_dim": 128, "kernel_size": 3},
    "mlp_classifier": {"hidden": [1250, 1000, 750, 500, 250, 100, 32]},
}

AUTOENCODER_ARCHS = ("dense_ae", "dense_vae", "conv_ae", "conv_vae")
VAE_ARCHS = ("dense_vae", "conv_vae")
DENSE_ARCHS = ("dense_ae", "dense_vae", "mlp_classifier")


def resolve_params(arch: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return `params` with the arch's defaults filled in, after checking names and sizes.

    Raises ValueError naming the arch and the offending key.
    """
    if arch not in ARCH_DEFAULTS:
        raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(ARCH_DEFAULTS)}")
    params = dict(params or {})
    unknown = sorted(set(params) - set(ARCH_DEFAULTS[arch]))
    if unknown:
        raise ValueError(
            f"arch {arch!r}: unknown params {unknown}; it takes {sorted(ARCH_DEFAULTS[arch])}"
        )
    out = {**ARCH_DEFAULTS[arch], **params}
    for key in ("hidden", "channels"):
        if key in out:
            out[key] = [int(v) for v in out[key]]
            if any(v < 1 for v in out[key]):
                raise ValueError(f"arch {arch!r}: params.{key} must be positive sizes, got {out[key]}")
    if arch in ("conv_ae", "conv_vae") and len(out["channels"]) != 4:
        raise ValueError(
            f"arch {arch!r}: params.channels needs 4 sizes (four stride-2 convolutions), "
            f"got {out['channels']}"
        )
    if arch == "cnn_classifier" and not out["channels"]:
        raise ValueError("arch 'cnn_classifier': params.channels needs at least one conv block")
    if arch == "mlp_classifier" and not out["hidden"]:
        raise ValueError("arch 'mlp_classifier': params.hidden needs at least one hidden layer")
    for key in ("latent_dim", "feature_dim", "kernel_size"):
        if key in out and int(out[key]) < 1:
            raise ValueError(f"arch {arch!r}: params.{key} must be >= 1, got {out[key]}")
    if "kernel_size" in out and int(out["kernel_size"]) % 2 == 0:
        raise ValueError(f"arch {arch!r}: params.kernel_size must be odd, got {out['kernel_size']}")
    if out.get("latent_activation", "linear") not in ("linear", "relu"):
        raise ValueError(
            f"arch {arch!r}: params.latent_activation must be 'linear' or 'relu', "
            f"got {out['latent_activation']!r}"
        )
    return out


def arch_kind(arch: str) -> str:
    """'autoencoder' or 'classifier'."""
    resolve_params(arch, {})
    return "autoencoder" if arch in AUTOENCODER_ARCHS else "classifier"


def latent_size(arch: str, params: Mapping[str, Any] | None) -> int:
    """Columns z0..z{d-1} of the model's latents.parquet: AE bottleneck or classifier features."""
    p = resolve_params(arch, params)
    if arch in AUTOENCODER_ARCHS:
        return int(p["latent_dim"])
    if arch == "cnn_classifier":
        return int(p["feature_dim"])
    return int(p["hidden"][-1])


def is_dense(arch: str) -> bool:
    """Whether the model's first layer is an nn.Linear on the flattened input."""
    return arch in DENSE_ARCHS


# Defaults of `models.<name>.extract` (the schema fills the same values in the workflow).
EXTRACT_DEFAULTS: dict[str, Any] = {
    "hidden_layers": True,
    "hidden_max_samples": 10000,
    "reconstructions_per_class": 4,
    "batch_size": 1024,
}


def extract_settings(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A model entry's `extract` settings with defaults filled in."""
    extract = dict(spec.get("extract") or {})
    unknown = sorted(set(extract) - set(EXTRACT_DEFAULTS))
    if unknown:
        raise ValueError(f"extract: unknown keys {unknown}; known: {sorted(EXTRACT_DEFAULTS)}")
    return {**EXTRACT_DEFAULTS, **extract}
