"""The study's rows and the numbers the paper reports.

Paper: Sai Sundar & Siva Sankara Sai, "Exploring Transfer Learning, Fine-tuning of
Thyroid Ultrasound Images", MIDL 2018 abstract (OpenReview id HyMTQPojf); a 2019 paper with
the same abstract, "Exploring Image Classification of Thyroid Ultrasound Images Using Deep
Learning", is also listed (acemap.info/paper/392684915). Its Table 1 reports accuracy,
sensitivity and specificity of seven methods on two datasets (the public DDTI collection
and a local dataset).

The table's numbers are NOT stored here: the full text was not reachable offline (only the
abstract pages were found: openreview.net/forum?id=HyMTQPojf and acemap.info/paper/392684915,
neither of which contains the table). Rather than invent numbers, every value is ``None``
and the report prints "not available offline". Fill them in from the paper's PDF (and set
``PAPER_SOURCE``) when it is at hand.
"""

PAPER_TITLE = "Exploring Transfer Learning, Fine-tuning of Thyroid Ultrasound Images"
PAPER_AUTHORS = "Sai Sundar & Siva Sankara Sai"
PAPER_URL = "https://openreview.net/forum?id=HyMTQPojf"
#: Where the numbers in PAPER_TABLE_1 come from; None while they are unavailable.
PAPER_SOURCE = None
NOT_AVAILABLE = "not available offline"

PAPER_DATASETS = ("DDTI", "local")
PAPER_METRICS = ("accuracy", "sensitivity", "specificity")

#: (row_id, model, mode, label) in the order the report lists them. Rows 1-7 are the
#: paper's Table 1; rows 8-10 extend the study with EfficientNet-Lite0.
STUDY_ROWS = [
    (1, "small_cnn", "scratch", "Small CNN from scratch"),
    (2, "vgg_16", "bottleneck_svm", "VGG-16 pool5 + SVM"),
    (3, "inception_v3", "bottleneck_svm", "Inception-v3 PreLogits + SVM"),
    (4, "vgg_16", "bottleneck_fc", "VGG-16 bottleneck + FC"),
    (5, "inception_v3", "bottleneck_fc", "Inception-v3 bottleneck + FC"),
    (6, "vgg_16", "finetune", "VGG-16 fine-tuning"),
    (7, "inception_v3", "finetune", "Inception-v3 fine-tuning"),
    (8, "efficientnet_lite0", "bottleneck_svm", "EfficientNet-Lite0 bottleneck + SVM"),
    (9, "efficientnet_lite0", "bottleneck_fc", "EfficientNet-Lite0 bottleneck + FC"),
    (10, "efficientnet_lite0", "finetune", "EfficientNet-Lite0 fine-tuning"),
]

#: Rows that appear in the paper (the first seven).
PAPER_ROWS = [row for row in STUDY_ROWS if row[0] <= 7]

#: (model, mode) -> {dataset: {metric: value in [0, 1] or None}}.
PAPER_TABLE_1 = {
    (model, mode): {dataset: {metric: None for metric in PAPER_METRICS}
                    for dataset in PAPER_DATASETS}
    for _, model, mode, _ in PAPER_ROWS
}


def paper_values(model, mode, dataset="DDTI"):
    """The paper's {metric: value-or-None} for a row, or None when the paper has no such row."""
    entry = PAPER_TABLE_1.get((model, mode))
    if entry is None:
        return None
    return dict(entry.get(dataset, {metric: None for metric in PAPER_METRICS}))


def has_paper_numbers():
    """True when at least one value of Table 1 is stored."""
    return any(value is not None
               for entry in PAPER_TABLE_1.values()
               for metrics in entry.values()
               for value in metrics.values())


def row_label(model, mode):
    """The study's label for (model, mode), or '<model> <mode>' for rows outside it."""
    for _, m, md, label in STUDY_ROWS:
        if (m, md) == (model, mode):
            return label
    return f"{model} {mode}"
