# Config validation, naming of results, and the registry of every stage's targets.

from snakemake.exceptions import WorkflowError

from latent_atlas.config import (
    ConfigError,
    check_config,
    model_entries,
    schema_errors,
    section_refusal,
    validate_config,
)
import latent_atlas.rules as rules_lib
from latent_atlas.models.archs import model_kind, model_offers, model_source
from latent_atlas.schema import SCHEMA_PATH

# Schema problems are reported with their key paths first; validate_config (Snakemake's
# validate(), on the schema read once) then fills the defaults.
_errors = schema_errors(config, SCHEMA_PATH)
if _errors:
    raise WorkflowError("Invalid config:\n  " + "\n  ".join(_errors))
validate_config(config)
try:
    check_config(config, results="results")
except ConfigError as err:
    raise WorkflowError(f"Invalid config: {err}") from None


FIG_FORMATS = config["figures"]["formats"]
# Every model entry by name, and each training snapshot, "<model>@<epoch>", as its model's entry
# (config.model_entries): a section's `models:` list may name either. The stages' defaults and
# targets iterate config["models"]: a snapshot runs what a section names it for.
MODELS = model_entries(config["models"])
CONFIG_HASH = rules_lib.run_config_hash(config)


wildcard_constraints:
    dataset="[A-Za-z0-9][A-Za-z0-9_-]*",
    model="[A-Za-z0-9][A-Za-z0-9_-]*(?:@[0-9]+)?",


def model_dir(model):
    """results/{dataset}/{model}: where a model and everything computed from it lives."""
    return f"results/{MODELS[model]['dataset']}/{model}"


def models_of(section):
    """Models an analysis section runs on: its `models:` list (default: every configured model
    that can run it, `config.section_refusal`; snapshots only where named)."""
    names = config.get(section, {}).get("models")
    if names is None:
        names = [
            m for m in config["models"] if section_refusal(section, MODELS[m]) is None
        ]
    return list(names)


def fig(stem):
    """Output list of a figure rule: the stem in every format (wildcards kept)."""
    return expand(f"{stem}.{{ext}}", ext=FIG_FORMATS, allow_missing=True)


def figure_output(stem, caption, category, subcategory=None):
    """A figure output of a plot rule: `stem` in every format, in the report under `category`
    with the caption workflow/report/<caption>.rst."""
    extra = {"subcategory": subcategory} if subcategory else {}
    return report(
        fig(stem), caption=f"../report/{caption}.rst", category=category, **extra
    )


def outputs(rule, **wildcards):
    """Every output file of `rule` (`rules.<name>`) for these wildcard values: stages derive their
    targets from their rules' outputs instead of restating file lists."""
    return [path for pattern in rule.output for path in expand(pattern, **wildcards)]


# Each stage registers a function returning its final files (tables and figures);
# `rule all` asks for all of them, the figure manifest for those under results/figures/.
_TARGET_FUNCTIONS = []


def register_targets(function):
    _TARGET_FUNCTIONS.append(function)
    return function


def stage_targets():
    return [path for function in _TARGET_FUNCTIONS for path in function()]


def all_figures(wildcards=None):
    return sorted(p for p in stage_targets() if p.startswith("results/figures/"))


def all_targets(wildcards):
    return stage_targets() + ["results/figures/MANIFEST.tsv"]


def producing_rule(path):
    """Name of the rule whose output pattern matches `path` (for the figure manifest)."""
    names = [r.name for r in workflow.rules if r.name != "all" and r.is_producer(path)]
    return names[0] if names else "unknown"


def figure_rules(wildcards):
    return {path: producing_rule(path) for path in all_figures()}
