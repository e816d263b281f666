"""The numbers the paper reports (its Table 1), beside the study's rows (``study.rows``).

Paper: K.V. Sai Sundar & S. Siva Sankara Sai, "Exploring Transfer Learning, Fine-tuning of
Thyroid Ultrasound Images" (MIDL 2018 abstract, OpenReview id HyMTQPojf). Its Table 1 gives
accuracy, sensitivity and specificity of seven methods on one dataset only: DDTI combined
with the authors' local (non-public) images, augmented (flips, rotations, noise) before a
random split into 2525 training and 613 test samples. That is an image-level protocol:
copies of one image, and images of one patient, can sit on both sides of the split.
The paper gives no per-dataset numbers and no AUC.

The values below are Table 1's numbers as printed (the text of the paper is kept beside
the shared data, in ``paper/paper.txt``).
"""

PAPER_TITLE = "Exploring Transfer Learning, Fine-tuning of Thyroid Ultrasound Images"
PAPER_AUTHORS = "K.V. Sai Sundar & S. Siva Sankara Sai"
PAPER_URL = "https://openreview.net/forum?id=HyMTQPojf"
#: Where the numbers in PAPER_TABLE_1 come from.
PAPER_SOURCE = ("the paper's Table 1 (combined DDTI + local dataset, augmented before a random "
                "image-level split: 2525 training / 613 test samples)")
#: Printed where the paper has no value.
NOT_AVAILABLE = "not reported"

#: Table 1 covers the combined dataset only.
PAPER_DATASETS = ("combined",)
PAPER_METRICS = ("accuracy", "sensitivity", "specificity")

# Table 1 as printed: (model, mode) -> (accuracy, sensitivity, specificity).
_TABLE_1_ROWS = {
    ("small_cnn", "scratch"): (0.82, 0.89, 0.82),
    ("vgg_16", "bottleneck_svm"): (0.99, 1.00, 0.985),
    ("inception_v3", "bottleneck_svm"): (0.967, 0.985, 0.95),
    ("vgg_16", "bottleneck_fc"): (0.94, 0.96, 0.92),
    ("inception_v3", "bottleneck_fc"): (0.98, 0.99, 0.97),
    ("vgg_16", "finetune"): (0.76, 0.84, 0.68),
    ("inception_v3", "finetune"): (0.79, 0.80, 0.77),
}
#: (model, mode) -> {dataset: {metric: value in [0, 1]}}; the paper reports the combined set only.
PAPER_TABLE_1 = {row: {"combined": dict(zip(PAPER_METRICS, values))}
                 for row, values in _TABLE_1_ROWS.items()}


def paper_values(model, mode, dataset="combined"):
    """The paper's {metric: value-or-None} for a row, or None when the paper has no such row."""
    entry = PAPER_TABLE_1.get((model, mode))
    if entry is None:
        return None
    return dict(entry.get(dataset, {metric: None for metric in PAPER_METRICS}))
