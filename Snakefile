# latent-atlas: train models, write their latents, map what they learned, draw every figure.
# Read top to bottom: the stages are included in data-flow order.

import os
import sys

from snakemake.utils import min_version

min_version("9.0")

# This Snakefile and the scripts import the library from src/ (also inside conda envs and on
# cluster nodes). current_basedir: where another workflow uses this one as a module, basedir is
# the other workflow's folder.
_src = os.path.join(workflow.current_basedir, "src")
sys.path.insert(0, _src)
_pythonpath = (_src, os.environ.get("PYTHONPATH"))
os.environ.update(PYTHONPATH=os.pathsep.join(p for p in _pythonpath if p))


# The default config is the main job; `--configfile my.yaml` replaces it (not merged into it).
if not config:

    configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/geometry.smk"
include: "workflow/rules/explain.smk"
include: "workflow/rules/importance.smk"
include: "workflow/rules/featureviz.smk"
include: "workflow/rules/atlas.smk"
include: "workflow/rules/compare.smk"
include: "workflow/rules/attributes.smk"
include: "workflow/rules/anomaly.smk"
include: "workflow/rules/figures.smk"


rule all:
    default_target: True
    input:
        all_targets,
