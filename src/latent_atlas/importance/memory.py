"""A memory budget for a block of permutation importance (`importance.memory_mb`).

The budget is the job's peak resident memory. What the job already holds when the block starts
(the libraries, the model, the evaluation images: its current RSS) is subtracted, and the rest
sizes the path's working set:

- the local path (`local.cache_plan`): the images per chunk of the activation cache, whose size
  per image the stack knows layer by layer; the job grows by about `local.CACHE_FACTOR` times the
  chunk's cache;
- the other paths (rows, rank-1, naive): the rows per forward pass. Probe forward passes record
  the size of every tensor the network computes (a torch dispatch mode, so they see built-in
  modules and torch.export programs alike); a row needs its input, and at the widest
  point of the network one layer's input and output, times `ROWS_FACTOR`. `importance.batch_size` stays the upper
  bound (its two passes of 1 and 2 images tell the tensors that grow with the rows from the
  weights). onnxruntime graphs compute outside torch: their rows stay at `batch_size`.

Results depend on the chunking only through the order of float64 sums (every permutation comes
from its own stream): a 96x96 block under memory_mb 1,500 and under the former 1 GiB chunks
differs by 2e-16 of its largest value. `memory_mb` is among the block rule's params, so changing
it reruns the blocks. The plan's predicted peak (current RSS + working set) is logged, and
benchmarks/importance.py --memory compares it with the measured peak.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from latent_atlas.importance.local import CACHE_FACTOR, cache_plan

MB = 1 << 20
# The rows path's memory per row over `forward_row_bytes`'s count (the gathered and the cloned copy
# of the input rows, the allocator's and the convolutions' working space): measured 1.39-1.56 on the
# 96x96 study AE at 64x64 and 96x96 (`python benchmarks/importance.py --memory`, docs/benchmarks.md).
ROWS_FACTOR = 1.45
MIN_WORK = 64 * MB  # the working set when the budget is already spent before the block


def peak_rss() -> int:
    """The process's peak resident memory (bytes): /proc/self/status VmHWM, else getrusage.

    VmHWM belongs to the address space, which exec replaces; getrusage's ru_maxrss survives exec
    on Linux, so in a process started from a large one (a test run) it reports the parent's size.
    """
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def current_rss() -> int:
    """The process's resident memory now (bytes): /proc/self/statm, else the peak so far."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class _Sizes(TorchDispatchMode):
    """Records the bytes of every tensor an operation returns."""

    def __init__(self):
        super().__init__()
        self.sizes: list[int] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not func.is_view and func.overloadpacket not in _NOT_COMPUTED:
            self.sizes += [t.numel() * t.element_size() for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
        return out


aten = torch.ops.aten
# Views share their input's memory; these copy or hand tensors over (onnxruntime's input and
# output), they compute nothing of the network.
_NOT_COMPUTED = {aten.detach, aten.alias, aten._to_copy, aten.lift_fresh, aten.lift_fresh_copy, aten.clone}


def forward_row_bytes(model_fn, image_shape, device=None) -> int | None:
    """Bytes one image row needs in a forward pass of `model_fn`: its input (the permuted copy)
    plus the widest consecutive pair of tensors the network computes per row. Two probe passes (1
    and 2 images) separate what grows with the rows from what does not (weights and their
    transposes); None when the function computes nothing in torch (an onnxruntime graph)."""
    runs = []
    for rows in (1, 2):
        x, recorder = torch.zeros((rows, *image_shape), device=device or "cpu"), _Sizes()
        with torch.no_grad(), recorder:
            model_fn(x)
        runs.append(recorder.sizes)
    if not runs[0] or len(runs[0]) != len(runs[1]):
        return None
    sizes = [max(0, b - a) for a, b in zip(*runs)]
    first = 4 * int(torch.Size(image_shape).numel())
    widest = max(a + b for a, b in zip([first, *sizes], sizes))
    return first + widest


@dataclass
class MemoryPlan:
    """How a block fits `memory_mb`: rows per forward pass (the non-local paths), the local path's
    cache bytes per chunk of images (None on the other paths), and the predicted peak."""
    batch_size: int
    cache_bytes: int | None
    rss_mb: float
    work_mb: float
    predicted_peak_mb: float
    note: str = ""


def plan_block(memory_mb: float, method: str, model_fn, image_shape, n_images: int, batch_size: int,
               stack=None, device=None, held_bytes: int = 0) -> MemoryPlan:
    """The memory plan of one block on `method`'s path (module docstring); `held_bytes`: what the
    block will hold beside the path (the per-image terms of `inference`), counted as held."""
    rss = current_rss() + held_bytes
    work = max(MIN_WORK, memory_mb * MB - rss)
    note = "" if memory_mb * MB - rss >= MIN_WORK else \
        f"the job holds {rss / MB:.0f} MB before the block, over importance.memory_mb {memory_mb:g}"
    if method == "local":
        _, used = cache_plan(stack, image_shape, n_images, work, device)
        return MemoryPlan(batch_size, int(used / CACHE_FACTOR), rss / MB, used / MB, (rss + used) / MB, note)
    row = forward_row_bytes(model_fn, image_shape, device)
    if row is None:
        return MemoryPlan(batch_size, None, rss / MB, float("nan"), float("nan"),
                          note or "the network runs outside torch: rows per pass stay at importance.batch_size")
    row = ROWS_FACTOR * row
    rows = max(1, min(int(batch_size), int(work // row)))
    return MemoryPlan(rows, None, rss / MB, rows * row / MB, (rss + rows * row) / MB, note)
