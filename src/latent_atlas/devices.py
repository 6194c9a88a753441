"""Where torch computes, and batched inference without gradients: written once for every stage.

torch is imported when a function here is first called, so modules that import this one stay
cheap to import for jobs that never touch a model; it is imported through
`runtime.configure_torch`, so the job's seed, thread count and deterministic algorithms apply
before any torch computation, whichever stage touches torch first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np

from latent_atlas.runtime import configure_torch

if TYPE_CHECKING:
    torch = configure_torch()


def default_device() -> "torch.device":
    """CUDA when torch sees a GPU (under the GPU pool: the job's own slot), else the CPU."""
    torch = configure_torch()

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(name: str, key: str = "device") -> "torch.device":
    """A configured device name (`auto`, `cpu`, `cuda`, `cuda:N`) as a torch device.

    `key` is the config key the name came from, for the error when CUDA is asked for but absent.
    """
    torch = configure_torch()

    if name == "auto":
        return default_device()
    if str(name).startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"{key} is {name!r} but no CUDA device is available")
    return torch.device(name)


def model_device(model) -> "torch.device":
    """The device of a module's parameters (or of the module behind a bound method such as
    `model.encode`); the default device for a function without parameters."""
    torch = configure_torch()

    module = getattr(model, "__self__", model)
    if isinstance(module, torch.nn.Module):
        for p in module.parameters():
            return p.device
        return torch.device("cpu")
    return default_device()


def batches(images: np.ndarray, batch_size: int, device) -> Iterator["torch.Tensor"]:
    """Consecutive row batches of `images` (N, ...) as contiguous tensors on `device`."""
    torch = configure_torch()

    for start in range(0, len(images), batch_size):
        yield torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size])).to(device)


def infer(fn: Callable[["torch.Tensor"], "torch.Tensor"], images: np.ndarray, batch_size: int = 1024,
          device=None) -> np.ndarray:
    """`fn` applied to `images` (N, ...) in batches, without gradients: (N, ...) float32 on the CPU.

    `device` defaults to the device of the module behind `fn`. An empty input gives an empty array
    whose trailing shape is unknown, (0,); callers that need one check `len(images)` first.
    """
    torch = configure_torch()

    device = model_device(fn) if device is None else torch.device(device)
    with torch.no_grad():
        out = [fn(x).float().cpu().numpy() for x in batches(images, batch_size, device)]
    return np.concatenate(out).astype(np.float32, copy=False) if out else np.zeros((0,), np.float32)
