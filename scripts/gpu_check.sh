# The GPU check run on a lent NVIDIA machine (the device tool): the model, anomaly, importance,
# store and tabular tests with CUDA as the default device, then scripts/gpu_compare.py (a series
# anomaly run on CUDA and on the CPU). The machine has torch but not every dependency: carry
# py3.12 wheels of pyod, jsonschema (+ referencing, rpds-py, jsonschema-specifications),
# onnx2torch, umap-learn, pynndescent and openTSNE in .whl/ (git-ignored). Run from the repo root.
set -o pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 MPLBACKEND=Agg
nvidia-smi -L; python3 -c "import torch; print('torch', torch.__version__, torch.cuda.is_available())"
timeout 330 python3 -m pytest -q -p no:cacheprovider -m "not slow" tests/test_models_series.py tests/test_training.py tests/test_anomaly_jobs.py tests/test_anomaly.py tests/test_importance.py tests/test_store_kinds.py tests/test_tabular.py 2>&1 | tee $OUT/pytest.log | tail -30
timeout 150 python3 scripts/gpu_compare.py 2>&1 | tee $OUT/compare.txt
