# Input functions, settings and targets of the featureviz stage (its rules: featureviz.smk).

FV = config["featureviz"]


# Shared optimisation settings (params of every job: a change reruns them).
FV_OPTIMISER = {
    key: FV[key] for key in ("lr", "output_objective", "clip_regulariser_gradients")
}


FV_DIR = "results/{dataset}/{model}/featureviz"


FV_FIG = "results/figures/{dataset}/{model}/featureviz"


def featureviz_figure_stems():
    """What each featureviz model draws: figure stems under results/figures/{dataset}/{model}/."""
    stems = ["unregularised", "adversarial", "adversarial_success", "tv_sweep"]
    stems.append("tv_l1_grid_output")
    if FV["tv_l1_grid"]["hidden_layer"] is not None:
        stems.append("tv_l1_grid_hidden")
    stems += [f"gallery_layer{layer}" for layer in FV["gallery"]["layers"]]
    stems += ["dead_neurons", "coactivation"]
    return stems


def featureviz_figure(stem, caption):
    """A figure output of rule plot_featureviz, in every format, with its report caption."""
    return figure_output(
        f"{FV_FIG}_{stem}", f"featureviz_{caption}", "Feature visualisation", "{model}"
    )


def featureviz_optional_figures(figure):
    """The figures whose presence depends on the config: the hidden TV x L1 panel, the galleries."""
    out = {}
    if FV["tv_l1_grid"]["hidden_layer"] is not None:
        out["tv_l1_grid_hidden"] = figure("tv_l1_grid_hidden", "tv_l1_grid_hidden")
    for layer in FV["gallery"]["layers"]:
        out[f"gallery_layer{layer}"] = figure(f"gallery_layer{layer}", "gallery")
    return out


def featureviz_plot_inputs(wildcards):
    """Every table (and image array) rule plot_featureviz draws, by name."""
    d = FV_DIR.format(dataset=wildcards.dataset, model=wildcards.model)
    out = {}
    for name in ("unregularised", "adversarial", "tv_sweep", "tv_l1_grid"):
        out[f"{name}_table"] = f"{d}/{name}.parquet"
        out[f"{name}_images"] = f"{d}/{name}.npz"
    out["adversarial_success"] = f"{d}/adversarial_success.parquet"
    for layer in FV["gallery"]["layers"]:
        out[f"gallery_layer{layer}_table"] = f"{d}/gallery_layer{layer}.parquet"
        out[f"gallery_layer{layer}_images"] = f"{d}/gallery_layer{layer}.npz"
    for name in ("dead_summary", "coactivation_clusters", "coactivation_matrix"):
        out[name] = f"{d}/{name}.parquet"
    return out


@register_targets
def featureviz_targets():
    out = []
    for model in models_of("featureviz", kinds={"classifier"}):
        dataset = MODELS[model]["dataset"]
        d = f"results/{dataset}/{model}/featureviz"
        out += [f"{d}/adversarial_success.parquet", f"{d}/dead_summary.parquet"]
        for stem in featureviz_figure_stems():
            out += figure_paths(f"results/figures/{dataset}/{model}/featureviz_{stem}")
    return out
