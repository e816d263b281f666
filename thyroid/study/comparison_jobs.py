"""What the comparison's jobs do (their kinds and plan: ``study.compared_kinds``): the
ultrasound-augmented shards and the rows fitted on them, the test-time views and every fold
scored on them, and the comparison's pooled figures. Each returns a ``jobs.Outcome``."""

import os

import numpy as np

from thyroid.datasets import folds, shards
from thyroid.datasets.build import prefixed_flags
from thyroid.preprocessing.tta import VIEW_NAMES
from thyroid.stats import pooled
from thyroid.stats.operating_point import choose_threshold
from thyroid.study import data, fitting, jobs, payloads
from thyroid.study.compared_kinds import (AUG_SHARDS_DIR, AUGMENTED, TTA, aug_fold_dir,
                                          aug_row_dir, view_dir)
from thyroid.study.config import row_config
from thyroid.study.jobspec import job_id
from thyroid.study.kinds import EXTERNAL_DIR, SHARDS_DIR
from thyroid.study.plan import row_of
from thyroid.study.results import read_records, read_result

# The views scored besides the image itself (which the plain predictions are).
EXTRA_VIEWS = VIEW_NAMES[1:]


def _path(plan, *parts):
    return os.path.join(plan.run_dir, *parts)


def _aug_config(plan, job):
    """The row's RunConfig on the ultrasound shards and their (the study's) folds."""
    dataset_dir = _path(plan, AUG_SHARDS_DIR)
    return row_config(plan.study, row_of(job), dataset_dir).replace(
        fold_file=os.path.join(dataset_dir, folds.FOLDS_NAME))


def run_aug_shards(plan, job):
    sources = read_result(plan.run_dir, job_id("data")).payload
    dataset_dir = _path(plan, AUG_SHARDS_DIR)
    manifest = data.build_development_shards(
        plan.study, sources, dataset_dir, AUGMENTED,
        fold_file=_path(plan, SHARDS_DIR, folds.FOLDS_NAME))
    return jobs.Outcome(payloads.ShardsPayload(dataset_dir, manifest.get("build_seconds")))


def run_aug_features(plan, job):
    return jobs.Outcome(jobs.frozen_features(plan, _aug_config(plan, job)))


def run_aug_fit(plan, job):
    fold = fitting.run_fold(_aug_config(plan, job), job.row_id, job.repeat, job.fold,
                            aug_fold_dir(plan.run_dir, job.row_id, job.repeat, job.fold),
                            plan.study.operating_point, plan.study.recalibrate)
    return jobs.Outcome(fold.facts(), fold.records)


def run_aug_external(plan, job):
    """The augmented row's final model on the external set: its refit, or its fold ensemble."""
    folds_done = jobs.fold_results(plan, job.inputs, kind="aug_fit")
    external_dir, excluded = _path(plan, EXTERNAL_DIR), jobs.excluded_external(plan)
    if plan.study.final_model == "folds":
        dirs = [aug_fold_dir(plan.run_dir, job.row_id, f.repeat, f.fold) for f in folds_done]
        records = fitting.ensemble_records(job.row_id, dirs, folds_done, external_dir, excluded)
        return jobs.Outcome(payloads.EnsemblePayload(len(dirs)), records)
    train_dir = os.path.join(aug_row_dir(plan.run_dir, job.row_id), "refit")
    _, recalibration = fitting.refit_row(_aug_config(plan, job), folds_done, train_dir,
                                         plan.study.recalibrate)
    records = fitting.external_records(job.row_id, train_dir, external_dir, recalibration,
                                       excluded)
    return jobs.Outcome(payloads.RefitPayload(train_dir, recalibration.to_json()), records)


def run_tta_views(plan, job):
    """Every development (and external) image as each view other than itself, one dataset per
    view."""
    sources = read_result(plan.run_dir, job_id("data")).payload
    development, external = {}, {}
    for view in EXTRA_VIEWS:
        development[view] = view_dir(plan.run_dir, view)
        data.build_view(data.source_folders(sources), view, development[view], plan.study.seed)
        if plan.study.external:
            external[view] = view_dir(plan.run_dir, view, external=True)
            data.build_view(plan.study.external_sources, view, external[view], plan.study.seed,
                            prefixed_flags("external_"))
    return jobs.Outcome(payloads.ViewsPayload(development, external))


def tta_scores(train_dir, dataset_dirs, keys):
    """(SplitInputs of the first dataset, the mean P(malignant) over the datasets) of the
    images ``keys``: one model on every view of them."""
    from thyroid.training.scoring import predict_views
    scored = predict_views(train_dir, dataset_dirs, "test", keys)
    for inputs, _ in scored[1:]:
        if not np.array_equal(inputs.labels, scored[0][0].labels):
            raise ValueError(f"{train_dir}: the views' labels differ from the images' own")
    return scored[0][0], np.mean([probs for _, probs in scored], axis=0)


def tta_fold(study, train_dir, fold, view_dirs):
    """One fold under test-time augmentation: its model scores the views of its inner
    validation and test images; with the plain scores (the image itself), the mean chooses the
    threshold and map on the inner validation alone. -> (TtaFold, test records)."""
    from thyroid.training.inputs import load_split_inputs
    from thyroid.training.run_config import RunConfig
    from thyroid.training.scoring import predict_views
    config = RunConfig.load(train_dir)
    validation_keys = load_split_inputs(config, "validation").keys.tolist()
    if len(validation_keys) != len(fold.validation["probs"]):
        raise ValueError(f"{train_dir}: {len(validation_keys)} inner-validation images, but "
                         f"the fit kept {len(fold.validation['probs'])} of their scores")
    test_keys = [record["image"] for record in fold.records]
    plain = np.concatenate([np.asarray(fold.validation["probs"], np.float64),
                            [float(record["prob"]) for record in fold.records]])
    views = [probs for _, probs in predict_views(train_dir, view_dirs, "test",
                                                 validation_keys + test_keys)]
    mean = np.mean([plain] + views, axis=0)
    validation, test = mean[:len(validation_keys)], mean[len(validation_keys):]
    labels = [int(label) for label in fold.validation["labels"]]
    threshold = choose_threshold(study.operating_point, labels, validation)
    recalibration = fitting.fit_map(study.recalibrate, config.mode, labels, validation)
    records = [dict(record, prob=float(prob), risk=float(risk), threshold=float(threshold))
               for record, prob, risk in zip(fold.records, test, recalibration.apply(test))]
    return payloads.TtaFold(fold.repeat, fold.fold, float(threshold), recalibration.to_json(),
                            {"labels": labels, "probs": validation.tolist()}), records


def run_tta(plan, job):
    """Every fold of the row under test-time augmentation, and its final model on the external
    set's views."""
    views = read_result(plan.run_dir, job_id("tta_views")).payload
    view_dirs = [views.development[view] for view in EXTRA_VIEWS]
    folds_done = jobs.fold_results(plan, job.inputs)
    tta_folds, records = [], []
    for fold in folds_done:
        train_dir = jobs.fold_train_dir(plan, job.row_id, fold.repeat, fold.fold)
        chosen, fold_records = tta_fold(plan.study, train_dir, fold, view_dirs)
        tta_folds.append(chosen)
        records += fold_records
    external_images = None
    if plan.study.external:
        external = _external_tta(plan, job, tta_folds, views)
        external_images = len(external)
        records += external
    return jobs.Outcome(payloads.TtaPayload(tta_folds, external_images), records)


def _external_tta(plan, job, tta_folds, views):
    """The final model's records on the external set, each image the mean over its views:
    the refit at the median TTA fold threshold through a map fitted on every fold's TTA inner
    validation, or the fold ensemble of repeat 0 with each fold's TTA map."""
    external_dir = _path(plan, EXTERNAL_DIR)
    dirs = [external_dir] + [views.external[view] for view in EXTRA_VIEWS]
    excluded = jobs.excluded_external(plan)
    keys = [key for key in shards.load_split_metadata(external_dir, fitting.EXTERNAL_SPLIT)
            .keys.tolist() if key not in excluded]
    if plan.study.final_model == "folds":
        chosen = [fold for fold in tta_folds if fold.repeat == 0]
        fold_dirs = [jobs.fold_train_dir(plan, job.row_id, f.repeat, f.fold) for f in chosen]
        return fitting.ensemble_records(job.row_id, fold_dirs, chosen, external_dir, excluded,
                                        score=lambda train_dir: tta_scores(train_dir, dirs, keys))
    train_dir = os.path.join(jobs.row_train_dir(plan, job.row_id), "refit")
    inputs, probs = tta_scores(train_dir, dirs, keys)
    labels = [label for fold in tta_folds for label in fold.validation["labels"]]
    scores = [prob for fold in tta_folds for prob in fold.validation["probs"]]
    recalibration = fitting.fit_map(plan.study.recalibrate, row_of(job).mode, labels, scores)
    threshold = float(np.median([fold.threshold for fold in tta_folds]))
    return fitting.prediction_records(job.row_id, 0, pooled.EXTERNAL_FOLD, inputs, probs,
                                      threshold, recalibration.apply(probs))


def _records_of(plan, job, kinds):
    """The records of the job's inputs of ``kinds`` that ended ok."""
    found = []
    for input_id in job.inputs:
        result = read_result(plan.run_dir, input_id)
        if plan.job(input_id).kind in kinds and result is not None and result.ok:
            found += read_records(plan.run_dir, input_id)
    return found


def _by_row(records, external_fold=None):
    """{row id: its records}: out of fold, or (``external_fold``) of that external model."""
    def wanted(fold):
        return str(fold) == external_fold if external_fold else not pooled.is_external(fold)
    grouped = {}
    for record in records:
        if wanted(record["fold"]):
            grouped.setdefault(pooled.row_key(record["row_id"]), []).append(record)
    return grouped


def _p_values(plain, variant, external_fold=None):
    """{row id: DeLong's p of the variant against the row} on the images both scored."""
    plain, variant = _by_row(plain, external_fold), _by_row(variant, external_fold)
    found = {}
    for row_id, records in variant.items():
        result = pooled.delong_of_records(plain.get(row_id, []), records)
        found[row_id] = None if result is None or result["p_value"] != result["p_value"] \
            else float(result["p_value"])
    return found


def variant_figures(plan, plain, variant):
    """The ``VariantFigures`` of ``variant``'s records against the rows' own ``plain`` ones."""
    samples, seed = plan.study.num_bootstrap, plan.study.seed
    unranked = [row.id for row in plan.study.selected_rows() if not row.deployable]
    external = external_p = None
    if plan.study.external:
        fold = pooled.EXTERNAL_FOLD if plan.study.final_model == "refit" else pooled.ENSEMBLE_FOLD
        external = pooled.summarize_external(variant, samples, seed, fold)
        external_p = _p_values(plain, variant, fold)
    return payloads.VariantFigures(
        pooled.summarize_predictions(variant, samples, seed, unranked),
        _p_values(plain, variant), external, external_p)


def run_comparison(plan, job):
    plain = _records_of(plan, job, ("fit", "refit", "ensemble"))
    variants = {}
    if any(plan.job(one).kind == "aug_fit" for one in job.inputs):
        variants[AUGMENTED] = variant_figures(
            plan, plain, _records_of(plan, job, ("aug_fit", "aug_external")))
    if any(plan.job(one).kind == "tta" for one in job.inputs):
        variants[TTA] = variant_figures(plan, plain, _records_of(plan, job, ("tta",)))
    return jobs.Outcome(payloads.ComparisonPayload(variants))
