"""The figures stage: the manifest of every figure (manifest.py; its rule: jobs.figure_manifest)."""
