# Input functions, settings and targets of the featureviz stage (its rules: featureviz.smk).

from latent_atlas.selection import selection_inputs, selection_params

FV = config["featureviz"]
# The gallery's pool of real starts (featureviz.samples), where set: rule featureviz_gallery's.
FV_SELECTION_INPUTS = selection_inputs(FV)
FV_SELECTION_PARAMS = selection_params(FV, "featureviz")


# Shared optimisation settings (params of every job: a change reruns them).
# tv_step only where set (absent = the study's subgradient step; see the schema).
FV_OPTIMISER = {
    key: FV[key]
    for key in ("lr", "output_objective", "clip_regulariser_gradients", "tv_step")
    if key in FV
}


def featureviz_settings(section, but):
    """`featureviz.<section>` without the key `but`, which its compute job does not read."""
    return {key: value for key, value in FV[section].items() if key != but}


FV_DIR = "results/{dataset}/{model}/featureviz"


FV_FIG = "results/figures/{dataset}/{model}/featureviz"


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
    """Every table (and image array) plot_featureviz draws, by name: outputs of the stage's
    compute rules for this model."""

    def path(job_rule, name, **extra):
        pattern = getattr(job_rule.output, name)
        return expand(
            pattern, dataset=wildcards.dataset, model=wildcards.model, **extra
        )[0]

    out = {}
    for name in ("unregularised", "adversarial", "tv_sweep", "tv_l1_grid"):
        job_rule = getattr(rules, f"featureviz_{name}")
        out[f"{name}_table"] = path(job_rule, "table")
        out[f"{name}_images"] = path(job_rule, "images")
    out["adversarial_success"] = path(rules.featureviz_adversarial, "success")
    for layer in FV["gallery"]["layers"]:
        for kind in ("table", "images"):
            out[f"gallery_layer{layer}_{kind}"] = path(
                rules.featureviz_gallery, kind, layer=layer
            )
    for name in ("dead_summary", "coactivation_clusters", "coactivation_matrix"):
        out[name] = path(rules.featureviz_census, name)
    return out


@register_targets
def featureviz_targets():
    """Every featureviz table and figure of each classifier, from the outputs of the stage's rules."""
    out = []
    for model in models_of("featureviz"):
        wildcards = {"dataset": MODELS[model]["dataset"], "model": model}
        for job_rule in (
            rules.featureviz_unregularised,
            rules.featureviz_adversarial,
            rules.featureviz_tv_sweep,
            rules.featureviz_tv_l1_grid,
            rules.featureviz_census,
            rules.plot_featureviz,
        ):
            out += outputs(job_rule, **wildcards)
        out += outputs(
            rules.featureviz_gallery, layer=FV["gallery"]["layers"], **wildcards
        )
    return out
