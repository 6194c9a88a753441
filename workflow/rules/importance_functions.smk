# Input functions, settings and targets of the importance stage (its rules: importance.smk).

from latent_atlas.io import read_json

IMPORTANCE = config["importance"]


def importance_block_paths(wildcards):
    """Every shard of a model: one per pixel block, counted from the plan (checkpoint)."""
    plan_file = checkpoints.importance_plan.get(**wildcards).output[0]
    blocks = [f"{b:04d}" for b in range(read_json(plan_file)["n_blocks"])]
    return outputs(
        rules.importance_block,
        dataset=wildcards.dataset,
        model=wildcards.model,
        block=blocks,
    )


def importance_logits(wildcards):
    """Whether a model's shards also compute importance on the class outputs: classifiers, when
    `importance.classifier_logits` is set (autoencoders have none, and do not read the key).
    """
    return is_classifier(wildcards.model) and IMPORTANCE["classifier_logits"]


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
        for producer in final:
            out += outputs(producer, dataset=MODELS[model]["dataset"], model=model)
    return out
