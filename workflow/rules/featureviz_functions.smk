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
