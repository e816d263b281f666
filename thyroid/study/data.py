"""The study's data jobs: the sources (the user's folders or a synthetic set), the shards (every
labelled image in one split with the fold file beside it, or the single split), the external
shards, and the ImageNet checkpoints the rows need."""

import os

from absl import logging

from thyroid.checkpoints.locate import default_checkpoint_path
from thyroid.datasets import build, folds, shards, synthetic
from thyroid.nets import get_network
from thyroid.study.payloads import Sources
from thyroid.study.resources import job_workers

DEV_SPLIT = "train"  # the cross-validated study's shards hold every labelled image here
EXTERNAL_SOURCES = ("ddti", "local", "folders", "csv")
QUICK_SIZE = {"width": 280, "height": 180}




def prepare_sources(study, run_dir):
    """The user's folders, or a synthetic set generated into <run_dir>/synthetic."""
    if study.user_data:
        named = (("DDTI", study.ddti_dir), ("local", study.local_dir),
                 ("class folders", study.image_dir), ("CSV", study.csv))
        return Sources(study.ddti_dir, study.local_dir,
                       ", ".join(f"{n} {p}" for n, p in named if p), study.image_dir, study.csv)
    data_dir = os.path.join(run_dir, "synthetic")
    synthetic.generate(data_dir, num_cases=study.synthetic_cases, seed=study.seed,
                       **(QUICK_SIZE if study.quick else {}))
    return Sources(os.path.join(data_dir, "ddti"), os.path.join(data_dir, "local"),
                   f"synthetic ({study.synthetic_cases} DDTI-style cases + local-style patients, "
                   f"seed {study.seed})")


def source_folders(sources):
    """{source kind: folder} of the study's development ``Sources``."""
    return build.named_sources(ddti_dir=sources.ddti_dir, local_dir=sources.local_dir,
                               image_dir=sources.image_dir, csv=sources.csv)


def build_development_shards(study, sources, dataset_dir, augmentation="standard",
                             fold_file=None):
    """Cross-validation: shards of every labelled image (augmented copies tagged with their
    original's key, made by ``augmentation``) in one split, then folds.json beside the
    manifest: drawn, or ``fold_file`` copied (the study's own folds, for the same images
    with other copies). -> manifest."""
    manifest = build.build(build.BuildConfig(
        output_dir=dataset_dir, sources=source_folders(sources), protocol="patient",
        validation_fraction=0.0, test_fraction=0.0, augment_copies=study.augment_copies,
        augmentation=augmentation, seed=study.seed, overwrite=True,
        num_workers=job_workers()))
    if fold_file:
        folds.copy_folds(fold_file, dataset_dir, DEV_SPLIT)
    else:
        folds.write_folds(dataset_dir, DEV_SPLIT, study.num_folds, study.cv_repeats,
                          study.seed, study.inner_validation_fraction)
    return manifest


def build_view(sources, view, output_dir, seed, source_flags=None):
    """Evaluation-only shards of ``sources`` ({kind: folder}) as the test-time view ``view``
    (``preprocessing.tta.VIEW_NAMES``) of every image. -> manifest."""
    return build.build(build.BuildConfig(
        output_dir=output_dir, sources=dict(sources), evaluation_only=True, view=view,
        seed=seed, overwrite=True, source_flags=source_flags or {},
        num_workers=job_workers()))


def build_single_split_shards(study, sources, dataset_dir):
    """The single train/validation/test split of ``study.protocol``. -> manifest."""
    return build.build(build.BuildConfig(
        output_dir=dataset_dir, sources=source_folders(sources), protocol=study.protocol,
        augment_copies=study.augment_copies, seed=study.seed, overwrite=True,
        num_workers=job_workers()))


def build_external_shards(sources, output_dir, seed):
    """Shards of an external set, ``sources`` = {source kind: folder}, no augmentation, every
    image in one split. Returns the manifest."""
    unknown = sorted(set(sources) - set(EXTERNAL_SOURCES))
    if unknown:
        raise ValueError(f"unknown external source kinds {unknown}; expected {EXTERNAL_SOURCES}")
    return build.build(build.BuildConfig(
        output_dir=output_dir, sources=dict(sources), evaluation_only=True, seed=seed,
        overwrite=True, source_flags=build.prefixed_flags("external_"),
        num_workers=job_workers()))


def external_counts(external_dir, split, excluded=()):
    """{patient_ids, labels} of the external shards (less the images whose keys are in
    ``excluded``), for the design section's counts."""
    data = shards.load_split_metadata(external_dir, split)
    kept = [i for i, key in enumerate(data.keys) if key not in set(excluded)]
    return {"patient_ids": data.patient_ids[kept].tolist(), "labels": data.labels[kept].tolist()}


def prepare_checkpoints(checkpoint_dir, models, try_download):
    """Converts EfficientNet-Lite0 when missing; fetches official checkpoints when online."""
    from thyroid.checkpoints.convert import convert
    from thyroid.checkpoints.download import DownloadError, download
    for model in models:
        spec = get_network(model)
        if spec.checkpoint is None or default_checkpoint_path(spec, checkpoint_dir)[1]:
            continue
        if spec.checkpoint.url is None:
            logging.info("converting the %s ImageNet weights into %s", model, checkpoint_dir)
            convert(model, checkpoint_dir)
        elif try_download:
            try:
                download(model, checkpoint_dir, timeout=5)
            except DownloadError as error:
                logging.warning("%s", error)
                logging.warning("no network: rows that need official checkpoints will be skipped")
                try_download = False  # one failure is enough to know we are offline
