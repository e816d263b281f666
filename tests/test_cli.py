"""Bad invocations of every entry point: one line on stderr naming the flag, non-zero exit,
never a traceback. Most run in-process (``main(argv)`` on fresh flags); a few run as real
processes to prove nothing else reaches the terminal."""

import importlib
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENTRY_POINTS = ("train", "evaluate", "bottleneck", "build_tfrecords", "synth", "study", "export",
                "predict", "serve", "checkpoints.__main__")


@pytest.fixture(scope="module")
def dirs(tmp_path_factory, patient_build):
    base = tmp_path_factory.mktemp("cli")
    empty = base / "empty"
    empty.mkdir()
    return {"shards": str(patient_build[0]), "empty": str(empty), "missing": str(base / "missing"),
            "out": str(base / "out"), "train": str(base / "train")}


def train_args(d, *extra):
    return [f"--dataset_dir={d['shards']}", f"--train_dir={d['train']}", *extra]


# train with one bad setting: flag=value -> words the line must contain
TRAIN_BAD_VALUES = {
    "batch_size=0": "range [1, 4096]", "save_interval_steps=0": "range [1,",
    "learning_rate=-1": "-1", "learning_rate=11": "11", "num_epochs=0": "(0, 10000]",
    "max_number_of_steps=-5": "range [0,", "image_size=7": "at least 8",
    "image_size=5000": "range [0, 1024]", "log_every_n_steps=0": "range [1,",
    "eval_every_n_steps=-1": "range [1,", "seed=-1": "range [0,", "model=resnet": "must be one of",
    "mode=magic": "one of", "optimizer=lbfgs": "one of", "batch_size=many": "invalid literal",
    "class_weight=heavy": "one of",
}


def train_case(setting, words):
    return ("train", lambda d: train_args(d, f"--{setting}"), "--" + setting.split("=")[0], words)


# (module, argv after the program name, flag the one line must name, words it must contain)
CASES = [train_case(setting, words) for setting, words in TRAIN_BAD_VALUES.items()] + [
    ("train", lambda d: ["--train_dir=x"], "--dataset_dir", "value other than None"),
    ("train", lambda d: [f"--dataset_dir={d['missing']}", "--train_dir=x"], "--dataset_dir", "no such folder"),
    ("train", lambda d: [f"--dataset_dir={d['empty']}", "--train_dir=x"], "--dataset_dir", "no train-"),
    ("train", lambda d: train_args(d, "--model=vgg_16", "--image_size=16"), "--image_size", "at least 32"),
    ("train", lambda d: train_args(d, "--no_such_flag=1"), "no_such_flag", "Unknown command line flag"),
    ("evaluate", lambda d: [f"--train_dir={d['missing']}"], "--train_dir", "no such folder"),
    ("evaluate", lambda d: ["--train_dir=x", "--num_bootstrap=0"], "--num_bootstrap", "range [1,"),
    ("evaluate", lambda d: ["--train_dir=x", "--threshold=1.5"], "--threshold", "1.5"),
    ("evaluate", lambda d: ["--train_dir=x", "--split=dev"], "--split", "one of"),
    ("evaluate", lambda d: ["--train_dir=x", "--seed=-2"], "--seed", "range [0,"),
    ("evaluate", lambda d: [f"--train_dir={d['empty']}"], "run_config.json", "not a training directory"),
    ("bottleneck", lambda d: [f"--dataset_dir={d['shards']}", "--batch_size=-1"], "--batch_size", "range [0,"),
    ("bottleneck", lambda d: [f"--dataset_dir={d['shards']}", "--image_size=-3"], "--image_size", "range [0,"),
    ("bottleneck", lambda d: [f"--dataset_dir={d['shards']}", "--seed=-3"], "--seed", "range [0,"),
    ("bottleneck", lambda d: [f"--dataset_dir={d['empty']}"], "--dataset_dir", "no train-"),
    ("synth", lambda d: [f"--output_dir={d['out']}", "--num_cases=-1"], "--num_cases", "range [1,"),
    ("synth", lambda d: [f"--output_dir={d['out']}", "--height=5"], "--height", "range [120,"),
    ("synth", lambda d: [f"--output_dir={d['out']}", "--width=5"], "--width", "range [160,"),
    ("synth", lambda d: [f"--output_dir={d['out']}", "--num_local_cases=-1"], "--num_local_cases", "range [0,"),
    ("synth", lambda d: [f"--output_dir={d['out']}", "--seed=-1"], "--seed", "range [0,"),
    ("build_tfrecords", lambda d: [f"--output_dir={d['out']}", "--test_fraction=1.5"], "--test_fraction", "range"),
    ("build_tfrecords", lambda d: [f"--output_dir={d['out']}", "--validation_fraction=2"], "--validation_fraction", "range"),
    ("build_tfrecords", lambda d: [f"--output_dir={d['out']}", "--validation_fraction=0.5",
                                   "--test_fraction=0.5"], "--test_fraction", "leave images"),
    ("build_tfrecords", lambda d: [f"--output_dir={d['out']}", "--augment_copies=-1"], "--augment_copies", "range [0,"),
    ("build_tfrecords", lambda d: [f"--output_dir={d['out']}", "--num_shards=0"], "--num_shards", "range [1,"),
    ("build_tfrecords", lambda d: [f"--output_dir={d['out']}", "--seed=-1"], "--seed", "range [0,"),
    ("study", lambda d: ["--augment_copies=-1"], "--augment_copies", "range [0,"),
    ("study", lambda d: ["--num_cases=-1"], "--num_cases", "range [0,"),
    ("study", lambda d: ["--seed=-1"], "--seed", "range [0,"),
    ("study", lambda d: ["--rows=0,12"], "--rows", "row ids are 1,2"),
    ("study", lambda d: [f"--ddti_dir={d['missing']}"], "--ddti_dir", "no such folder"),
    ("study", lambda d: ["--cv_folds=1"], "--cv_folds", "at least 2 folds"),
    ("study", lambda d: ["--cv_repeats=0"], "--cv_repeats", "range [1,"),
    ("study", lambda d: ["--operating_point=sensitivity:2"], "--operating_point", "outside [0, 1]"),
    ("study", lambda d: [f"--external_ddti_dir={d['missing']}"], "--external_ddti_dir",
     "no such folder"),
    ("study", lambda d: [f"--external_image_dir={d['missing']}"], "--external_image_dir",
     "no such folder"),
    ("study", lambda d: [f"--external_csv={d['out']}/list.csv"], "--external_csv",
     "no such file"),
    ("study", lambda d: [f"--external_csv={d['empty']}"], "--external_csv", "no such file"),
    ("study", lambda d: [f"--external_ddti_dir={d['empty']}", "--cv_folds=0"],
     "--external_ddti_dir", "cross-validated"),
    ("study", lambda d: ["--final_model=folds", "--cv_folds=0"], "--final_model",
     "cross-validated"),
    ("study", lambda d: ["--final_model=average"], "--final_model", "one of"),
    ("study", lambda d: ["--recalibrate=isotonic"], "--recalibrate", "one of"),
    ("study", lambda d: ["--inner_validation_fraction=0.9"], "--inner_validation_fraction",
     "range [0.05,"),
    ("export", lambda d: [f"--train_dir={d['train']}", f"--output_dir={d['out']}",
                          "--representative_count=0"], "--representative_count", "range [1,"),
    ("export", lambda d: [f"--train_dir={d['train']}", f"--output_dir={d['out']}",
                          "--quantize=int4"], "--quantize", "one of"),
    ("serve", lambda d: ["--model=x", "--port=70000"], "--port", "range [0, 65535]"),
    ("serve", lambda d: ["--model=x", "--max_upload_mb=0"], "--max_upload_mb", "range"),
    ("predict", lambda d: [], "--model", "value other than None"),
    ("checkpoints.__main__", lambda d: ["download", "--timeout=0"], "--timeout", "range"),
    ("checkpoints.__main__", lambda d: ["verify", "--models=resnet"], "--models", "choose from"),
    ("checkpoints.__main__", lambda d: ["fetch"], "command", "one of download"),
]


def invoke(module, argv, capsys):
    entry = importlib.import_module(f"thyroid.{module}" + (".__main__" if module == "study" else ""))
    status = entry.main([f"thyroid.{module}", *argv])
    return status, capsys.readouterr()


@pytest.mark.parametrize("module,make_argv,flag,words", CASES,
                         ids=[f"{c[0]}:{c[2]}:{i}" for i, c in enumerate(CASES)])
def test_bad_value_is_one_line_naming_the_flag(dirs, capsys, module, make_argv, flag, words):
    status, captured = invoke(module, make_argv(dirs), capsys)
    command = module.split(".")[0]
    lines = captured.err.strip().splitlines()
    assert status in (1, 2), (status, captured.err)
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"{command}: error: "), lines[0]
    assert flag in lines[0] and words in lines[0], lines[0]
    assert "Traceback" not in captured.err + captured.out


def test_usage_errors_exit_2_and_failures_exit_1(dirs, capsys):
    assert invoke("train", train_args(dirs, "--batch_size=0"), capsys)[0] == 2
    assert invoke("train", train_args(dirs, "--image_size=7"), capsys)[0] == 2
    missing_checkpoint = train_args(dirs, "--model=vgg_16", "--mode=bottleneck_fc",
                                    f"--checkpoint_dir={dirs['missing']}")
    status, captured = invoke("train", missing_checkpoint, capsys)
    assert status == 1
    assert "train: error: vgg_16: ImageNet checkpoint not found" in captured.err
    assert "python -m thyroid.checkpoints download --models=vgg_16" in captured.err


def test_every_entry_point_is_in_the_table():
    assert {case[0] for case in CASES} == set(ENTRY_POINTS)


@pytest.mark.parametrize("argv,flag", [
    (["thyroid.train", "--dataset_dir=/no/such/folder", "--train_dir=/tmp/x"], "--dataset_dir"),
    (["thyroid.train", "--dataset_dir=.", "--train_dir=/tmp/x", "--learning_rate=-1"], "--learning_rate"),
    (["thyroid.synth", "--output_dir=/tmp/x", "--height=5"], "--height"),
])
def test_a_real_process_prints_one_line(argv, flag):
    """These fail before TensorFlow loads, so its start-up log cannot add lines either."""
    done = subprocess.run([sys.executable, "-m", *argv], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and flag in lines[0], done.stderr
    assert lines[0].startswith(argv[0].split(".")[1] + ": error: --")


def test_the_ray_executor_without_ray_says_how_to_install_it(tmp_path):
    """Ray is imported only when asked for; where it is missing, one line says what to do."""
    code = ("import sys; sys.modules['ray'] = None; "
            "from thyroid.study.__main__ import main; "
            f"sys.exit(main(['study', '--quick', '--executor=ray', '--output_dir={tmp_path}']))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last == ("study: error: --executor=ray: Ray is not installed here; "
                    "pip install -e '.[ray]'"), last
    assert not list(tmp_path.iterdir())  # refused before any run folder


# Flags each entry point needs before it looks at others (absl checks required flags first).
REQUIRED_ARGS = {"train": ["--dataset_dir=d", "--train_dir=t"], "evaluate": ["--train_dir=t"],
                 "build_tfrecords": ["--output_dir=o"], "serve": ["--model=m"],
                 "predict": ["--model=m"], "export": ["--train_dir=t", "--output_dir=o"],
                 "checkpoints.__main__": ["download"]}


def float_flags(module):
    from absl import flags
    entry = importlib.import_module(f"thyroid.{module}" + (".__main__" if module == "study" else ""))
    flag_values = flags.FlagValues()
    entry.define_flags(flag_values)
    return [name for name in flag_values if flag_values[name].flag_type() == "float"]


FLOAT_CASES = [(module, name, value) for module in ENTRY_POINTS for name in float_flags(module)
               for value in ("nan", "inf", "-inf")]


@pytest.mark.parametrize("module,name,value", FLOAT_CASES,
                         ids=[f"{m}:{n}={v}" for m, n, v in FLOAT_CASES])
def test_a_float_flag_that_is_not_finite_is_refused_before_any_work(tmp_path, capsys, module,
                                                                    name, value):
    argv = [f"--{name}={value}", f"--output_dir={tmp_path / 'out'}"] if module == "study" \
        else [*REQUIRED_ARGS.get(module, []), f"--{name}={value}"]
    status, captured = invoke(module, argv, capsys)
    lines = captured.err.strip().splitlines()
    assert status == 2 and len(lines) == 1, captured.err
    assert lines[0].startswith(f"{module.split('.')[0]}: error: --{name}="), lines[0]
    assert not (tmp_path / "out").exists()


def test_every_float_flag_is_checked():
    assert {m for m, _, _ in FLOAT_CASES} == {"train", "evaluate", "build_tfrecords", "study",
                                              "serve", "checkpoints.__main__"}
    assert ("study", "cpus_per_job", "nan") in FLOAT_CASES
    assert ("study", "gpus_per_job", "nan") in FLOAT_CASES
