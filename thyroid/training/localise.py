"""Localise, then classify: judging a predicted nodule mask, and turning it into the inputs of
the localisation rows (the nodule box as a second view, the outline's measurements).

Per image (``evaluate_image``), at the crop's own resolution: Dice and IoU of the predicted
mask (probability >= ``segmentation.THRESHOLD``) with the true one, and whether the predicted
box (``outline.box_of_regions``: around the predicted views that are not specks) contains the
centre of the true nodule (the largest true view). The trivial reference is the prior mask:
the mean of the training masks, thresholded the same way (``prior_probabilities``).
"""

import numpy as np

from thyroid.preprocessing import outline
from thyroid.stats.segmentation import dice, iou, mean_ci
from thyroid.training.segmentation import THRESHOLD

# The nodule view cropped for the classifier: the predicted box plus this share of its size
# on each side (docs/EXPERIMENTS.md: outline + 15 % margin).
ROI_MARGIN = 0.15
# Pixels added on each side besides the margin, so a small box keeps some surroundings.
ROI_PAD = 8
EVALUATION_FIGURES = ("dice", "iou", "centre_hit", "prior_dice", "prior_iou",
                      "prior_centre_hit")


def predicted_mask(probabilities, height, width):
    """bool [height, width]: an input-size probability map brought to the crop's size."""
    return outline.resize_probabilities(probabilities, height, width) >= THRESHOLD


def evaluate_image(probabilities, truth):
    """{dice, iou, centre_hit, empty} of one image's prediction against its true mask."""
    predicted = predicted_mask(probabilities, *truth.shape)
    found, _ = outline.regions(predicted)
    true_views, _ = outline.regions(truth, min_pixels=1)
    hit = bool(true_views) and outline.box_contains(outline.box_of_regions(found),
                                                    true_views[0].centre)
    return {"dice": dice(predicted, truth), "iou": iou(predicted, truth),
            "centre_hit": float(hit), "empty": not found}


def prior_probabilities(targets):
    """The trivial mask: the mean training mask [S, S], scaled so its peak reaches the
    threshold when no pixel is nodule in half the images (it then marks the likeliest spot)."""
    prior = np.asarray(targets, np.float32).mean(axis=0)
    peak = float(prior.max()) if prior.size else 0.0
    return prior if peak >= THRESHOLD or peak == 0 else prior * (THRESHOLD / peak)


def evaluate(outline_set, indices, probabilities, prior):
    """One record per image of ``indices``: the model's figures and the prior mask's."""
    records = []
    for index, probs in zip(indices, probabilities):
        truth = outline_set.mask(index)
        model = evaluate_image(probs, truth)
        baseline = evaluate_image(prior, truth)
        record = outline_set.records[index]
        records.append({"image": record.key, "unit": record.unit,
                        "labelled": record.label is not None, "empty": model["empty"],
                        **{name: model[name] for name in ("dice", "iou", "centre_hit")},
                        **{f"prior_{name}": baseline[name]
                           for name in ("dice", "iou", "centre_hit")}})
    return records


def summarize(records, num_samples=1000, seed=0):
    """Per figure (mean, low, high) over images, the interval from a bootstrap over units;
    with the counts. Each image counts once per repeat; repeats are averaged."""
    repeats = sorted({r.get("repeat", 0) for r in records})
    summary = {}
    for name in EVALUATION_FIGURES:
        per_repeat = [mean_ci([r[name] for r in records if r.get("repeat", 0) == repeat],
                              [r["unit"] for r in records if r.get("repeat", 0) == repeat],
                              num_samples, seed) for repeat in repeats]
        summary[name] = tuple(float(np.mean(values)) for values in zip(*per_repeat)) \
            if per_repeat else (float("nan"),) * 3
    first = [r for r in records if r.get("repeat", 0) == (repeats[0] if repeats else 0)]
    summary.update(images=len(first), units=len({r["unit"] for r in first}),
                   empty=int(sum(r["empty"] for r in first)),
                   unlabelled=int(sum(not r["labelled"] for r in first)))
    return summary


def roi_box(found, height, width, margin=ROI_MARGIN, pad=ROI_PAD):
    """(top, bottom, left, right) of the nodule view cropped for the classifier: the predicted
    box plus a margin, inside the crop; None when nothing was found."""
    box = outline.box_of_regions(found)
    if box is None:
        return None
    x0, y0, x1, y1 = box
    pad_x, pad_y = margin * (x1 - x0) + pad, margin * (y1 - y0) + pad
    return (max(0, int(y0 - pad_y)), min(height, int(np.ceil(y1 + pad_y))),
            max(0, int(x0 - pad_x)), min(width, int(np.ceil(x1 + pad_x))))


# --------------------------------------------------------------------------------------
# The localisation rows' inputs: the nodule view and the outline's measurements
# --------------------------------------------------------------------------------------

def nodule_view(rgb, mask, polygons, keep_fraction):
    """(ROI crop or the whole crop, measurements [len(FEATURE_NAMES)], found) of one image:
    the box of ``mask``'s views plus the margin, and the hand-crafted measurements of the
    largest of ``polygons``. Nothing found: the scan field itself and NaN measurements."""
    from thyroid.preprocessing.nodule_features import roi_features
    height, width = mask.shape
    found, _ = outline.regions(mask)
    box = roi_box(outline.kept_regions(found, keep_fraction), height, width)
    if box is None or box[1] - box[0] < 2 or box[3] - box[2] < 2:
        return rgb, roi_features(rgb, []), False
    top, bottom, left, right = box
    return np.ascontiguousarray(rgb[top:bottom, left:right]), roi_features(rgb, polygons), True


def expert_view(outline_set, index):
    """``nodule_view`` from the expert outline (every polygon's box, as the ROI crop of the
    experiments)."""
    record = outline_set.records[index]
    return nodule_view(outline_set.image(index), outline_set.mask(index),
                       record.polygons if record.has_outline else [], keep_fraction=0.0)


def predicted_view(outline_set, index, probabilities):
    """``nodule_view`` from a predicted probability map [S, S] (input size)."""
    rgb = outline_set.image(index)
    mask = predicted_mask(probabilities, *rgb.shape[:2])
    return nodule_view(rgb, mask, outline.outlines(mask), keep_fraction=outline.KEEP_FRACTION)


def pooled_roi_features(views, image_size, checkpoint_path, network="efficientnet_lite0"):
    """Row 11's features (multi-layer mean and SD, mirror-averaged) of each view's crop."""
    from thyroid.nets import get_network
    from thyroid.preprocessing.resize import resize_batch
    from thyroid.training.features import compute_activations
    from thyroid.training.frozen_network import POOLED_LAYERS
    spec = get_network(network)
    crops = resize_batch([crop for crop, _, _ in views], image_size)
    return compute_activations(spec, crops, POOLED_LAYERS, checkpoint_path,
                               layers=spec.feature_layers)


# --------------------------------------------------------------------------------------
# The classifier: one logistic regression per view, probabilities averaged
# --------------------------------------------------------------------------------------

MEMBERS = ("scan", "roi", "measurements")


def fit_members(views, labels, patient_ids, seed=0):
    """{member: (model, selection)}: ``logreg.fit_logreg`` (C by grouped inner CV) on each
    view's features; the measurements, undefined where nothing was outlined, are imputed by
    their training median inside the model."""
    from thyroid.training import logreg
    return {name: logreg.fit_logreg(views[name], labels, patient_ids, seed,
                                    impute=name == "measurements")
            for name in MEMBERS}


def member_scores(models, views):
    """{member: its P(malignant)} for each image of ``views``."""
    from thyroid.training import logreg
    return {name: logreg.logreg_scores(models[name][0], views[name]) for name in MEMBERS}


def member_probabilities(models, views):
    """The mean of the members' P(malignant) (the experiments' ensemble of views)."""
    scores = member_scores(models, views)
    return np.mean([scores[name] for name in MEMBERS], axis=0).astype(np.float32)


# --------------------------------------------------------------------------------------
# Segmentation inside a fold
# --------------------------------------------------------------------------------------

def fit_segmentation(spec, maps, outline_set, indices, config):
    """(decoder weights, prior map [S, S]) trained on the outline set's ``indices``."""
    from thyroid.training.segmentation import target_masks, train_decoder
    targets = target_masks(outline_set, indices, config.image_size)
    weights, _ = train_decoder(spec, [m[indices] for m in maps], targets, config)
    return weights, prior_probabilities(targets)


def probabilities_of(spec, weights, maps, indices, image_size):
    from thyroid.training.segmentation import decoder_probabilities
    return decoder_probabilities(spec, weights, [m[list(indices)] for m in maps], image_size)


def cross_fitted(spec, maps, outline_set, train, wanted, config, parts=2):
    """{index: probability map} for the images ``wanted``, each predicted by a decoder that
    did not train on its unit: the units are dealt into ``parts`` groups, and the decoder of
    group g trains on ``train`` outside g (for as many epochs as the full one).

    The classifier trains on these: masks predicted for a decoder's own training images are
    far better than those it draws on new patients, and a classifier fitted on them would
    learn from outlines it never gets on a test image."""
    units = sorted({outline_set.records[i].unit for i in list(train) + list(wanted)})
    np.random.RandomState(config.seed).shuffle(units)
    group = {unit: position % parts for position, unit in enumerate(units)}
    found = {}
    for part in range(parts):
        inside = [i for i in train if group[outline_set.records[i].unit] != part]
        asked = [i for i in wanted if group[outline_set.records[i].unit] == part]
        if not asked:
            continue
        steps = max(1, round(config.steps * len(inside) / max(len(train), 1)))
        weights, _ = fit_segmentation(spec, maps, outline_set, inside,
                                      config.replace(steps=steps, seed=config.seed + 1 + part))
        found.update(zip(asked, probabilities_of(spec, weights, maps, asked, config.image_size)))
    return found
