"""run_config.json holds every setting of a run: train from flags, read them all back, and
evaluate and export from the folder alone."""

import json
import os

import pytest

from thyroid.training.run_config import ConfigError, FILE_NAME, OldFormatError, RunConfig

SETTINGS = {"optimizer": "momentum", "learning_rate": 0.003, "batch_size": 8,
            "max_number_of_steps": 3, "image_size": 64, "seed": 7, "class_weight": "none"}


def test_a_run_keeps_every_setting_and_evaluate_and_export_need_only_its_folder(
        patient_build, tmp_path, capsys):
    from thyroid import evaluate, export, train
    dataset_dir, _ = patient_build
    train_dir = tmp_path / "run"
    argv = ["thyroid.train", "--model=efficientnet_lite0", "--mode=finetune",
            f"--dataset_dir={dataset_dir}", f"--train_dir={train_dir}", "--allow_random_init",
            f"--checkpoint_dir={tmp_path / 'none'}", f"--cache_dir={tmp_path / 'cache'}",
            *(f"--{name}={value}" for name, value in SETTINGS.items())]
    assert train.main(argv) == 0, capsys.readouterr().err

    config = RunConfig.load(str(train_dir))
    for name, value in SETTINGS.items():
        assert getattr(config, name) == value, name
    assert config.model == "efficientnet_lite0" and config.mode == "finetune"
    assert config.dataset_dir == os.path.abspath(dataset_dir)
    assert config.checkpoint_description == "random init (no ImageNet checkpoint)"
    assert config.trainable_scopes and config.checkpoint_exclude_scopes
    saved = json.loads((train_dir / FILE_NAME).read_text())
    assert saved["command_line"] == argv and saved["thyroid_version"]

    assert evaluate.main(["thyroid.evaluate", f"--train_dir={train_dir}"]) == 0
    assert json.loads((train_dir / "metrics_test.json").read_text())["split"] == "test"
    assert evaluate.main(["thyroid.evaluate", f"--train_dir={train_dir}", "--split=validation"]) == 0
    out = tmp_path / "export"
    assert export.main(["thyroid.export", f"--train_dir={train_dir}", f"--output_dir={out}"]) == 0
    metadata = json.loads((out / "metadata.json").read_text())
    assert metadata["test_metrics"]["file"] == "metrics_test.json"
    assert metadata["test_metrics"]["values"]["split"] == "test"


def test_export_never_takes_another_split_as_test(tmp_path, patient_build):
    from thyroid.deploy.export import _test_metrics
    config = RunConfig(model="small_cnn", mode="scratch", dataset_dir=str(patient_build[0]))
    (tmp_path / "metrics_validation.json").write_text(json.dumps({"split": "validation"}))
    assert _test_metrics(str(tmp_path), config) is None
    (tmp_path / "metrics_test.json").write_text(json.dumps({"split": "validation"}))
    assert _test_metrics(str(tmp_path), config) is None
    # Test figures that do not say which dataset they scored are not shipped as the run's.
    (tmp_path / "metrics_test.json").write_text(json.dumps({"split": "test"}))
    assert _test_metrics(str(tmp_path), config) is None


def test_scoring_another_dataset_keeps_the_runs_own_metrics(patient_build, tmp_path, capsys):
    """The reported defect: evaluate --dataset_dir=OTHER overwrote metrics_test.json and export
    shipped the other set's figures as the run's."""
    from thyroid import build_tfrecords, evaluate, train
    dataset_dir, _ = patient_build
    run = tmp_path / "run"
    assert train.main(["train", "--model=small_cnn", "--mode=scratch", "--image_size=32",
                       f"--dataset_dir={dataset_dir}", f"--train_dir={run}",
                       "--max_number_of_steps=2", "--batch_size=8"]) == 0, capsys.readouterr().err
    assert evaluate.main(["evaluate", f"--train_dir={run}", "--num_bootstrap=10"]) == 0
    own = json.loads((run / "metrics_test.json").read_text())
    assert own["own_dataset"] and own["dataset_dir"] == os.path.abspath(dataset_dir)

    other, csv = tmp_path / "other", tmp_path / "two.csv"
    from PIL import Image
    from thyroid.datasets import shards
    data = shards.load_split(str(dataset_dir), "test")
    rows = ["path,label"]
    for index in (0, 1):
        Image.fromarray(data.images[index]).save(tmp_path / f"img{index}.png")
        rows.append(f"img{index}.png,{index}")
    csv.write_text("\n".join(rows) + "\n")
    assert build_tfrecords.main(["build", f"--csv={csv}", "--evaluation_only", "--crop=none",
                                 f"--output_dir={other}"]) == 0, capsys.readouterr().err
    capsys.readouterr()
    assert evaluate.main(["evaluate", f"--train_dir={run}", f"--dataset_dir={other}",
                          "--num_bootstrap=10"]) == 0
    out = capsys.readouterr().out
    assert json.loads((run / "metrics_test.json").read_text()) == own
    others = sorted(p.name for p in run.glob("metrics_test-*.json"))
    assert len(others) == 1 and others[0] in out
    scored = json.loads((run / others[0]).read_text())
    assert scored["dataset_dir"] == str(other) and not scored["own_dataset"]
    assert scored["counts"]["images"] == 2 and scored["dataset_fingerprint"] != own["dataset_fingerprint"]
    # small_cnn cannot be exported; what export would ship comes from the same helper.
    from thyroid.deploy.export import _test_metrics
    assert _test_metrics(str(run), RunConfig.load(str(run)))["values"] == own

    # The run's own validation split is empty in an evaluation-only set: one line, no file.
    status = evaluate.main(["evaluate", f"--train_dir={run}", f"--dataset_dir={other}",
                            "--split=validation"])
    err = capsys.readouterr().err
    assert status == 1 and "holds no validation images" in err and len(err.splitlines()) == 1
    assert not list(run.glob("metrics_validation*"))


def test_first_format_loads_with_defaults_and_unknown_formats_say_what_to_do(tmp_path):
    first = {"model": "small_cnn", "mode": "scratch", "dataset_dir": "/d", "image_size": 32,
             "checkpoint_path": None, "checkpoint_description": "random", "cache_dir": "",
             "trainable_scopes": ["SmallCNN"], "uses_frozen_prefix": False, "seed": 3,
             "threshold": 0.5, "extra": {}}
    (tmp_path / FILE_NAME).write_text(json.dumps(first))
    config = RunConfig.load(str(tmp_path))
    assert (config.image_size, config.seed, config.trainable_scopes) == (32, 3, ("SmallCNN",))
    assert config.optimizer == "adam"
    (tmp_path / FILE_NAME).write_text(json.dumps({"format": 99, "config": {}}))
    with pytest.raises(OldFormatError, match="retrain"):
        RunConfig.load(str(tmp_path))
    (tmp_path / FILE_NAME).write_text(json.dumps(dict(first, colour="blue")))
    with pytest.raises(OldFormatError, match="colour"):
        RunConfig.load(str(tmp_path))


def test_save_and_load_round_trip_every_field(tmp_path):
    config = RunConfig(model="vgg_16", mode="bottleneck_svm", dataset_dir="/d",
                       checkpoint_exclude_scopes=("a", "b"), svm_class_weight="balanced",
                       svm_standardize=True, num_epochs=2.5, threshold=0.3)
    config.save(str(tmp_path), argv=["x"])
    assert RunConfig.load(str(tmp_path)) == config


@pytest.mark.parametrize("changes,flag", [
    ({"batch_size": 0}, "batch_size"), ({"learning_rate": -1.0}, "learning_rate"),
    ({"num_epochs": 0.0}, "num_epochs"), ({"max_number_of_steps": -5}, "max_number_of_steps"),
    ({"image_size": 7}, "image_size"), ({"threshold": 2.0}, "threshold"),
    ({"mode": "x"}, "mode"), ({"model": "x"}, "model"), ({"save_interval_steps": 0}, "save_interval_steps"),
])
def test_validate_names_the_bad_setting(changes, flag):
    config = RunConfig(model="small_cnn", mode="scratch", dataset_dir="unused").replace(**changes)
    with pytest.raises(ConfigError) as error:
        config.validate(check_dataset=False)
    assert error.value.flag == flag and str(error.value).startswith(f"--{flag}=")
