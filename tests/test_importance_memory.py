"""importance.memory_mb: the block's memory plan (importance.memory) sizes the local path's cache
chunks and the other paths' rows per pass, and never changes a result."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from latent_atlas.importance.engine import model_stack, pixel_importance
from latent_atlas.importance.local import CACHE_FACTOR, cache_per_image
from latent_atlas.importance.memory import MB, ROWS_FACTOR, current_rss, forward_row_bytes, plan_block
from latent_atlas.models.networks import build_model


def test_forward_row_bytes_counts_what_grows_with_the_rows():
    """Input (1x8x8 float32: 256 B) plus the widest consecutive pair per row: the conv's output
    and the ReLU's (4x8x8 each: 1,024 B); the Linear's weight (5 x 256) grows with no row."""
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(256, 5)).eval()
    assert forward_row_bytes(net, (1, 8, 8)) == 256 + 1024 + 1024
    assert forward_row_bytes(lambda x: torch.from_numpy(np.zeros((len(x), 3), np.float32)), (1, 8, 8)) is None


@pytest.fixture(scope="module")
def conv_ae():
    torch.manual_seed(0)
    return build_model("conv_ae", (1, 28, 28), 10, {"channels": [8, 16, 16, 32], "latent_dim": 8}).eval()


def test_a_budget_sizes_the_local_chunks_and_the_rows_and_changes_no_value(conv_ae, monkeypatch):
    """With the budget spent before the block, the plan falls back to its smallest working set
    (made small here: 12 images' cache, or a few hundred rows), and says so; the values are those
    of the run without a budget, bit for bit."""
    import latent_atlas.importance.memory as memory

    images = np.random.default_rng(0).random((60, 1, 28, 28), dtype=np.float32)
    pixels = [0, 200, 405, 783]
    stack, _ = model_stack(conv_ae, "latent")
    per_image = cache_per_image(stack, (1, 28, 28))
    monkeypatch.setattr(memory, "MIN_WORK", int(12.5 * per_image * CACHE_FACTOR))
    runs = {}
    for method, st in (("local", stack), ("rows", None)):
        free = pixel_importance(conv_ae.encode, images, pixels, n_perm=2, seed=1, stack=st, method=method)
        tight = pixel_importance(conv_ae.encode, images, pixels, n_perm=2, seed=1, stack=st, method=method,
                                 memory_mb=128)  # this process already holds more
        assert free.memory_plan is None and tight.memory_plan is not None
        np.testing.assert_array_equal(tight.per_permutation, free.per_permutation)
        runs[method] = tight.memory_plan
    local, rows = runs["local"], runs["rows"]
    assert local.cache_bytes == 12 * per_image  # chunks of 12 of the 60 images
    row = ROWS_FACTOR * forward_row_bytes(conv_ae.encode, (1, 28, 28))
    assert rows.batch_size == int(memory.MIN_WORK // row) < len(images) * 2
    assert "over importance.memory_mb 128" in rows.note and rows.predicted_peak_mb > 128
    held = current_rss() / MB
    roomy = plan_block(held + 4000, "rows", conv_ae.encode, (1, 28, 28), 60, 512)
    assert roomy.batch_size == 512 and roomy.note == ""  # batch_size stays the upper bound


MEMORY_PROBE = """
import sys, numpy as np, torch
from latent_atlas.importance.engine import model_stack, pixel_importance
from latent_atlas.importance.memory import MB, current_rss, peak_rss
from latent_atlas.models.networks import build_model
size, method = int(sys.argv[1]), sys.argv[2]
torch.manual_seed(0)
torch.set_num_threads(1)
model = build_model("conv_ae", (3, size, size), 2, {"channels": [32, 64, 128, 256], "latent_dim": 64}).eval()
images = np.random.default_rng(0).random((600 if method == "local" else 100, 3, size, size), dtype=np.float32)
stack = model_stack(model, "latent")[0] if method == "local" else None
budget = current_rss() / MB + 400  # 400 MB of work beyond what the process holds
pixels = np.arange(size * size // 2, size * size // 2 + (8 if method == "local" else 2))
r = pixel_importance(model.encode, images, pixels, n_perm=2, seed=0, stack=stack, method=method, device="cpu",
                     memory_mb=budget)
print(r.memory_plan.rss_mb, r.memory_plan.predicted_peak_mb, peak_rss() / MB)
"""


@pytest.mark.slow
@pytest.mark.parametrize("method", ["local", "rows"])
def test_the_plans_predicted_peak_is_within_20_percent_of_the_measured_one(method):
    """A block in a fresh process at two image sizes, with 400 MB of work planned: the plan's
    predicted peak against the measured one (VmHWM: getrusage's survives exec, so a process started
    from this large test run would report the run's size; benchmarks/importance.py --memory
    measures the study AE)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
    for size in (48, 64):
        out = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(size), method], env=env, check=True,
                             capture_output=True, text=True).stdout.split()
        held, predicted, measured = map(float, out)
        assert measured - held > 200, (size, held, measured)  # the block's work is a real part of the peak
        assert 0.8 <= predicted / measured <= 1.2, (size, method, held, predicted, measured)
