"""scripts/compare_results.py: the byte-for-byte comparison of two results trees."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT

SCRIPT = ROOT / "scripts" / "compare_results.py"


def _tree(root, log_text="a", seconds="1.5"):
    (root / "figures").mkdir(parents=True)
    (root / "figures" / "f.png").write_bytes(b"\x89PNG same")
    (root / "logs").mkdir()
    (root / "logs" / "x.log").write_text(log_text)
    (root / "m").mkdir()
    (root / "m" / "train_log.tsv").write_text(f"epoch\tloss\tseconds\n0\t0.5\t{seconds}\n")


def _run(a, b):
    return subprocess.run([sys.executable, str(SCRIPT), str(a), str(b)], capture_output=True, text=True)


def test_equal_trees_ignore_logs_and_training_wall_time(tmp_path):
    _tree(tmp_path / "a")
    _tree(tmp_path / "b", log_text="other", seconds="9.9")
    proc = _run(tmp_path / "a", tmp_path / "b")
    assert proc.returncode == 0 and proc.stdout.strip() == "identical: 2 files"


def test_a_changed_byte_or_a_missing_file_is_reported(tmp_path):
    _tree(tmp_path / "a")
    _tree(tmp_path / "b")
    (tmp_path / "b" / "figures" / "f.png").write_bytes(b"\x89PNG diff")
    (tmp_path / "b" / "m" / "train_log.tsv").write_text("epoch\tloss\tseconds\n0\t0.6\t1.5\n")
    (tmp_path / "a" / "extra.parquet").write_bytes(b"x")
    proc = _run(tmp_path / "a", tmp_path / "b")
    assert proc.returncode == 1
    assert proc.stdout.splitlines() == [f"only in {tmp_path / 'a'}: extra.parquet",
                                        "differs: figures/f.png", "differs: m/train_log.tsv"]
