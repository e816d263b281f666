"""thyroid.checkpoints: .pth reader safety, EfficientNet-Lite0 conversion + ImageNet verify,
offline download failure."""

import collections
import importlib
import io
import json
import os
import pickle
import subprocess
import sys
import time
import types
import zipfile

import numpy as np
import pytest

from thyroid.checkpoints.convert import convert, default_pth_path
from thyroid.checkpoints.download import DownloadError, download
from thyroid.checkpoints.pth_reader import UnsafePickleError, load_state_dict
from thyroid.checkpoints.verify import imagenet_top_k

download_module = importlib.import_module("thyroid.checkpoints.download")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------- .pth reader

class _Storage:
    def __init__(self, key, array):
        self.key, self.array = key, array


def _fake_torch(monkeypatch):
    """Importable stand-ins for torch._utils._rebuild_tensor_v2 and torch.FloatStorage, so
    pickle can write what torch.save writes (the reader never imports them)."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    float_storage = type("FloatStorage", (), {"__module__": "torch"})
    long_storage = type("LongStorage", (), {"__module__": "torch"})
    torch.FloatStorage, torch.LongStorage, torch._utils = float_storage, long_storage, utils
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return torch


def _write_zip_pth(path, state, torch):
    """state: name -> (storage array, offset, size, stride)."""

    class Tensor:
        def __init__(self, storage, offset, size, stride):
            self.args = (storage, offset, size, stride, False, collections.OrderedDict())

        def __reduce__(self):
            return (torch._utils._rebuild_tensor_v2, self.args)

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, _Storage):
                kind = torch.LongStorage if obj.array.dtype == np.int64 else torch.FloatStorage
                return ("storage", kind, obj.key, "cpu", obj.array.size)
            return None

    storages, objects = {}, collections.OrderedDict()
    for name, (array, offset, size, stride) in state.items():
        storage = _Storage(str(len(storages)), array)
        storages[storage.key] = storage
        objects[name] = Tensor(storage, offset, size, stride)
    buffer = io.BytesIO()
    Pickler(buffer, protocol=2).dump(objects)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", buffer.getvalue())
        for key, storage in storages.items():
            little_endian = storage.array.astype(storage.array.dtype.newbyteorder("<"))
            archive.writestr("archive/data/%s" % key, little_endian.tobytes())


def test_pth_reader_zip_format(tmp_path, monkeypatch):
    torch = _fake_torch(monkeypatch)
    hwio = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    oihw = np.transpose(hwio, (3, 2, 0, 1))  # a permuted (non-contiguous) view, as in the file
    strides = (1, 5, 60, 20)  # element strides of oihw over hwio's buffer
    assert np.array_equal(np.lib.stride_tricks.as_strided(
        hwio.ravel(), oihw.shape, tuple(s * 4 for s in strides)), oihw)
    state = {"conv.weight": (hwio.ravel(), 0, oihw.shape, strides),
             "bias": (np.arange(10, dtype=np.float32), 4, (3,), (2,)),
             "bn.num_batches_tracked": (np.array([7], np.int64), 0, (), ())}
    path = tmp_path / "model.pth"
    _write_zip_pth(path, state, torch)
    monkeypatch.delitem(sys.modules, "torch")
    monkeypatch.delitem(sys.modules, "torch._utils")
    loaded = load_state_dict(str(path))
    assert list(loaded) == ["conv.weight", "bias", "bn.num_batches_tracked"]
    np.testing.assert_array_equal(loaded["conv.weight"], oihw)
    np.testing.assert_array_equal(loaded["bias"], [4, 6, 8])
    assert int(loaded["bn.num_batches_tracked"]) == 7


class _Evil:
    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return (self.func, (self.arg,))


@pytest.mark.parametrize("attack", ["os.system", "builtins.eval", "posix.system"])
def test_pth_reader_refuses_other_callables(tmp_path, attack):
    marker = tmp_path / "pwned"
    if attack == "builtins.eval":
        import builtins
        payload = _Evil(builtins.eval, "open(%r, 'w').close()" % str(marker))
    else:
        payload = _Evil(os.system, "touch %s" % marker)
    data = pickle.dumps(collections.OrderedDict(weight=payload), protocol=2)
    path = tmp_path / "evil.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", data)
    with pytest.raises(UnsafePickleError, match="Refusing to load"):
        load_state_dict(str(path))
    assert not marker.exists()
    # The legacy (non-zip) format goes through the same restricted unpickler.
    legacy = tmp_path / "evil_legacy.pth"
    legacy.write_bytes(pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)
                       + pickle.dumps(1001, protocol=2) + pickle.dumps({}, protocol=2) + data)
    with pytest.raises(UnsafePickleError, match="Refusing to load"):
        load_state_dict(str(legacy))
    assert not marker.exists()


def test_real_pth_is_read_without_torch():
    assert "torch" not in sys.modules
    state = load_state_dict(default_pth_path())
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_blocks.0._depthwise_conv.weight"].shape == (32, 1, 3, 3)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert state["_bn0.running_var"].dtype == np.float32
    assert "torch" not in sys.modules


# ---------------------------------------------------------------- convert + verify

@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    checkpoint_dir = tmp_path_factory.mktemp("checkpoints")
    path = convert("efficientnet_lite0", str(checkpoint_dir))
    return str(checkpoint_dir), path


def test_convert_writes_checkpoint(converted):
    checkpoint_dir, path = converted
    assert path == os.path.join(checkpoint_dir, "efficientnet_lite0", "model.ckpt")
    assert os.path.exists(path + ".index")
    assert not [f for f in os.listdir(checkpoint_dir) if f.startswith(".tmp")]
    from thyroid.checkpoints import inspect_checkpoint
    shapes = dict(inspect_checkpoint(os.path.dirname(path)))
    assert shapes["efficientnet_lite0/stem/weights"] == (3, 3, 3, 32)
    assert shapes["efficientnet_lite0/blocks_1/depthwise/depthwise_weights"] == (3, 3, 96, 1)
    assert shapes["efficientnet_lite0/Logits/fc/weights"] == (1280, 1000)


def test_verify_efficientnet_lite0_imagenet(converted):
    checkpoint_dir, path = converted
    result = imagenet_top_k("efficientnet_lite0", path)
    assert list(result) == ["china.jpg", "flower.jpg"]
    china = [c for c, _ in result["china.jpg"]]
    assert len(china) == 5 and 442 in china and 698 in china
    assert result["flower.jpg"][0][0] == 985
    for top in result.values():
        probabilities = [p for _, p in top]
        assert probabilities == sorted(probabilities, reverse=True)


def test_verify_cli_json(converted):
    checkpoint_dir, _ = converted
    output = subprocess.run(
        [sys.executable, "-m", "thyroid.checkpoints", "verify", "--models=efficientnet_lite0",
         "--checkpoint_dir=%s" % checkpoint_dir, "--json"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert output.returncode == 0, output.stderr[-2000:]
    result = json.loads(output.stdout.strip().splitlines()[-1])
    assert set(result) == {"china.jpg", "flower.jpg"}
    for top in result.values():
        assert len(top) == 5
        assert all(isinstance(c, int) and 0 <= c < 1000 and 0 <= p <= 1 for c, p in top)
    assert result["flower.jpg"][0][0] == 985


# ---------------------------------------------------------------- download

def test_download_offline_fails_fast(tmp_path):
    start = time.time()
    with pytest.raises(DownloadError) as info:
        download("mobilenet_v1", str(tmp_path), url="http://127.0.0.1:9/mobilenet_v1_1.0_224.tgz",
                 timeout=5, progress=False)
    assert time.time() - start < 15
    message = str(info.value)
    assert "mobilenet_v1_1.0_224.tgz" in message and str(tmp_path) in message
    assert "mobilenet_v1_1.0_224.ckpt" in message and "by hand" in message
    assert os.listdir(tmp_path) == []  # no half-written file


def _tarball(path, files):
    """Writes a .tgz holding ``files`` (name -> bytes) under ``./``, like the official ones."""
    import tarfile
    with tarfile.open(path, "w:gz") as archive:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo("./" + name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


MOBILENET_FILES = {"mobilenet_v1_1.0_224.ckpt" + suffix: b"x" for suffix in (
    ".index", ".data-00000-of-00001", ".meta")}
MOBILENET_FILES["mobilenet_v1_1.0_224.tflite"] = b"x"


def _no_verify(monkeypatch):
    checked = []
    monkeypatch.setattr(download_module, "verify_variables",
                        lambda model, path: checked.append((model, path)) or 1)
    return checked


def _sha256(path):
    import hashlib
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_download_extracts_a_placed_tarball(tmp_path, monkeypatch):
    """A tarball placed by hand is checked against the pinned hash, extracted and verified
    without any network access; its sha256 is recorded beside the checkpoint."""
    monkeypatch.setattr(download_module, "fetch", lambda *a, **k: pytest.fail("no network"))
    checked = _no_verify(monkeypatch)
    checkpoint_dir = tmp_path / "checkpoints"
    checkpoint_dir.mkdir()
    tarball = _tarball(checkpoint_dir / "mobilenet_v1_1.0_224.tgz", MOBILENET_FILES)
    digest = _sha256(tarball)
    monkeypatch.setitem(download_module.PUBLISHED_SHA256, "mobilenet_v1_1.0_224.tgz", digest)
    path = download("mobilenet_v1", str(checkpoint_dir), progress=False)
    assert path == str(checkpoint_dir / "mobilenet_v1" / "mobilenet_v1_1.0_224.ckpt")
    assert sorted(os.listdir(checkpoint_dir / "mobilenet_v1")) == [
        "mobilenet_v1_1.0_224.ckpt.data-00000-of-00001", "mobilenet_v1_1.0_224.ckpt.index",
        "mobilenet_v1_1.0_224.ckpt.meta", "mobilenet_v1_1.0_224.tgz.sha256"]
    record = (checkpoint_dir / "mobilenet_v1" / "mobilenet_v1_1.0_224.tgz.sha256").read_text()
    assert record == "%s  mobilenet_v1_1.0_224.tgz\n" % digest
    assert checked == [("mobilenet_v1", path)]
    assert os.listdir(checkpoint_dir) == ["mobilenet_v1"]


def test_placed_tarball_with_wrong_hash_is_not_extracted(tmp_path, monkeypatch):
    checked = _no_verify(monkeypatch)
    tarball = _tarball(tmp_path / "mobilenet_v1_1.0_224.tgz", MOBILENET_FILES)
    with pytest.raises(download_module.ChecksumError) as info:
        download("mobilenet_v1", str(tmp_path), progress=False)
    assert download_module.PUBLISHED_SHA256["mobilenet_v1_1.0_224.tgz"] in str(info.value)
    assert _sha256(tarball) in str(info.value) and "\n" not in str(info.value)
    assert os.listdir(tmp_path) == ["mobilenet_v1_1.0_224.tgz"] and not checked


def test_official_urls_are_https():
    from thyroid.nets import get_network
    for model in download_module.DOWNLOADABLE:
        spec = get_network(model)
        url = download_module.official_url(spec.checkpoint.url)
        assert url.startswith("https://storage.googleapis.com/download.tensorflow.org/models/")
        assert url.endswith("/" + spec.checkpoint.tarball)
        assert url in download_module.manual_instructions(spec, "checkpoints")
    readme = open(os.path.join(REPO, "checkpoints", "README.md")).read()
    assert "http://" not in readme and readme.count("https://storage.googleapis.com/") >= 3
    assert download_module.PUBLISHED_SHA256["mobilenet_v1_1.0_224.tgz"] in readme


def test_manual_instructions_name_the_real_files():
    from thyroid.nets import get_network
    expected = {"vgg_16": ["vgg_16.ckpt"], "inception_v3": ["inception_v3.ckpt"],
                "mobilenet_v1": ["mobilenet_v1_1.0_224.ckpt.index",
                                 "mobilenet_v1_1.0_224.ckpt.data-00000-of-00001"]}
    for model, files in expected.items():
        spec = get_network(model)
        assert download_module.checkpoint_files(spec) == files
        text = download_module.manual_instructions(spec, "checkpoints")
        assert "put %s into" % " and ".join(files) in text
        assert ".index" not in text or model == "mobilenet_v1"


@pytest.fixture
def tarball_server(tmp_path):
    """-> (folder, base URL) of a local http server over ``folder`` (no network needed)."""
    import functools
    import http.server
    import threading
    folder = tmp_path / "served"
    folder.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, "http://127.0.0.1:%d" % server.server_address[1]
    server.shutdown()
    server.server_close()


def test_download_records_sha256(tmp_path, tarball_server, monkeypatch):
    folder, base = tarball_server
    checked = _no_verify(monkeypatch)
    tarball = _tarball(folder / "vgg_16_2016_08_28.tar.gz", {"vgg_16.ckpt": b"weights"})
    checkpoint_dir = tmp_path / "checkpoints"
    path = download("vgg_16", str(checkpoint_dir), url=base + "/vgg_16_2016_08_28.tar.gz",
                    progress=False)
    assert path == str(checkpoint_dir / "vgg_16" / "vgg_16.ckpt")
    assert (checkpoint_dir / "vgg_16" / "vgg_16.ckpt").read_bytes() == b"weights"
    record = checkpoint_dir / "vgg_16" / "vgg_16_2016_08_28.tar.gz.sha256"
    assert record.read_text() == "%s  vgg_16_2016_08_28.tar.gz\n" % _sha256(tarball)
    assert os.listdir(checkpoint_dir) == ["vgg_16"] and checked == [("vgg_16", path)]


def test_download_refuses_pinned_hash_mismatch(tmp_path, tarball_server, monkeypatch):
    folder, base = tarball_server
    checked = _no_verify(monkeypatch)
    _tarball(folder / "mobilenet_v1_1.0_224.tgz", MOBILENET_FILES)
    checkpoint_dir = tmp_path / "checkpoints"
    with pytest.raises(download_module.ChecksumError, match="not the published 2fadeabb"):
        download("mobilenet_v1", str(checkpoint_dir), url=base + "/mobilenet_v1_1.0_224.tgz",
                 progress=False)
    assert os.listdir(checkpoint_dir) == [] and not checked  # no tarball, temp or extraction


def test_download_refuses_a_tarball_without_the_checkpoint(tmp_path, tarball_server, monkeypatch):
    folder, base = tarball_server
    _no_verify(monkeypatch)
    monkeypatch.setattr(download_module, "PUBLISHED_SHA256", {})
    files = {k: v for k, v in MOBILENET_FILES.items() if not k.endswith(".index")}
    _tarball(folder / "mobilenet_v1_1.0_224.tgz", files)
    with pytest.raises(DownloadError, match="holds no mobilenet_v1_1.0_224.ckpt.index"):
        download("mobilenet_v1", str(tmp_path / "c"), url=base + "/mobilenet_v1_1.0_224.tgz",
                 progress=False)
    assert not (tmp_path / "c" / "mobilenet_v1").exists()


def _cli(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    output = subprocess.run([sys.executable, "-m", "thyroid.checkpoints"] + list(args),
                            cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    errors = [line for line in output.stderr.splitlines() if "error: " in line]
    assert "Traceback" not in output.stderr, output.stderr[-3000:]
    return output, errors


def test_cli_errors_are_one_line(tmp_path, tarball_server):
    folder, base = tarball_server
    _tarball(folder / "mobilenet_v1_1.0_224.tgz", MOBILENET_FILES)
    checkpoint_dir = tmp_path / "checkpoints"
    output, errors = _cli("download", "--models=mobilenet_v1",
                          "--checkpoint_dir=%s" % checkpoint_dir,
                          "--url=%s/mobilenet_v1_1.0_224.tgz" % base)
    assert output.returncode == 1 and len(errors) == 1 and "sha256" in errors[0]
    assert os.listdir(checkpoint_dir) == []
    output, errors = _cli("inspect", str(tmp_path / "absent"))
    assert output.returncode == 1 and len(errors) == 1 and "absent" in errors[0]
    output, errors = _cli("verify", "--models=mobilenet_v1",
                          "--checkpoint_path=%s" % (tmp_path / "absent.ckpt"))
    assert output.returncode == 1 and len(errors) == 1 and "absent.ckpt" in errors[0]


def test_cli_checkpoint_mismatch_is_one_line(tmp_path):
    """A checkpoint in place whose variables are not MobileNet's: one line, exit 1."""
    from thyroid.compat import tf, tf1
    target = tmp_path / "mobilenet_v1"
    with tf.Graph().as_default():
        tf1.get_variable("MobilenetV1/Conv2d_0/weights", [1, 1, 1, 1])
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            tf1.train.Saver().save(sess, str(target / "mobilenet_v1_1.0_224.ckpt"),
                                   write_meta_graph=False)
    output, errors = _cli("download", "--models=mobilenet_v1", "--checkpoint_dir=%s" % tmp_path)
    assert output.returncode == 1 and len(errors) == 1, output.stderr[-3000:]
    assert "MobilenetV1/Conv2d_0/weights" in errors[0]


def test_download_cli_offline(tmp_path):
    output, errors = _cli("download", "--models=inception_v3", "--checkpoint_dir=%s" % tmp_path,
                          "--url=http://127.0.0.1:9/x.tar.gz", "--timeout=5")
    assert output.returncode == 1 and len(errors) == 1
    assert "inception_v3_2016_08_28.tar.gz" in errors[0]
    assert "put inception_v3.ckpt into" in errors[0] and ".index" not in errors[0]
