"""./run_all.sh --quick end to end: data, shards, rows, report, export; and the table's honesty."""

import json
import os
import statistics
import shutil
import subprocess
import sys

import pytest

from thyroid.study import tables
from thyroid.study.fitting import EXTERNAL_SPLIT

from study_runs import REPO, read_predictions, read_rows, run_study


def check_one_out_of_fold_prediction_each(run_dir, row_ids, num_repeats=1):
    assignment = json.loads((run_dir / "shards" / "folds.json").read_text())
    predictions = [p for p in read_predictions(run_dir) if not p["fold"].startswith("external")]
    for row_id in row_ids:
        for repeat in range(num_repeats):
            images = [p["image"] for p in predictions
                      if p["row_id"] == str(row_id) and p["repeat"] == str(repeat)]
            assert sorted(images) == sorted(assignment["images"]), (row_id, repeat)
    return assignment, predictions


@pytest.fixture
def quick_run(quick_study):
    return quick_study


def test_quick_study_cross_validates_offline_and_reports_every_row(quick_run):
    done, run_dir = quick_run
    assert done.stdout.strip().splitlines()[-1] == f"summary: {run_dir / 'summary.md'}"
    rows = read_rows(run_dir)
    assert sorted(rows) == list(range(1, 12))
    for row_id in (1, 8, 9, 10, 11):  # scratch and the offline EfficientNet-Lite0 rows run
        assert rows[row_id]["status"] == "ok", rows[row_id]
        assert 0.0 <= float(rows[row_id]["auc"]) <= 1.0
        assert float(rows[row_id]["auc_ci_low"]) <= float(rows[row_id]["auc"]) <= float(rows[row_id]["auc_ci_high"])
        assert rows[row_id]["auc_fold_sd"] != "" and rows[row_id]["brier"] != ""
    assert sum(rows[row_id]["p_vs_best"] == "" for row_id in (1, 8, 9, 10, 11)) == 1  # the best
    for row_id in range(2, 8):  # no VGG-16 / Inception-v3 weights offline: skipped, with the fix
        assert rows[row_id]["status"] == "skipped"
        assert "python -m thyroid.checkpoints download --models=" in rows[row_id]["note"]
    assignment, predictions = check_one_out_of_fold_prediction_each(run_dir, (1, 8, 9, 10, 11))
    assert assignment["num_folds"] == 3  # --quick
    assert {p["fold"] for p in predictions} == {"0", "1", "2"}
    summary = (run_dir / "summary.md").read_text()
    for heading in ("## Study design", "3-fold cross-validation", "skipped",
                    "Comparison with the paper", "not corrected for multiple comparisons"):
        assert heading in summary, heading
    from thyroid.study.plan import cpu_model
    assert f"| machine | {cpu_model()}, " in summary  # figures name the CPU they came from
    for plot in ("roc.png", "calibration.png"):
        with open(run_dir / plot, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(run_dir / "mobile" / "model.tflite") > 100_000
    check_exported_threshold(run_dir, predictions)
    check_model_card(run_dir, rows)
    check_clinical_numbers(run_dir, rows, predictions)
    check_logreg_folds_fit_on_their_training_part(run_dir, assignment)
    check_time_by_stage(summary)
    check_rows_that_did_not_run(run_dir, summary)


def check_clinical_numbers(run_dir, rows, predictions):
    """Recalibrated risks, patient-level AUCs and net benefits reach every report file."""
    for row_id in (1, 8, 9, 10, 11):
        row = rows[row_id]
        for name in ("brier_recalibrated", "calibration_slope_recalibrated", "patient_auc_mean",
                     "patient_auc_max", "net_benefit_at_0_10", "net_benefit_at_0_10_ci_low",
                     "treat_all_at_0_50"):
            assert row[name] != "", (row_id, name)
        assert float(row["calibration_slope_recalibrated"]) > 0
    for record in predictions:
        assert 0.0 <= float(record["risk"]) <= 1.0 and record["spread"] == ""
    folds = json.loads((run_dir / "folds_by_row.json").read_text())
    assert all(f["recalibration"]["method"] in ("platt", "identity") for f in folds["8"])
    refit_map = json.loads((run_dir / "train" / "10_efficientnet_lite0_finetune" / "refit"
                            / "recalibration.json").read_text())
    metadata = json.loads((run_dir / "mobile" / "metadata.json").read_text())
    assert metadata["recalibration"]["slope"] == refit_map["slope"]
    assert metadata["threshold_scale"].startswith("probability")
    # The synthetic data holds DDTI-style cases: the export says its number is the risk of a
    # TIRADS 4a or above rating, and that its threshold is the study's operating point.
    assert metadata["label_meaning"]["kind"] == "tirads"
    assert metadata["label_meaning"]["answer"] == "risk of a TIRADS 4a or above rating"
    assert metadata["threshold_source"].startswith("the study's operating point 'youden'")
    assert "median over the 3 fold thresholds of row 10" in metadata["threshold_source"]
    summary = (run_dir / "summary.md").read_text()
    for heading in ("### Patient-level AUC", "### Calibration: raw score and recalibrated risk",
                    "## Decision curves", "TIRADS 4a or above", "![Decision curves]"):
        assert heading in summary, heading
    assert (run_dir / "decision_curve.png").read_bytes().startswith(b"\x89PNG")
    assert "<table>" in (run_dir / "summary.html").read_text()


def check_time_by_stage(summary):
    """Every stage of the run has a line in the "Time by stage" table, in the order run, but
    those of the rows that did not run (2-7)."""
    table = summary.split("## Time by stage", 1)[1].split("\n## ", 1)[0]
    stages = [line.split("|")[1].strip() for line in table.splitlines()
              if line.startswith("| ") and not line.startswith("| Stage")]
    expected = ["synthetic data", "shards", "checkpoints", "row 1: folds", "row 8: folds"]
    assert stages[:5] == expected, stages
    for stage in ("row 10: folds", "report: pooled metrics and bootstrap", "row 10: refit",
                  "export", "total"):
        assert stage in stages, stage
    assert not any(stage.startswith(f"row {row_id}: ") for stage in stages
                   for row_id in range(2, 8)), stages
    assert "The stages of the rows that did not run are left out" in table


def check_rows_that_did_not_run(run_dir, summary):
    """Rows 2-7 are listed once, each with the checkpoint it lacks, where it goes, the command
    that puts it there and the resume step; no results or clinical table has a line for
    them, the paper comparison keeps one each."""
    from thyroid.checkpoints.locate import default_checkpoint_path
    from thyroid.nets import get_network
    from thyroid.study import findings
    from thyroid.study.rows import get_row
    section = summary.split(f"## {findings.NOT_RUN_HEADING}", 1)[1].split("\n## ", 1)[0]
    resume = tables.md(f"--resume --output_dir={run_dir.parent} --run_name={run_dir.name}")
    for row_id in range(2, 8):
        row = get_row(row_id)
        title = f"**{tables.md(f'{row.id}. {row.label}')}**"
        assert summary.count(title) == 1 and title in section, row_id
        path, _ = default_checkpoint_path(get_network(row.model),
                                          str(run_dir.parent / "checkpoints"))
        line = next(line for line in section.splitlines() if title in line)
        assert tables.md(path) in line and tables.md(f"--models={row.model}") in line
        assert resume in line, line
        assert summary.count(f"\n| {row_id} | ") == 1  # the paper comparison's line only
        assert f"| {row_id} | {tables.md(row.label)} | — |" in summary


def check_model_card(run_dir, rows):
    """The export carries a model card with the row's pooled figures as the report has them."""
    metadata = json.loads((run_dir / "mobile" / "metadata.json").read_text())
    card = metadata["model_card"]
    assert card["row"] == {"id": 10, "label": "EfficientNet-Lite0 fine-tuning"}
    figures = card["figures"][0]
    assert figures["scope"].startswith("pooled out-of-fold predictions of 3-fold")
    assert abs(figures["auc"]["value"] - float(rows[10]["auc"])) < 1e-6
    assert abs(figures["auc"]["low"] - float(rows[10]["auc_ci_low"])) < 1e-6
    assert abs(figures["calibration"]["slope_risk"]
               - float(rows[10]["calibration_slope_recalibrated"])) < 1e-6
    assert card["external"] == [] and card["software"]["thyroid"]
    assert "TIRADS ratings (4a and above = 1), not pathology" in card["label"]
    assert card["threshold_source"].startswith("the study's operating point 'youden'")
    assert "3-fold cross-validation" in card["protocol"]
    text = (run_dir / "mobile" / "MODEL_CARD.md").read_text()
    for part in ("## Intended use", "## Training data", "## Figures", "| AUC | "
                 f"{float(rows[10]['auc']):.3f} (95 % CI", "--quick", "synthetic images",
                 "## Limitations", "- Source ddti:"):
        assert part in text, part
    assert metadata["features"]["source"] == "frozen_prefix"
    assert metadata["features"]["weights"].startswith("ImageNet")


def check_exported_threshold(run_dir, predictions):
    """The phone model is the refit of row 10 and carries the median fold threshold."""
    metadata = json.loads((run_dir / "mobile" / "metadata.json").read_text())
    refit = json.loads((run_dir / "train" / "10_efficientnet_lite0_finetune" / "refit"
                        / "run_config.json").read_text())["config"]
    fold_thresholds = {p["fold"]: float(p["threshold"]) for p in predictions
                       if p["row_id"] == "10" and p["fold"] != "external"}
    assert refit["cv_fold"] == -1
    assert metadata["threshold"] == refit["threshold"]
    assert abs(metadata["threshold"] - statistics.median(fold_thresholds.values())) < 1e-6


def check_logreg_folds_fit_on_their_training_part(run_dir, assignment):
    """Row 11 chose C inside each fold's training originals: no validation or test image."""
    from thyroid.datasets import folds
    from thyroid.training.logreg import C_GRID, SELECTION_FILE
    fold_data = folds.load_folds(str(run_dir / "shards" / folds.FOLDS_NAME))
    for fold in range(assignment["num_folds"]):
        row_dir = run_dir / "train" / "11_efficientnet_lite0_bottleneck_logreg"
        train_dir = row_dir / f"repeat0_fold{fold}"
        selection = json.loads((train_dir / SELECTION_FILE).read_text())
        members = folds.fold_members(fold_data, 0, fold)
        assert selection["C"] in C_GRID
        assert selection["images"] == len(members["train"]), fold


def plant_duplicate(development, external):
    """Copies the first labelled development case into the external folder as case 900."""
    from thyroid.datasets import ddti
    for name in sorted((n for n in os.listdir(development) if n.endswith(".xml")),
                       key=lambda n: int(n[:-4])):
        fields, marks = ddti.parse_case(os.path.join(development, name))
        if ddti.tirads_label(fields["tirads"]) is not None:
            break
    case = name[:-4]
    shutil.copy(os.path.join(development, name), os.path.join(external, "900.xml"))
    for index, _ in marks:
        shutil.copy(os.path.join(development, f"{case}_{index}.jpg"),
                    os.path.join(external, f"900_{index}.jpg"))
    return f"ddti:900_{marks[0][0]}.jpg", f"ddti:{case}_{marks[0][0]}.jpg"


def test_external_validation_scores_the_refit_and_the_fold_ensemble(tmp_path):
    from thyroid.datasets import synthetic
    from thyroid.study.config import QUICK_SYNTHETIC_CASES
    from thyroid.study.data import QUICK_SIZE
    # The development set the study will generate (same seed, same bytes), to copy from.
    synthetic.generate(str(tmp_path / "development"), num_cases=QUICK_SYNTHETIC_CASES, seed=0,
                       **QUICK_SIZE)
    synthetic.generate(str(tmp_path / "external"), num_cases=12, seed=7, width=280, height=180)
    planted, original = plant_duplicate(str(tmp_path / "development" / "ddti"),
                                        str(tmp_path / "external" / "ddti"))
    _, run_dir = run_study(tmp_path, "--rows=8,9,10,11", "--cv_repeats=2",
                           "--final_model=folds",
                           f"--external_ddti_dir={tmp_path / 'external' / 'ddti'}")
    assignment, _ = check_one_out_of_fold_prediction_each(run_dir, (8, 9, 10, 11),
                                                          num_repeats=2)
    external = [p for p in read_predictions(run_dir) if p["fold"] == "external"]
    ensemble = [p for p in read_predictions(run_dir) if p["fold"] == "external_folds"]
    external_images = json.loads((run_dir / "external_shards" / "manifest.json").read_text())[
        "splits"][EXTERNAL_SPLIT]["images"]
    rows = read_rows(run_dir)
    for row_id in (8, 9, 10, 11):
        mine = [p for p in external if p["row_id"] == str(row_id)]
        assert len(mine) == external_images - 1 > 0  # the planted duplicate is left out
        assert planted not in {p["image"] for p in mine + ensemble}
        folds = [p for p in ensemble if p["row_id"] == str(row_id)]
        assert sorted(p["image"] for p in folds) == sorted(p["image"] for p in mine)
        assert all(float(p["spread"]) >= 0 for p in folds)
        row_name = f"{row_id:02d}_efficientnet_lite0_{rows[row_id]['mode']}"
        refit_dir = run_dir / "train" / row_name / "refit"
        refit = json.loads((refit_dir / "run_config.json").read_text())
        if row_id == 11:  # the refit chose its C on every development original
            selection = json.loads((refit_dir / "logreg_selection.json").read_text())
            assert selection["images"] == len(assignment["images"])
        # predictions.csv keeps 9 significant digits
        assert all(abs(float(p["threshold"]) - refit["config"]["threshold"]) < 1e-8 for p in mine)
        for name in ("external_auc", "external_auc_refit", "external_auc_folds",
                     "external_patient_auc_max"):
            assert 0.0 <= float(rows[row_id][name]) <= 1.0, name
        assert abs(float(rows[row_id]["external_net_benefit_at_0_20"])) <= 1.0
        assert rows[row_id]["external_auc"] == rows[row_id]["external_auc_folds"]
        assert rows[row_id]["external_brier"] != ""
    summary = (run_dir / "summary.md").read_text()
    assert "## External validation" in summary and "fold ensemble (mean risk) (final)" in summary
    assert (f"1 of {external_images} external images byte-identical (SHA-256)" in summary
            and tables.md(f"{planted} = {original}") in summary)
    counts = summary.split("| external source |", 1)[1].split("\n\n", 1)[0].splitlines()
    assert counts[2].startswith("| ddti | ") and len(counts) == 3  # the table has its row
    metadata = json.loads((run_dir / "mobile" / "metadata.json").read_text())
    assert metadata["ensemble"]["folds"] == 3 and metadata["ensemble"]["layout"] == "one_model"
    # The one-file fold ensemble shares the frozen prefix: it carries the shift reference.
    assert metadata["shift"]["file"] == "shift_reference.npz"
    assert (run_dir / "mobile" / "shift_reference.npz").read_bytes() == (
        run_dir / "shift" / "shift_reference.npz").read_bytes()
    check_external_shift(run_dir, rows, ensemble, summary, planted)
    check_adapting_a_fold_ensemble(run_dir, tmp_path)


def check_adapting_a_fold_ensemble(run_dir, tmp_path):
    """``thyroid.adapt`` on the fold-ensemble export: the adapted export answers with one
    score (the members' mean through the site's map, or the new head on the members' shared
    features), a heat map, and the model card says what it was adapted from."""
    from thyroid import adapt, predict
    from thyroid.datasets import synthetic, synthetic_scans
    from thyroid.deploy.tflite_model import TFLiteModel
    site = tmp_path / "site"
    synthetic.write_class_folders(str(site), 60, 33, 280, 180, look=synthetic_scans.OTHER_SCANNER)
    adapted = tmp_path / "adapted"
    assert adapt.main(["adapt", f"--model={run_dir / 'mobile'}", f"--image_dir={site}",
                       f"--output_dir={adapted}", f"--checkpoint_dir={tmp_path / 'checkpoints'}",
                       "--num_bootstrap=100"]) == 0
    metadata = json.loads((adapted / "metadata.json").read_text())
    assert metadata["adaptation"]["adapted_from"] == str(run_dir / "mobile")
    assert metadata["adaptation"]["measured"]["images"] == 60
    model = TFLiteModel.load(str(adapted))
    assert len(model.maps) == 1 and model.has_cam
    paths = sorted(str(p) for p in site.glob("*/*.jpg"))[:3]
    out = tmp_path / "adapted.csv"
    assert predict.main(["predict", f"--model={adapted}", f"--csv={out}", *paths]) == 0
    answers = out.read_text().splitlines()[1:]
    assert len(answers) == 3 and all(0.0 <= float(a.split(",")[1]) <= 1.0 for a in answers)
    assert "## Adapted to a site" in (adapted / "MODEL_CARD.md").read_text()


def check_external_shift(run_dir, rows, scored, summary, planted):
    """summary.csv's and summary.md's external figures by shift agree with the shift job's
    scores of the external images (one score for every row; the planted duplicate left out)
    and follow the rule: an AUC on a side needs 5 images of each class there, else — and the
    counts."""
    import csv
    with open(run_dir / "shift" / "shift_scores.csv", newline="") as f:
        shift = {line["image"]: float(line["shift"]) for line in csv.DictReader(f)
                 if line["set"] == "external"}
    assert planted in shift  # scored, but not in any row's figures
    for row_id, row in rows.items():
        if not row.get("external_auc"):
            continue
        mine = [p for p in scored if p["row_id"] == str(row_id)]
        values = [shift[p["image"]] for p in mine]
        unusual = [p for p in mine if shift[p["image"]] > 99.0]
        assert float(row["external_unusual_share"]) == pytest.approx(
            len(unusual) / len(mine), abs=1e-5)
        assert float(row["external_median_shift"]) == pytest.approx(statistics.median(values),
                                                                    rel=1e-4)
        md_cells = []
        for side, members in (("usual", [p for p in mine if p not in unusual]),
                              ("unusual", unusual)):
            counts = [sum(int(p["label"]) == label for p in members) for label in (0, 1)]
            assert [int(row[f"external_{side}_{name}"])
                    for name in ("benign", "malignant")] == counts
            cell = f"({counts[0]} benign, {counts[1]} malignant)"
            if min(counts) >= 5:
                auc = float(row[f"external_auc_{side}"])
                assert 0.0 <= auc <= 1.0
                md_cells.append(f"{auc:.2f} {cell}")
            else:
                assert row[f"external_auc_{side}"] == ""
                md_cells.append(f"— {cell}")
        assert (f"| {float(row['external_median_shift']):.1f} | {md_cells[0]} | "
                f"{md_cells[1]} |") in summary
        page = (run_dir / "summary.html").read_text()
        assert all(f"<td>{cell}</td>" in page for cell in md_cells)
    assert "Shift score of the external images" in summary


def test_single_split_study_is_kept_with_cv_folds_0(tmp_path):
    _, run_dir = run_study(tmp_path, "--cv_folds=0", "--rows=9", "--noexport")
    assert read_rows(run_dir)[9]["status"] == "ok"
    assert not (run_dir / "predictions.csv").exists()
    assert (run_dir / "shards" / "test-00000-of-00002.tfrecord").exists()


def test_random_init_rows_are_labelled_as_such(tmp_path):
    _, run_dir = run_study(tmp_path, "--allow_random_init", "--rows=2,6", "--noexport")
    rows = read_rows(run_dir)
    assert sorted(rows) == [2, 6]
    for row in rows.values():
        assert row["status"] == "ok"
        assert "random init" in row["checkpoint"]
    assert "random init (no ImageNet checkpoint)" in (run_dir / "summary.md").read_text()


def test_image_protocol_says_it_leaks(tmp_path):
    _, run_dir = run_study(tmp_path, "--protocol=image", "--rows=1", "--noexport")
    summary = (run_dir / "summary.md").read_text()
    assert "leak" in summary.lower()
    assert read_rows(run_dir)[1]["status"] == "ok"


def test_run_all_script_passes_its_flags_to_the_study(tmp_path):
    """The newcomer's command: flags reach the study (and not the venv set-up it sources)."""
    done = subprocess.run(
        ["./run_all.sh", "--quick", "--rows=1", "--noexport", "--nodownload_checkpoints",
         f"--output_dir={tmp_path}", "--run_name=script", f"--checkpoint_dir={tmp_path / 'ck'}"],
        cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == f"summary: {tmp_path / 'script' / 'summary.md'}"
    assert read_rows(tmp_path / "script")[1]["status"] == "ok"


REPORT_FILES = ("summary.md", "summary.csv", "predictions.csv", "roc.png", "calibration.png",
                "decision_curve.png", "summary.html")


def test_report_only_rebuilds_the_same_report_from_the_result_files(quick_run, tmp_path):
    _, run_dir = quick_run
    kept = tmp_path / "kept"
    kept.mkdir()
    for name in REPORT_FILES:
        shutil.copy(run_dir / name, kept / name)
        os.remove(run_dir / name)
    done = subprocess.run([sys.executable, "-m", "thyroid.study", f"--report_only={run_dir}"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == f"summary: {run_dir / 'summary.md'}"
    for name in REPORT_FILES:
        assert (run_dir / name).read_bytes() == (kept / name).read_bytes(), name


def test_a_run_folder_is_never_reused_without_resume(quick_run):
    """Same explicit run name: refused at once, with the command that continues the run."""
    _, run_dir = quick_run
    before = sorted(p.name for p in run_dir.iterdir())
    done = subprocess.run(
        [sys.executable, "-m", "thyroid.study", "--quick", f"--output_dir={run_dir.parent}",
         "--run_name=run"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert "already exists; add --resume" in done.stderr.strip().splitlines()[-1]
    assert sorted(p.name for p in run_dir.iterdir()) == before


def test_every_job_commits_its_result_and_the_plan_names_them(quick_run):
    _, run_dir = quick_run
    plan = json.loads((run_dir / "plan.json").read_text())
    kinds = {job["kind"] for job in plan["jobs"]}
    assert {"data", "shards", "checkpoints", "features", "fit", "refit", "pooled", "export",
            "report"} <= kinds
    assert "ensemble" not in kinds and "external_check" not in kinds  # no external set
    for job in plan["jobs"]:
        result = json.loads((run_dir / "jobs" / job["id"] / "result.json").read_text())
        assert result["job"] == job["id"] and len(result["fingerprint"]) == 64
        assert result["status"] in ("ok", "skipped"), result
