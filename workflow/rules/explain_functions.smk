# Input functions, settings and targets of the explain stage (its rules: explain.smk).

EXPLAIN = config["explain"]


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
    out = []
    for model in models_of("explain"):
        d = model_dir(model)
        figures = d.replace("results/", "results/figures/", 1)
        out.append(f"{d}/explain/quality.parquet")
        out.append(f"{d}/explain/ridge_scores.parquet")
        for what in EXPLAIN_FIGURES:
            out += figure_paths(f"{figures}/explain_{what}")
    return out
