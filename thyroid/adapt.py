"""Adapts an exported model to a site's own labelled images and writes the adapted export.

    python -m thyroid.adapt --model=OUT --image_dir=SITE_IMAGES --output_dir=ADAPTED
    python -m thyroid.adapt --model=OUT --csv=SITE.csv --output_dir=ADAPTED

The site's images (a folder per class, or a CSV of path,label[,patient_id]; DICOM too) are
grouped by patient, patients sharing a byte-identical image joined (without patient ids every
image is its own group). Five outer by three inner grouped folds measure the adaptation: the
inner folds choose between recalibrating the export's P(malignant) and a new logistic head on
its pooled features (then recalibrated), by log-loss, the map fitted on inner out-of-fold
predictions; each outer test part is scored by what its training part chose. The command
prints AUC, calibration and net benefit before and after, then writes ``--output_dir``: the
export's model files, its adaptation (fitted on every image) in metadata.json ``adaptation``
with ``adapted_from`` and the figures, the same decision risk as the export, a heat map of the
adapted model's own head, a model card that says it was adapted and, when the export carries a
shift reference, that reference extended with the site's images. ``predict`` and ``serve`` use
the adapted export as any other. Fewer than 20 labelled images, or fewer than 5 groups of a
class, are refused (exit 2).
"""

from absl import flags

from thyroid import cli

cli.require_research_install("adapt")  # before the imports that need it

from thyroid.datasets.images import DEFAULT_MAX_PIXELS

COMMAND = "adapt"
MAX_BOOTSTRAP = 100_000


def define_flags(fv):
    flags.DEFINE_string("model", None, "The export to adapt (its folder, or its model.tflite).",
                        flag_values=fv)
    flags.DEFINE_string("image_dir", None, "The site's labelled images, one folder per class "
                        "(benign/malignant or 0/1; DICOM too).", flag_values=fv)
    flags.DEFINE_string("csv", None, "The site's labelled images as a CSV of "
                        "path,label[,patient_id] (paths relative to the CSV).", flag_values=fv)
    flags.DEFINE_string("output_dir", None, "Where the adapted export goes (a new folder, or "
                        "one holding only export files).", flag_values=fv)
    flags.DEFINE_integer("seed", 0, "Seed of the folds and of the bootstrap.", lower_bound=0,
                         upper_bound=2**31 - 1, flag_values=fv)
    flags.DEFINE_integer("num_bootstrap", 1000, "Bootstrap resamples (over groups) of the "
                         "intervals.", lower_bound=0, upper_bound=MAX_BOOTSTRAP, flag_values=fv)
    flags.DEFINE_string("checkpoint_dir", "checkpoints", "Where EfficientNet-Lite0's ImageNet "
                        "checkpoint is: needed only when the export carries a shift reference, "
                        "whose features it computes for the site's images.", flag_values=fv)
    flags.DEFINE_integer("max_pixels", DEFAULT_MAX_PIXELS, "Refuse images whose header "
                         "declares more pixels than this.", lower_bound=1, upper_bound=10**9,
                         flag_values=fv)
    flags.mark_flags_as_required(["model", "output_dir"], flag_values=fv)


def site_sources(fv):
    """({kind: path}, {kind: flag}) of the site's images; one of the two flags is needed."""
    import os
    from thyroid.datasets.sources import named_sources
    sources = named_sources(image_dir=fv.image_dir, csv=fv.csv)
    if not sources:
        raise cli.UsageError("image_dir", "", "give the site's labelled images: --image_dir or "
                             "--csv")
    return ({kind: os.path.abspath(path) for kind, path in sources.items()},
            {"folders": "--image_dir", "csv": "--csv"})


def run(fv, args):
    del args
    from thyroid.deploy.site_adaptation import adapt_export
    from thyroid.training.adaptation import AdaptationError
    sources, source_flags = site_sources(fv)
    try:
        adapted = adapt_export(fv.model, sources, fv.output_dir, source_flags, fv.seed,
                               fv.num_bootstrap, fv.checkpoint_dir, fv.max_pixels)
    except AdaptationError as error:  # too few images or groups: the data flag's value
        kind = next(iter(sources))
        raise cli.UsageError(source_flags[kind].lstrip("-"), sources[kind], str(error)) \
            from None
    print("\n".join(adapted.lines))
    print(f"chosen on every image: {adapted.applied.method} "
          f"({adapted.applied.recalibration.describe()}); threshold "
          f"{adapted.threshold:.4f} on the adapted score = risk {adapted.risk_threshold:.4f}, "
          "as the export acted")
    if adapted.shift_reference:
        print(f"shift reference extended with the site's images: {adapted.shift_reference}")
    print(f"adapted export: {adapted.output_dir}")
    return 0


def main(argv=None):
    return cli.main(COMMAND, define_flags, run, argv)


if __name__ == "__main__":
    main()
