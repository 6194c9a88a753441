# Input functions, settings and targets of the importance stage (its rules: importance.smk).

from latent_atlas.io import read_json

IMPORTANCE = config["importance"]


def importance_models():
    return models_of("importance")


def importance_block_paths(wildcards):
    """Every shard of a model: one per pixel block, counted from the plan (checkpoint)."""
    plan_file = checkpoints.importance_plan.get(**wildcards).output[0]
    n_blocks = read_json(plan_file)["n_blocks"]
    d = f"results/{wildcards.dataset}/{wildcards.model}/importance/blocks"
    return [f"{d}/block_{b:04d}.parquet" for b in range(n_blocks)]


def importance_figure(what, caption=None):
    """A figure output of rule plot_importance, in every format, with its report caption."""
    return figure_output(
        f"results/figures/{{dataset}}/{{model}}/importance_{what}",
        f"importance_{caption or what}",
        "Permutation importance",
        "{model}",
    )


def importance_figure_stems(model):
    d = f"results/figures/{MODELS[model]['dataset']}/{model}"
    stems = ["importance_directional", "importance_dimension", "importance_classes"]
    stems += [f"importance_class_{c}" for c in IMPORTANCE["classes"]]
    return [f"{d}/{stem}" for stem in stems]


@register_targets
def importance_targets():
    out = []
    for model in importance_models():
        d = f"{model_dir(model)}/importance"
        out += [
            f"{d}/pixel_importance.parquet",
            f"{d}/latent_importance.parquet",
            f"{d}/explorer.html",
        ]
        if is_classifier(model) and IMPORTANCE["classifier_logits"]:
            out.append(f"{d}/pixel_importance_logits.parquet")
        for stem in importance_figure_stems(model):
            out += figure_paths(stem)
    return out
