# Input functions, settings and targets of the explain stage (its rules: explain.smk).

from latent_atlas.selection import explained_inputs, explained_samples

EXPLAIN = config["explain"]


def explain_settings(section, *keys):
    """The `keys` of `explain.<section>` (the part of the section a rule reads)."""
    return {key: EXPLAIN[section][key] for key in keys}


EXPLAIN_FIGURES = ["maps", "correlation", "ridge", "pca", "umap_features", "samples"]


def explain_figure(what):
    """A figure output of rule plot_explain, in every format, with its report caption."""
    return figure_output(
        f"results/figures/{{dataset}}/{{model}}/explain_{what}",
        f"explain_{what}",
        "Explain",
        "{model}",
    )


@register_targets
def explain_targets():
    """Every output of the stage's rules, for each model of `explain.models`."""
    stage = [
        rules.explain_maps,
        rules.explain_quality,
        rules.explain_features,
        rules.explain_ridge,
        rules.explain_samples,
        rules.plot_explain,
    ]
    return [
        path
        for model in models_of("explain")
        for rule in stage
        for path in outputs(rule, dataset=MODELS[model]["dataset"], model=model)
    ]
