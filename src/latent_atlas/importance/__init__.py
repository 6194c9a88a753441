"""The importance stage (docs/architecture.md: compute modules, figures.py, jobs.py)."""
