"""The build's worker processes: the same bytes for any number of workers, augmentation seeded
per image, an ordered map with a bounded number of tasks in flight, and records written
without TensorFlow that parse as the tf.train.Example they stand for."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from thyroid import build_tfrecords as command
from thyroid.datasets import build as build_lib
from thyroid.datasets import records, shards, workers


def _square(value):
    return value * value


def _fail(value):
    raise ValueError(f"task {value} failed")


def _die(value):
    os._exit(3)


def _build_with(synthetic_root, output, protocol, num_workers):
    assert command.main([
        "build_tfrecords", f"--ddti_dir={synthetic_root / 'ddti'}",
        f"--local_dir={synthetic_root / 'local'}", f"--output_dir={output}", "--overwrite",
        f"--protocol={protocol}", "--augment_copies=2", "--num_shards=3",
        f"--num_workers={num_workers}"]) == 0
    files = {name: (output / name).read_bytes() for name in sorted(os.listdir(output))}
    return files, json.loads(files.pop(shards.MANIFEST_NAME))


@pytest.mark.parametrize("protocol", ["patient", "image"])
def test_shards_are_byte_identical_for_one_or_two_workers(synthetic_root, tmp_path, protocol):
    output = tmp_path / "data"  # the same folder both times, so the manifests can be equal
    one, one_manifest = _build_with(synthetic_root, output, protocol, 1)
    two, two_manifest = _build_with(synthetic_root, output, protocol, 2)
    assert sorted(one) == sorted(two)
    assert len([name for name in one if name.endswith(".tfrecord")]) == 9
    for name in one:
        assert one[name] == two[name], name
    assert (one_manifest.pop("build_workers"), two_manifest.pop("build_workers")) == (1, 2)
    one_manifest.pop("build_seconds"), two_manifest.pop("build_seconds")
    assert one_manifest == two_manifest
    assert "num_workers" not in one_manifest["build_config"]
    assert sum(one_manifest["splits"]["train"]["total"].values()) > \
        sum(one_manifest["splits"]["train"]["original"].values())  # copies were made


def _image_folder(root, names):
    rng = np.random.RandomState(0)
    for index in range(4):
        pixels = rng.randint(0, 255, (40, 48, 3)).astype(np.uint8)  # same pixels in every folder
        name = f"{('benign', 'malignant')[index % 2]}/{index}.png"
        if name in names:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(root / name)
    return root


def _copies_by_key(output):
    data = shards.load_split(str(output), "train")
    copies = {}
    for image, key, augmented in zip(data.images, data.keys, data.augmented):
        if augmented:
            copies.setdefault(key, []).append(image.tobytes())
    return {key: sorted(values) for key, values in copies.items()}


def test_an_images_augmented_copies_do_not_depend_on_the_other_images(tmp_path):
    """An image's copies come from its own key and the seed: leaving another image out (here
    the first one read) used to shift a stream shared by every image and change them all."""
    every = ["benign/0.png", "malignant/1.png", "benign/2.png", "malignant/3.png"]
    copies = []
    for name, names in (("all", every), ("fewer", every[1:])):
        folder = _image_folder(tmp_path / f"images_{name}", names)
        build_lib.build(build_lib.BuildConfig(
            output_dir=str(tmp_path / name), sources={"folders": str(folder)}, crop="none",
            augment_copies=2, validation_fraction=0.0, test_fraction=0.0, num_shards=1,
            num_workers=1))
        copies.append(_copies_by_key(tmp_path / name))
    shared = sorted(set(copies[0]) & set(copies[1]))
    assert len(shared) == 3
    for key in shared:
        assert len(copies[0][key]) == 2
        assert copies[0][key] == copies[1][key], key


def test_records_written_without_tensorflow_parse_as_the_tf_example():
    from thyroid.compat import tf

    def as_bytes(value):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    def as_int(value):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))

    for label, tirads, augmented, height, width in ((1, "4a", True, 300, 70000),
                                                   (0, None, False, 1, 127)):
        expected = tf.train.Example(features=tf.train.Features(feature={
            "image/encoded": as_bytes(b"\xff\xd8 not really a jpeg"),
            "image/format": as_bytes(b"jpeg"), "image/class/label": as_int(label),
            "image/height": as_int(height), "image/width": as_int(width),
            "image/patient_id": as_bytes("local:Zoë".encode()), "image/source": as_bytes(b"local"),
            "image/tirads": as_bytes((tirads or "").encode()),
            "image/augmented": as_int(int(augmented)),
            "image/key": as_bytes("local:Zoë/scan 1.png".encode())}))
        ours = records.example_bytes(b"\xff\xd8 not really a jpeg", height, width, label,
                                     "local:Zoë", "local", tirads, augmented,
                                     "local:Zoë/scan 1.png")
        assert tf.train.Example.FromString(ours) == expected


def test_workers_return_results_in_order_with_a_bounded_number_in_flight():
    pulled = []

    def tasks():
        for value in range(40):
            pulled.append(value)
            yield value

    with workers.Workers(2) as pool:
        results = pool.map(_square, tasks())
        assert next(results) == 0
        assert len(pulled) == pool.window  # no more submitted than the window
        assert list(results) == [value * value for value in range(1, 40)]
    with workers.Workers(1) as pool:  # one worker: this process, same results
        assert list(pool.map(_square, range(5))) == [0, 1, 4, 9, 16]


def test_a_failing_or_dying_worker_is_reported_here():
    with workers.Workers(2) as pool:
        with pytest.raises(ValueError, match="task 3 failed"):
            list(pool.map(_fail, [3]))
    with workers.Workers(2) as pool:
        with pytest.raises(workers.WorkerError, match="a worker process died"):
            list(pool.map(_die, [1, 2]))


def test_num_workers_defaults_to_the_cores_and_is_checked(tmp_path, capsys):
    from absl import flags
    fv = flags.FlagValues()
    command.define_flags(fv)
    assert fv["num_workers"].default == len(os.sched_getaffinity(0))
    assert command.main(["build_tfrecords", "--image_dir=x", f"--output_dir={tmp_path / 'o'}",
                         "--num_workers=0"]) == 2
    assert "--num_workers=0" in capsys.readouterr().err
    with pytest.raises(build_lib.ConfigError, match=r"^--num_workers=-1: must be in \[0, 256\]"):
        build_lib.BuildConfig(output_dir="o", sources={"folders": "x"},
                              num_workers=-1).validate(check_paths=False)


def test_the_studys_builds_use_their_jobs_cpu_share(monkeypatch, tmp_path):
    from thyroid.study import data, resources
    from thyroid.study.config import StudyConfig
    asked = []
    monkeypatch.setattr(data.build, "build", lambda config: asked.append(config.num_workers) or {})
    monkeypatch.setattr(data.folds, "write_folds", lambda *args: None)
    sources = data.Sources(str(tmp_path), None, "test")
    monkeypatch.setattr(resources, "_APPLIED", {"threads": 3})  # --cpus_per_job=3, or Ray's
    data.build_development_shards(StudyConfig(), sources, str(tmp_path / "a"))
    data.build_single_split_shards(StudyConfig(cv_folds=0), sources, str(tmp_path / "b"))
    data.build_external_shards({"csv": "x.csv"}, str(tmp_path / "c"), 0)
    monkeypatch.setattr(resources, "_APPLIED", {})  # the local executor's default: every core
    data.build_development_shards(StudyConfig(), sources, str(tmp_path / "a"))
    assert asked == [3, 3, 3, len(os.sched_getaffinity(0))]


def _children(pid):
    """{pid: command line} of the live (not zombie) processes whose parent is ``pid``."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                command_line = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # ended meanwhile
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found[int(entry)] = command_line
    return found


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads the process table in /proc")
def test_workers_end_when_their_parent_is_killed(synthetic_root, tmp_path):
    """SIGKILL to the building process alone (not its group): no clean-up runs in it, and its
    workers must still end, not wait forever for tasks."""
    import signal
    import subprocess
    import sys
    import time
    build = subprocess.Popen(
        [sys.executable, "-m", "thyroid.build_tfrecords", f"--ddti_dir={synthetic_root / 'ddti'}",
         f"--local_dir={synthetic_root / 'local'}", f"--output_dir={tmp_path / 'out'}",
         "--augment_copies=60", "--num_workers=2"],  # work for far longer than the wait
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    spawned = {}
    try:
        deadline = time.monotonic() + 120
        while len(spawned) < 2 and build.poll() is None and time.monotonic() < deadline:
            spawned = {pid: line for pid, line in _children(build.pid).items()
                       if "multiprocessing" in line and "resource_tracker" not in line}
            time.sleep(0.05)
        assert len(spawned) == 2, "the build's two workers did not start"
        time.sleep(0.5)  # started and at work
        assert build.poll() is None, "the build ended before it could be killed"
        spawned = _children(build.pid)  # the workers and multiprocessing's resource tracker
        os.kill(build.pid, signal.SIGKILL)
        build.wait()
        deadline = time.monotonic() + 15
        while any(_alive(pid) for pid in spawned) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not {pid: line for pid, line in spawned.items() if _alive(pid)}
    finally:
        for pid in spawned:  # whatever this test started and is still there
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        if build.poll() is None:
            build.kill()
            build.wait()
