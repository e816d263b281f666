"""Never delete, move or replace a path the command did not create: every entry point's output
flags against the places no command may write, run in-process as a user would type them."""

import os

import pytest

from thyroid import bottleneck, build_tfrecords, export, synth, train
from thyroid.study import __main__ as study
from thyroid.checkpoints import __main__ as checkpoints_cli
from thyroid.datasets import shards


def _snapshot(root):
    """Every path below ``root`` with its size and mtime: what a refused command must not touch."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            stat = os.lstat(path)
            found[os.path.relpath(path, root)] = (stat.st_size, stat.st_mtime_ns)
    return found


@pytest.fixture
def place(tmp_path, monkeypatch, synthetic_root):
    """A working folder (the current one) holding a user's file, a home folder, an input folder
    with an image, and a folder of someone else's files."""
    work, home = tmp_path / "work", tmp_path / "home"
    for folder in (work, home, tmp_path / "images" / "benign", tmp_path / "foreign"):
        folder.mkdir(parents=True)
    (work / "thesis.tex").write_text("years of work")
    (home / "notes.txt").write_text("mine")
    (tmp_path / "foreign" / "data.csv").write_text("a,b\n")
    source = os.path.join(synthetic_root, "ddti")
    jpg = sorted(n for n in os.listdir(source) if n.endswith(".jpg"))[0]
    (tmp_path / "images" / "benign" / jpg).write_bytes(open(os.path.join(source, jpg), "rb").read())
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(home))
    return tmp_path


# (entry point, the flags it needs besides the output, the output flag). ``{images}`` is the
# input folder, ``{build}`` a finished dataset.
ENTRY_POINTS = [
    (build_tfrecords, ["--image_dir={images}"], "output_dir"),
    (synth, ["--num_cases=1"], "output_dir"),
    (study, ["--ddti_dir={images}", "--quick"], "output_dir"),
    (train, ["--dataset_dir={build}", "--model=small_cnn", "--mode=scratch"], "train_dir"),
    (train, ["--dataset_dir={build}", "--model=small_cnn", "--mode=scratch",
             "--train_dir={root}/run"], "cache_dir"),
    (bottleneck, ["--dataset_dir={build}", "--model=small_cnn"], "cache_dir"),
    (export, ["--train_dir={build}"], "output_dir"),
    (checkpoints_cli, ["download", "--models=vgg_16", "--url=http://127.0.0.1:9/x"],
     "checkpoint_dir"),
    (checkpoints_cli, ["convert"], "checkpoint_dir"),
]

# (output value, the words the one-line error must hold); the input clashes apply to the
# commands that read an input folder.
PLACES = [
    ("", "is empty"),
    (".", "is the current folder"),
    ("{root}/work", "is the current folder"),
    ("/", "file-system root"),
    ("{root}/home", "home folder"),
    ("~", "home folder"),
    ("{root}/work/thesis.tex", "not a folder"),
]
INPUT_CLASHES = [
    ("{images}", "is the input"),
    ("{images}/benign/out", "inside the input"),
    ("{root}", "contains the input"),
]
FOREIGN = ("{root}/foreign", "did not write")


def _cases():
    for module, extra, flag in ENTRY_POINTS:
        reads_images = any("{images}" in arg for arg in extra) and module is not export
        places = PLACES + (INPUT_CLASHES if reads_images else [])
        if module is study:  # a study adds run folders; its --output_dir may hold the data
            places = [place for place in places if "contains" not in place[1]]
        if flag in ("output_dir", "train_dir") and module is not study:  # runs sit side by side
            places = places + [FOREIGN]
        for value, words in places:
            if flag == "cache_dir" and not value:
                continue  # an empty --cache_dir means the default, beside the dataset
            yield pytest.param(module, extra, flag, value, words,
                               id=f"{module.__name__.split('.')[-1]}-{' '.join(extra[:1])}-"
                                  f"{flag}={value}")


@pytest.mark.parametrize("module,extra,flag,value,words", list(_cases()))
def test_every_output_flag_refuses_places_it_must_not_write(
        module, extra, flag, value, words, place, patient_build, capsys):
    fill = {"root": str(place), "images": str(place / "images"), "build": str(patient_build[0])}
    before = _snapshot(place)
    argv = [module.__name__] + [arg.format(**fill) for arg in extra]
    argv.append(f"--{flag}={value.format(**fill)}")
    status = module.main(argv)
    err = capsys.readouterr().err
    assert status == 2, err
    assert f"--{flag}=" in err and words in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert _snapshot(place) == before


@pytest.mark.parametrize("name", ["../x", "a/b", "/tmp/abs", "..", "."])
def test_a_run_name_is_one_folder_name(name, place, capsys):
    status = study.main(["study", f"--ddti_dir={place / 'images'}", "--quick",
                         f"--output_dir={place / 'results'}", f"--run_name={name}"])
    err = capsys.readouterr().err
    assert status == 2 and "--run_name=" in err and "single folder name" in err
    assert not (place / "results").exists() and not (place / "x").exists()


def test_an_empty_output_dir_keeps_the_current_folder(place, capsys):
    """The reported defect: an empty --output_dir swapped the current folder away."""
    status = build_tfrecords.main(["build_tfrecords", f"--image_dir={place / 'images'}",
                                   "--output_dir="])
    assert status == 2 and "is empty" in capsys.readouterr().err
    assert (place / "work" / "thesis.tex").read_text() == "years of work"


def test_a_symlinked_output_is_rebuilt_at_its_target_and_stays_a_link(place, capsys):
    target, link = place / "shards", place / "link"
    args = ["build_tfrecords", f"--image_dir={place / 'images'}", "--crop=none",
            "--evaluation_only"]
    assert build_tfrecords.main(args + [f"--output_dir={target}"]) == 0, capsys.readouterr().err
    first = os.stat(target / shards.MANIFEST_NAME).st_mtime_ns
    os.symlink(target, link)
    assert build_tfrecords.main(args + [f"--output_dir={link}", "--overwrite"]) == 0, \
        capsys.readouterr().err
    assert os.path.islink(link) and os.readlink(link) == str(target)
    assert os.path.isfile(target / shards.MANIFEST_NAME)
    assert os.stat(target / shards.MANIFEST_NAME).st_mtime_ns != first
    assert sorted(os.listdir(place)) == sorted(
        ["foreign", "home", "images", "link", "shards", "work"])
