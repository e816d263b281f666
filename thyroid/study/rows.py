"""The study's rows: what each trains and the settings it trains with.

Rows 1-7 are the paper's Table 1 (its numbers are data in ``study.paper``); rows 8-10 extend
the study with EfficientNet-Lite0, the one ImageNet backbone whose weights ship offline;
row 11 is not a paper method but this project's best (docs/EXPERIMENTS.md): pooled
multi-layer features and a logistic regression whose C is chosen inside the training data.
Rows 12 and 13 localise the nodule first (docs/LOCALISATION.md): row 12 with the outline a
segmentation network predicts, row 13 with the expert's outline, an upper bound that no new
image has (not deployable). They run only when ``--rows`` names them (``DEFAULT_ROW_IDS``).
"""

import dataclasses

IMAGENET, PREVIOUS_RUN = "imagenet", "previous run"  # where a row's weights start


@dataclasses.dataclass(frozen=True)
class RowSettings:
    """How a row trains at full size: input size, epoch ceiling, batch size."""
    image_size: int
    num_epochs: float
    batch_size: int = 32


@dataclasses.dataclass(frozen=True)
class StudyRow:
    """One method of the study: its id, network, mode, label and full-size settings."""
    id: int
    model: str
    mode: str
    label: str
    settings: RowSettings
    # False for a reference row that needs what no new image has (the expert's outline).
    deployable: bool = True
    # Where its weights start: ImageNet's, or (``PREVIOUS_RUN``) every weight of the model a
    # previous run exported (``--init_from``).
    starts_from: str = IMAGENET
    # The row it is compared with by DeLong's test in its own report section (None: none).
    compared_with: int | None = None

    def folder_name(self):
        return f"{self.id:02d}_{self.model}_{self.mode}"


# Full runs use each network's own input size; the epochs are a ceiling (early stopping).
STUDY_ROWS = (
    StudyRow(1, "small_cnn", "scratch", "Small CNN from scratch", RowSettings(64, 30)),
    StudyRow(2, "vgg_16", "bottleneck_svm", "VGG-16 pool5 + SVM", RowSettings(224, 1)),
    StudyRow(3, "inception_v3", "bottleneck_svm", "Inception-v3 PreLogits + SVM",
             RowSettings(299, 1)),
    StudyRow(4, "vgg_16", "bottleneck_fc", "VGG-16 bottleneck + FC", RowSettings(224, 60)),
    StudyRow(5, "inception_v3", "bottleneck_fc", "Inception-v3 bottleneck + FC",
             RowSettings(299, 60)),
    StudyRow(6, "vgg_16", "finetune", "VGG-16 fine-tuning", RowSettings(224, 10)),
    StudyRow(7, "inception_v3", "finetune", "Inception-v3 fine-tuning", RowSettings(299, 3, 16)),
    StudyRow(8, "efficientnet_lite0", "bottleneck_svm", "EfficientNet-Lite0 bottleneck + SVM",
             RowSettings(224, 1)),
    StudyRow(9, "efficientnet_lite0", "bottleneck_fc", "EfficientNet-Lite0 bottleneck + FC",
             RowSettings(224, 60)),
    StudyRow(10, "efficientnet_lite0", "finetune", "EfficientNet-Lite0 fine-tuning",
             RowSettings(128, 4, 16)),
    StudyRow(11, "efficientnet_lite0", "bottleneck_logreg",
             "EfficientNet-Lite0 multi-layer features + logistic regression (ours)",
             RowSettings(224, 1)),
    StudyRow(12, "efficientnet_lite0", "localise_logreg",
             "EfficientNet-Lite0 localise, then classify: scan field + predicted nodule box + "
             "outline measurements, logistic regressions (ours)", RowSettings(224, 1)),
    StudyRow(13, "efficientnet_lite0", "outline_logreg",
             "Row 12 with the expert outline (upper bound, not deployable)",
             RowSettings(224, 1), deployable=False),
    StudyRow(14, "efficientnet_lite0", "finetune",
             "EfficientNet-Lite0 fine-tuning from a previous run's exported model "
             "(progressive transfer)", RowSettings(128, 4, 16), starts_from=PREVIOUS_RUN,
             compared_with=10),
)
ROW_IDS = tuple(row.id for row in STUDY_ROWS)
# What a study runs when --rows names none: the localisation rows are asked for by name
# (they need outlines and cost several minutes on DDTI).
DEFAULT_ROW_IDS = tuple(range(1, 12))
# Rows that localise the nodule: the outline set, and (row 12) a segmentation per fold.
LOCALISATION_MODES = ("localise_logreg", "outline_logreg")
SEGMENTING_MODE = "localise_logreg"  # the row that trains a segmentation network
# The scan-field view of the localisation rows is row 11's input.
SCAN_VIEW_MODE = "bottleneck_logreg"
PAPER_ROW_IDS = tuple(range(1, 8))
# --quick: tiny inputs per network and at most two epochs, for CI.
QUICK_SIZES = {"small_cnn": 32, "vgg_16": 32, "inception_v3": 75, "efficientnet_lite0": 64}
QUICK_EPOCHS, QUICK_BATCH_SIZE = 2, 16
# Networks whose fine-tuned rows can be exported for the phone.
MOBILE_MODELS = ("mobilenet_v1", "efficientnet_lite0")


def get_row(row_id):
    for row in STUDY_ROWS:
        if row.id == row_id:
            return row
    raise KeyError(f"no study row {row_id}; row ids are {','.join(map(str, ROW_IDS))}")


def row_for(model, mode):
    """The study row of (model, mode) that starts from ImageNet, or None."""
    return next((row for row in STUDY_ROWS if (row.model, row.mode) == (model, mode)
                 and row.starts_from == IMAGENET), None)


def starts_from_previous_run(row):
    return row.starts_from == PREVIOUS_RUN


def progressive_rows():
    """The rows that start from a previous run's model, and the rows they are compared with:
    what ``--init_from`` adds to a study."""
    rows = [row for row in STUDY_ROWS if starts_from_previous_run(row)]
    return tuple(sorted({row.id for row in rows} | {row.compared_with for row in rows}))


def row_label(model, mode):
    """The study's label for (model, mode), or '<model> <mode>' for rows outside it."""
    row = row_for(model, mode)
    return row.label if row else f"{model} {mode}"


def is_localisation(row):
    return row.mode in LOCALISATION_MODES


def effective_settings(row, quick):
    """The row's settings, shrunk for --quick."""
    if not quick:
        return row.settings
    return RowSettings(QUICK_SIZES[row.model], min(row.settings.num_epochs, QUICK_EPOCHS),
                       QUICK_BATCH_SIZE)
