"""Synthetic data in a source's own layout, for tests and benchmarks (no download, seeded).

`write_celeba_folder` writes what the `celeba` source reads: `img_align_celeba/` of 178x218 RGB
JPEGs, `list_attr_celeba.txt` with CelebA's 40 attribute names and `list_eval_partition.txt`.
The pictures are smooth random colour fields whose brightness follows the `Male` attribute and
whose lower half reddens with `Smiling`, so a model has something to learn.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose "
    "Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee "
    "Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard "
    "Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair "
    "Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young"
).split()
CELEBA_WIDTH, CELEBA_HEIGHT = 178, 218
# CelebA's own train share of train + test (162,770 of 182,732).
TRAIN_SHARE = 162770 / 182732


def _write_jpeg(args) -> None:
    path, seed, male, smiling = args
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(40, 200, size=(11, 9, 3)) + (40 if male else -40)
    if smiling:
        coarse[6:, :, 0] += 50
    img = Image.fromarray(np.clip(coarse, 0, 255).astype(np.uint8)).resize(
        (CELEBA_WIDTH, CELEBA_HEIGHT), Image.Resampling.BICUBIC)
    img.save(path, format="JPEG", quality=90)


def write_celeba_folder(folder, n: int, seed: int = 0, workers: int = 1) -> Path:
    """Write a CelebA-layout folder of `n` images (train first, then test; no 'valid' partition).

    Returns the folder. Files are `000001.jpg` ... like CelebA's; attribute values are -1 / 1.
    """
    folder = Path(folder)
    images = folder / "img_align_celeba"
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    attr = np.where(rng.random((n, len(CELEBA_ATTRIBUTES))) < 0.5, 1, -1)
    names = [f"{i + 1:06d}.jpg" for i in range(n)]
    n_train = int(round(n * TRAIN_SHARE))
    male, smiling = CELEBA_ATTRIBUTES.index("Male"), CELEBA_ATTRIBUTES.index("Smiling")
    jobs = [(str(images / name), [seed, i], attr[i, male] > 0, attr[i, smiling] > 0)
            for i, name in enumerate(names)]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_write_jpeg, jobs, chunksize=256))
    else:
        for job in jobs:
            _write_jpeg(job)
    rows = [f"{name} " + " ".join(f"{v:2d}" for v in attr[i]) for i, name in enumerate(names)]
    (folder / "list_attr_celeba.txt").write_text(
        f"{n}\n{' '.join(CELEBA_ATTRIBUTES)}\n" + "\n".join(rows) + "\n")
    (folder / "list_eval_partition.txt").write_text(
        "".join(f"{name} {0 if i < n_train else 2}\n" for i, name in enumerate(names)))
    return folder

