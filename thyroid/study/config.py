"""``StudyConfig``: every setting of a study, frozen, checked by its ``validate`` (the rules
between settings; each flag's own range is the entry point's) and saved whole in the run's
``plan.json``; and the ``RunConfig`` each row trains with.

The protocol is decided here once: ``cross_validated`` (the patient protocol with folds) or a
single train/validation/test split; everything else reads that property.
"""

import dataclasses
import datetime

from thyroid.flag_errors import FlagValueError
from thyroid.preprocessing.augmentation_kinds import AUGMENTATIONS
from thyroid.study.rows import (DEFAULT_ROW_IDS, SCAN_VIEW_MODE, SEGMENTING_MODE, STUDY_ROWS,
                                effective_settings, is_localisation, progressive_rows,
                                starts_from_previous_run)
from thyroid.training.run_config import RunConfig

DEFAULT_SYNTHETIC_CASES = 120  # DDTI-style cases, and as many local-style patients
QUICK_SYNTHETIC_CASES = 48
# Fold training evaluates the inner validation set every EVAL_EVERY_N_EPOCHS epochs of its
# training part and stops after EARLY_STOPPING_PATIENCE evaluations (5 epochs) without a
# better AUC (the best checkpoint is kept either way); the epochs of a row are then only a
# ceiling. Both are in epochs, not steps, so a larger training set is not cut short: a fixed
# 25-step interval with a patience of 4 ended a from-scratch network after the same 100 steps
# without improvement whatever the data (at the default size about 5 epochs for the batch-32
# rows, a fraction of one at 10x).
EVAL_EVERY_N_EPOCHS = 0.5
EARLY_STOPPING_PATIENCE = 10
RECALIBRATE_CHOICES = ("logistic", "none")
FINAL_MODELS = ("refit", "folds")
# --crop_variants: name -> the build crop (datasets.images) its shards are cut with
# (study.robustness).
CROP_VARIANTS = {"band": "scan_with_band", "frame": "none", "fixed": "fixed_box"}
# What the fold-based parts of the study need (the one wording of it).
CROSS_VALIDATED = "the cross-validated patient protocol"
# The flag (without its dashes) of each external source kind.
EXTERNAL_FLAGS = {"ddti": "external_ddti_dir", "local": "external_local_dir",
                  "folders": "external_image_dir", "csv": "external_csv"}


class StudyConfigError(FlagValueError):
    """Settings of a study that cannot be used together: one line naming the flag."""


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    output_dir: str = "results"
    run_name: str | None = None
    ddti_dir: str | None = None
    local_dir: str | None = None
    image_dir: str | None = None  # folder per class (datasets.folders)
    csv: str | None = None  # path,label[,patient_id] (datasets.csv_list)
    protocol: str = "patient"
    augment_copies: int = 2
    checkpoint_dir: str = "checkpoints"
    allow_random_init: bool = False
    quick: bool = False
    num_cases: int = 0
    rows: tuple = ()
    download_checkpoints: bool = True
    export: bool = True
    seed: int = 0
    # Cross-validation: None = the default (5 folds, 3 with quick); 0 = one train/validation/
    # test split, as with --protocol=image.
    cv_folds: int | None = None
    cv_repeats: int = 1
    # The share of each fold's training patients (per class) held out as its inner validation
    # set: early stopping, the threshold and the recalibration map are chosen there.
    inner_validation_fraction: float = 0.15
    operating_point: str = "youden"
    # External validation sets: ((source kind, path), ...), kinds as datasets.read_sources.
    external: tuple = ()
    # "logistic": each fold maps its row's score to a risk fitted on its inner-validation
    # predictions (Platt's map for the SVM rows); "none": risk = the score.
    recalibrate: str = "logistic"
    # What scores the external sets and is exported: "refit" (one model trained on all
    # development data) or "folds" (the mean of the fold models' risks).
    final_model: str = "refit"
    # Robustness to the frame: crop variants (study.robustness.VARIANTS) the test images are
    # scored again under; () = none (the check costs a build and a scoring pass per variant).
    crop_variants: tuple = ()
    # "standard": the rows' copies as ever; "ultrasound": also a development set with the
    # ultrasound copies on the same folds, every row that trains on copies fitted on it too
    # and compared with itself (study.compared_kinds).
    augment: str = "standard"
    # Test-time augmentation: every row's predictions also as the mean over its views
    # (preprocessing.tta), reported beside the plain ones.
    tta: bool = False
    # Progressive transfer: a previous run folder whose exported model row 14 starts from
    # (study.previous_run); it adds rows 10 and 14. None: no row 14.
    init_from: str | None = None

    @property
    def source(self):
        for name, path in (("ddti", self.ddti_dir), ("local", self.local_dir),
                           ("folders", self.image_dir), ("csv", self.csv)):
            if path:
                return name
        return "synthetic"

    @property
    def user_data(self):
        """True when the development data are the user's (not the synthetic default)."""
        return self.source != "synthetic"

    @property
    def num_folds(self):
        """Folds of the cross-validation, 0 for a single split (always for protocol=image)."""
        if self.protocol != "patient":
            return 0
        if self.cv_folds is None:
            return 3 if self.quick else 5
        return self.cv_folds

    @property
    def cross_validated(self):
        """The protocol: patient-grouped cross-validation, or (False) one split."""
        return self.num_folds > 0

    @property
    def external_sources(self):
        return dict(self.external)

    def validate(self):
        """Raises a ``StudyConfigError`` naming the flag when the settings do not go together;
        -> self."""
        if self.cv_folds == 1:
            raise StudyConfigError("cv_folds", 1, "needs at least 2 folds (0: a single split)")
        unknown = [v for v in self.crop_variants if v not in CROP_VARIANTS]
        if unknown:
            raise StudyConfigError("crop_variants", ",".join(self.crop_variants),
                                   f"choose among {', '.join(CROP_VARIANTS)}")
        progressive = [str(row.id) for row in STUDY_ROWS if starts_from_previous_run(row)]
        if self.init_from is None and set(map(str, self.rows)) & set(progressive):
            raise StudyConfigError("rows", ",".join(map(str, self.rows)), (
                f"row {', '.join(progressive)} starts from a previous run's model: give "
                "--init_from=<that run's folder>"))
        if self.augment not in AUGMENTATIONS:
            raise StudyConfigError("augment", self.augment,
                                   f"choose among {', '.join(AUGMENTATIONS)}")
        if self.compares_augmentation and not self.augment_copies:
            raise StudyConfigError("augment", self.augment, "compares the copies of two "
                                   "augmentations; --augment_copies=0 makes none")
        if not self.cross_validated:
            self._refuse_fold_settings()
        return self

    @property
    def compares_augmentation(self):
        """Whether the rows are also fitted with another augmentation than the standard one."""
        return self.augment != AUGMENTATIONS[0]

    def _refuse_fold_settings(self):
        """The settings that need folds, on a single split."""
        localising = [str(row.id) for row in self.selected_rows() if is_localisation(row)]
        if localising:
            raise StudyConfigError("rows", ",".join(map(str, self.rows)), (
                f"rows {', '.join(localising)} (localisation) need {CROSS_VALIDATED}"))
        if self.crop_variants:
            raise StudyConfigError("crop_variants", ",".join(self.crop_variants),
                                   f"needs {CROSS_VALIDATED}")
        if self.final_model == "folds":
            raise StudyConfigError("final_model", "folds",
                                   f"a fold ensemble needs {CROSS_VALIDATED}")
        if self.compares_augmentation:
            raise StudyConfigError("augment", self.augment, f"the comparison needs "
                                   f"{CROSS_VALIDATED}")
        if self.tta:
            raise StudyConfigError("tta", "true", f"the comparison needs {CROSS_VALIDATED}")
        if self.external:
            kind, path = self.external[0]
            raise StudyConfigError(EXTERNAL_FLAGS[kind], path,
                                   f"external validation needs {CROSS_VALIDATED}")
        if self.init_from is not None:
            raise StudyConfigError("init_from", self.init_from, (
                f"row 14 is compared with row 10 on the same folds: it needs {CROSS_VALIDATED}"))

    @property
    def synthetic_cases(self):
        return self.num_cases or (QUICK_SYNTHETIC_CASES if self.quick else DEFAULT_SYNTHETIC_CASES)

    @property
    def num_bootstrap(self):
        return 200 if self.quick else 1000

    def default_run_name(self):
        return (datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
                + f"-{self.source}-{self.protocol}" + ("-quick" if self.quick else ""))

    def selected_rows(self):
        """The rows --rows names, else ``DEFAULT_ROW_IDS``; with ``init_from`` the rows that
        start from the previous run and those they are compared with too."""
        wanted = set(self.rows or DEFAULT_ROW_IDS)
        if self.init_from is not None:
            wanted |= set(progressive_rows())
        return [row for row in STUDY_ROWS if row.id in wanted]

    def localises(self):
        return any(is_localisation(row) for row in self.selected_rows())

    def segments(self):
        return any(row.mode == SEGMENTING_MODE for row in self.selected_rows())

    def to_json(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, saved):
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in saved.items() if k in fields}
        values["rows"] = tuple(values.get("rows", ()))
        values["external"] = tuple(tuple(pair) for pair in values.get("external", ()))
        values["crop_variants"] = tuple(values.get("crop_variants", ()))
        return cls(**values)


def row_config(study, row, dataset_dir):
    """The RunConfig of one row of the study on ``dataset_dir`` (for a localisation row, that
    of its scan-field view: row 11's features)."""
    settings = effective_settings(row, study.quick)
    mode = SCAN_VIEW_MODE if is_localisation(row) else row.mode
    config = RunConfig(model=row.model, mode=mode, dataset_dir=dataset_dir,
                       checkpoint_dir=study.checkpoint_dir,
                       allow_random_init=study.allow_random_init,
                       image_size=settings.image_size, batch_size=settings.batch_size,
                       num_epochs=settings.num_epochs, seed=study.seed,
                       eval_every_n_epochs=EVAL_EVERY_N_EPOCHS,
                       early_stopping_patience=EARLY_STOPPING_PATIENCE)
    if not starts_from_previous_run(row):
        return config
    from thyroid.study.previous_run import previous_run
    previous = previous_run(study.init_from)
    return config.replace(checkpoint_path=previous.checkpoint, restore_all=True,
                          checkpoint_description=previous.description())
