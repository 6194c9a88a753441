# Input functions, settings and targets of the importance stage (its rules: importance.smk).

from latent_atlas.io import read_json
from latent_atlas.selection import selection_inputs, selection_params

IMPORTANCE = config["importance"]
# The evaluation images' selection file and its settings (importance.samples), where set:
# inputs and params of the rules that evaluate (importance_block, latent_importance).
IMPORTANCE_SELECTION_INPUTS = selection_inputs(IMPORTANCE)
IMPORTANCE_SELECTION_PARAMS = selection_params(IMPORTANCE, "importance")
# The main analysis (importance/) and each variant (importance_<name>/).
ANALYSIS = "importance(?:_[a-z0-9]+)?"
VARIANT_KEYS = ("groups", "patch", "superpixel", "permutation", "conditional")


def analysis_settings(analysis):
    """The grouping and permutation settings of an analysis: the main one's, with a variant's
    own (importance.variants.<name>) over them."""
    name = analysis.partition("_")[2]
    if name and name not in IMPORTANCE["variants"]:
        raise ValueError(f"no importance variant {name!r} (importance.variants)")
    own = IMPORTANCE["variants"][name] if name else {}
    return {key: own.get(key, IMPORTANCE[key]) for key in VARIANT_KEYS}


def importance_setting(key):
    """A params function: the analysis's value of `key` (analysis_settings)."""

    def setting(wildcards):
        return analysis_settings(wildcards.analysis)[key]

    return setting


def importance_used(key, when):
    """A params function: the analysis's value of `key` where its setting `when` = (key, value)
    holds, else None (e.g. the patch settings of a patch analysis only: others do not read them).
    """

    def setting(wildcards):
        settings = analysis_settings(wildcards.analysis)
        return settings[key] if settings[when[0]] == when[1] else None

    return setting


def importance_block_paths(wildcards):
    """Every shard of a model: one per pixel block, counted from the plan (checkpoint)."""
    plan_file = checkpoints.importance_plan.get(**wildcards).output[0]
    blocks = [f"{b:04d}" for b in range(read_json(plan_file)["n_blocks"])]
    return outputs(
        rules.importance_block,
        dataset=wildcards.dataset,
        model=wildcards.model,
        analysis=wildcards.analysis,
        block=blocks,
    )


def importance_logits(wildcards):
    """Whether a model's shards also compute importance on the class outputs: classifiers, when
    `importance.classifier_logits` is set (autoencoders have none, and do not read the key).
    """
    return is_classifier(wildcards.model) and IMPORTANCE["classifier_logits"]


def importance_variant_tables(wildcards):
    """The main analysis's pixel table, then each variant's (importance.variants order)."""
    return [
        f"results/{wildcards.dataset}/{wildcards.model}/{analysis}/pixel_importance.parquet"
        for analysis in [
            "importance",
            *(f"importance_{v}" for v in IMPORTANCE["variants"]),
        ]
    ]


def importance_variant_labels(wildcards):
    """Column titles of the variants figure: the main analysis, then each variant by name."""
    return ["main", *IMPORTANCE["variants"]]


def importance_figure(what, caption=None):
    """A figure output of rule plot_importance, in every format, with its report caption."""
    return figure_output(
        f"results/figures/{{dataset}}/{{model}}/importance_{what}",
        f"importance_{caption or what}",
        "Permutation importance",
        "{model}",
    )


@register_targets
def importance_targets():
    """Each importance model's tables, explorer and figures (not its plan and shards)."""
    out = []
    for model in models_of("importance"):
        final = [
            rules.importance_gather,
            rules.latent_importance,
            rules.importance_explorer,
            rules.plot_importance,
        ]
        if is_classifier(model) and IMPORTANCE["classifier_logits"]:
            final.append(rules.importance_gather_logits)
        if IMPORTANCE["variants"]:
            final.append(rules.plot_importance_variants)
        for producer in final:
            out += outputs(
                producer,
                dataset=MODELS[model]["dataset"],
                model=model,
                analysis="importance",
            )
    return out
