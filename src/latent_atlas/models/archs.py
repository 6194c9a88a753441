"""The architecture registry without torch: each arch's parameters, their defaults, derived sizes.

Snakemake's DAG code needs a model's kind and latent size (which figures to draw) before any
model exists; this module answers that without importing torch. `latent_atlas.models.networks`
builds the networks from the parameters resolved here. Defaults come from the config schema only:
`$defs/arch_params` (each arch's `params`) and `$defs/model/properties/extract`.
"""

from __future__ import annotations

from typing import Any, Mapping

from latent_atlas.schema import defaults, schema_node, with_defaults

# Each arch's `params` defaults (config `models.<name>.params`), in the schema's key order, which
# is the order of the resolved params stored in model.pt; keys not listed are errors.
ARCH_DEFAULTS: dict[str, dict[str, Any]] = defaults("#/$defs/arch_params")

AUTOENCODER_ARCHS = ("dense_ae", "dense_vae", "conv_ae", "conv_vae", "conv1d_ae", "conv1d_vae")
VAE_ARCHS = ("dense_vae", "conv_vae", "conv1d_vae")
# An autoencoder's `output`: sigmoid (outputs in [0, 1], BCE loss) or linear (unbounded, Gaussian loss).
OUTPUTS = tuple(schema_node("#/$defs/model/properties/params/properties/output")["enum"])
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
    if arch in ("cnn_classifier", "conv1d_ae", "conv1d_vae") and not out["channels"]:
        raise ValueError(f"arch {arch!r}: params.channels needs at least one conv block")
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
    if "output" in out and out["output"] not in OUTPUTS:
        raise ValueError(
            f"arch {arch!r}: params.output must be one of {', '.join(OUTPUTS)}, got {out['output']!r}"
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


def extract_settings(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A model entry's `extract` settings with the schema's defaults filled in; unknown keys are errors."""
    return with_defaults(spec.get("extract"), "#/$defs/model/properties/extract", "extract")


def model_snapshots(spec: Mapping[str, Any]) -> list[int]:
    """The epochs after which training keeps the weights (`train.snapshots`; absent: none)."""
    return list((spec.get("train") or {}).get("snapshots") or [])


# --- where a model entry's network comes from (config `models.<name>.source`) ---------------------
SOURCE_FORMATS = ("state_dict", "torch_export", "onnx", "latents")

# What a model entry offers the stages: "network" (images -> latents), "decoder" (latents -> images),
# "head" (features -> logits), "gradients" (through torch). A latents table offers none of them.
OFFERS = ("network", "decoder", "head", "gradients")


def model_source(spec: Mapping[str, Any]) -> str:
    """'train' for a model trained here, else its `source.format`."""
    source = spec.get("source")
    return source["format"] if source else "train"


def source_settings(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A model entry's `source` with the schema's defaults filled in."""
    return with_defaults(spec.get("source"), "#/$defs/model_source", "source")


def model_kind(spec: Mapping[str, Any]) -> str:
    """'autoencoder' or 'classifier' (from `arch`, or `kind` for loaded programs); 'latents' for a
    table of latents without a network."""
    if model_source(spec) == "latents":
        return "latents"
    if spec.get("arch"):
        return arch_kind(spec["arch"])
    return spec["kind"]


def model_offers(spec: Mapping[str, Any]) -> set[str]:
    """The subset of OFFERS that a (checked) model entry provides."""
    fmt, kind = model_source(spec), model_kind(spec)
    if fmt == "latents":
        return set()
    offers = {"network"}
    if fmt in ("train", "state_dict"):
        return offers | {"gradients", "decoder" if kind == "autoencoder" else "head"}
    if fmt == "torch_export":
        offers.add("gradients")
    source = spec["source"]
    if kind == "autoencoder" and source.get("decoder"):
        offers.add("decoder")
    if kind == "classifier" and source.get("head"):
        offers.add("head")
    return offers


def model_latent_size(spec: Mapping[str, Any]) -> int | None:
    """The latent size known from the config alone (built-in archs); None for loaded programs and
    tables (known once they are read)."""
    return latent_size(spec["arch"], spec.get("params")) if spec.get("arch") else None
