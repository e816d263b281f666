"""Bit depths, the header-only pixel limit and DICOM decoding."""

import os

import numpy as np
import pytest
from PIL import Image

from thyroid.datasets import images
from thyroid.datasets.images import decode_image_bytes


def _save(path, array):
    Image.fromarray(array).save(path)
    return str(path)


def _gradient(high, dtype, shape=(32, 40)):
    return (np.linspace(0, high, shape[0] * shape[1]).reshape(shape)).astype(dtype)


def test_eight_bit_images_are_unchanged(tmp_path):
    gray = _gradient(255, np.uint8)
    rgb = np.stack([gray, 255 - gray, gray // 2], axis=2)
    for name, array in (("g.png", gray), ("c.png", rgb), ("c.bmp", rgb), ("g.tif", gray)):
        loaded = images.load_image(_save(tmp_path / name, array))
        expected = array if array.ndim == 3 else np.repeat(array[:, :, None], 3, axis=2)
        assert np.array_equal(loaded, expected), name


@pytest.mark.parametrize("extension", [".png", ".tif"])
def test_sixteen_bit_is_scaled_not_clipped(tmp_path, extension):
    twelve_bit = _gradient(4095, np.uint16)
    loaded = images.load_image(_save(tmp_path / f"a{extension}", twelve_bit))[:, :, 0]
    assert loaded.max() == 255 and loaded.min() == 0
    assert np.all(np.diff(loaded.ravel().astype(int)) >= 0)  # order kept, no clipping plateau
    assert np.count_nonzero(loaded == 255) < 0.01 * loaded.size
    expected = np.rint(twelve_bit.astype(float) * 255 / 4095).astype(np.uint8)
    assert np.array_equal(loaded, expected)
    full = images.load_image(_save(tmp_path / f"b{extension}", _gradient(65535, np.uint16)))
    assert full[0, 0, 0] == 0 and full[-1, -1, 0] == 255 and 120 <= full[16, 0, 0] <= 135


def test_sixteen_bit_holding_eight_bit_values_keeps_them(tmp_path):
    values = np.full((32, 32), 100, np.uint16)
    values[0, 0] = 200
    loaded = images.load_image(_save(tmp_path / "grey100.png", values))
    assert loaded[5, 5, 0] == 100 and loaded[0, 0, 0] == 200


def test_pixel_limit_checked_from_header(tmp_path):
    path = _save(tmp_path / "big.png", np.zeros((300, 400), np.uint8))
    assert images.check_pixel_count(path, 120_000) == (400, 300, 1)
    with pytest.raises(images.ImageError, match=r"image too large: 400x300 = 120000 pixels.*"
                                                r"limit of 119999"):
        images.load_image(path, max_pixels=119_999)
    with open(path, "rb") as f:
        data = f.read()
    with pytest.raises(images.ImageError, match="too large"):
        decode_image_bytes(data, max_pixels=1000)
    assert decode_image_bytes(data).shape == (300, 400, 3)


def test_pixel_limit_refuses_bomb_without_decoding(tmp_path):
    # 9000 x 9000 declared (under Pillow's own 89 Mpx warning); decoding needs 243 MB of RGB.
    path = tmp_path / "bomb.png"
    Image.new("L", (9000, 9000)).save(path)
    assert path.stat().st_size < 1_000_000
    with pytest.raises(images.ImageError, match="9000x9000"):
        images.load_image(str(path))


def test_unrecognised_bytes_give_clear_error():
    with pytest.raises(images.ImageError, match="cannot decode image: unrecognised format"):
        images.decode_image_bytes(b"not an image at all")


def test_load_image_opens_regular_files_only(tmp_path):
    os.mkfifo(tmp_path / "p.jpg")
    os.symlink("/dev/zero", tmp_path / "z.jpg")
    for name in ("p.jpg", "z.jpg"):
        with pytest.raises(images.ImageError, match="^not a regular file"):
            images.load_image(str(tmp_path / name))
    big = tmp_path / "big.png"
    Image.new("L", (64, 64)).save(big)
    with open(big, "r+b") as f:
        f.truncate(images.max_file_bytes(4096) + 1)
    with pytest.raises(images.ImageError, match="^file too large"):
        images.load_image(str(big), max_pixels=4096)


def test_hashing_streams_regular_files_up_to_a_limit(tmp_path):
    import hashlib
    from thyroid.datasets import files
    path = tmp_path / "a.bin"
    path.write_bytes(b"x" * 3_000_000)  # three blocks
    assert files.sha256(str(path), 3_000_000) == hashlib.sha256(b"x" * 3_000_000).hexdigest()
    with pytest.raises(files.FileError, match="^file too large: 3000000 bytes"):
        files.sha256(str(path), 2_999_999)
    os.symlink("/dev/zero", tmp_path / "z.jpg")
    with pytest.raises(files.FileError, match="^not a regular file: character device"):
        files.sha256(str(tmp_path / "z.jpg"), 10)


# ---- DICOM (written with pydicom) -------------------------------------------------------

pydicom = pytest.importorskip("pydicom")


def write_dicom(path, pixels, photometric="MONOCHROME2", bits=8, patient_id="P1", frames=1,
                **extra):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.6.1"  # ultrasound image storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.PatientID = patient_id
    ds.Modality = "US"
    ds.PhotometricInterpretation = photometric
    ds.SamplesPerPixel = 1 if photometric.startswith("MONOCHROME") else 3
    ds.Rows, ds.Columns = pixels.shape[-2:] if ds.SamplesPerPixel == 1 else pixels.shape[-3:-1]
    if ds.SamplesPerPixel == 3:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = 8 if bits == 8 else 16
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits - 1, 0
    if frames > 1:
        ds.NumberOfFrames = frames
    for key, value in extra.items():
        setattr(ds, key, value)
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return str(path)


def test_dicom_monochrome_bit_depths_and_inversion(tmp_path):
    gray8 = _gradient(255, np.uint8)
    assert np.array_equal(images.load_image(write_dicom(tmp_path / "a.dcm", gray8))[:, :, 0], gray8)
    inverted = images.load_image(write_dicom(tmp_path / "b.dcm", gray8, "MONOCHROME1"))
    assert np.array_equal(inverted[:, :, 0], 255 - gray8)
    gray12 = _gradient(4095, np.uint16)
    loaded = images.load_image(write_dicom(tmp_path / "c.dcm", gray12, bits=12))[:, :, 0]
    assert loaded.min() == 0 and loaded.max() == 255
    assert np.array_equal(loaded, np.rint(gray12 * 255.0 / 4095).astype(np.uint8))


def test_dicom_window_is_applied(tmp_path):
    gray = _gradient(4095, np.uint16)
    path = write_dicom(tmp_path / "w.dcm", gray, bits=12, WindowCenter=1000, WindowWidth=400)
    loaded = images.load_image(path)[:, :, 0]
    assert loaded[gray < 790].max() == 0 and loaded[gray > 1210].min() == 255
    middle = loaded[(gray > 900) & (gray < 1100)]
    assert 0 < middle.min() and middle.max() < 255


@pytest.mark.parametrize("width", ["NaN", 0, -5])
def test_dicom_unusable_window_falls_back_to_the_value_range(tmp_path, width):
    import warnings
    gray = _gradient(4095, np.uint16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns when it writes NaN as a decimal string
        path = write_dicom(tmp_path / "w.dcm", gray, bits=12, WindowCenter=1000, WindowWidth=width)
    fallbacks = []
    with np.errstate(all="raise"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ... and when it reads it back
        loaded = images.load_image(path, fallbacks=fallbacks)[:, :, 0]
    assert np.array_equal(loaded, np.rint(gray * 255.0 / 4095).astype(np.uint8))
    from thyroid.datasets import dicom
    assert fallbacks == [dicom.WINDOW_FALLBACK]


def test_dicom_window_of_width_one_is_a_threshold(tmp_path):
    gray = _gradient(4095, np.uint16)
    path = write_dicom(tmp_path / "w1.dcm", gray, bits=12, WindowCenter=1000, WindowWidth=1)
    with np.errstate(all="raise"):
        loaded = images.load_image(path)[:, :, 0]
    assert np.array_equal(loaded, np.where(gray > 999.5, 255, 0).astype(np.uint8))


def test_dicom_rgb_ybr_and_multiframe(tmp_path):
    rgb = np.zeros((32, 40, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    assert np.array_equal(images.load_image(write_dicom(tmp_path / "rgb.dcm", rgb, "RGB")), rgb)
    from pydicom.pixels import convert_color_space
    ybr = convert_color_space(rgb, "RGB", "YBR_FULL")
    back = images.load_image(write_dicom(tmp_path / "ybr.dcm", ybr, "YBR_FULL"))
    assert np.abs(back.astype(int) - rgb).max() <= 2
    frames = np.stack([np.full((32, 40), v, np.uint8) for v in (10, 90, 170)])
    first = images.load_image(write_dicom(tmp_path / "cine.dcm", frames, frames=3))
    assert np.all(first == 10)  # the first frame becomes the image
    assert images.check_pixel_count(str(tmp_path / "cine.dcm")) == (40, 32, 3)


def test_dicom_pixel_limit_and_bytes(tmp_path):
    path = write_dicom(tmp_path / "a.dcm", _gradient(255, np.uint8))
    with pytest.raises(images.ImageError, match="too large"):
        images.load_image(path, max_pixels=100)
    with open(path, "rb") as f:
        assert decode_image_bytes(f.read()).shape == (32, 40, 3)


def _bad_dicoms(tmp_path):
    """Pixel data that disagrees with the header: 3 samples declared MONOCHROME2, and 16 frames
    of data under a header without NumberOfFrames."""
    three_samples = write_dicom(tmp_path / "m3.dcm", np.full((32, 40, 3), 100, np.uint8), "RGB",
                                PhotometricInterpretation="MONOCHROME2")
    excess = write_dicom(tmp_path / "f16.dcm", np.arange(4096, dtype=np.uint8).reshape(16, 16, 16))
    return [three_samples, excess]


@pytest.mark.filterwarnings("ignore:The number of bytes of pixel data")
def test_dicom_whose_pixels_disagree_with_its_header_is_refused(tmp_path):
    for path in _bad_dicoms(tmp_path):
        with pytest.raises(images.ImageError, match="^unsupported DICOM: "):
            images.load_image(path)


@pytest.mark.filterwarnings("ignore:The number of bytes of pixel data")
def test_predict_reports_a_bad_dicom_and_still_predicts_the_good_image(tmp_path):
    from thyroid.deploy import predict, tflite_model
    model = tflite_model.TFLiteModel.__new__(tflite_model.TFLiteModel)  # no interpreter needed
    model.crop, model.image_size, model.threshold, model.labels = "scan", 32, 0.5, ("b", "m")
    from thyroid.stats.recalibration import RecalibrationMap
    model.maps = [RecalibrationMap()]  # one model, risk = its score
    model.shift_reference = None
    # The model file's run stands in: one score, no map, no features.
    model.outputs = lambda net_input: tflite_model.Outputs(np.array([0.75]), None, None, None)
    good = _save(tmp_path / "good.png", _gradient(255, np.uint8, (64, 80)))
    bad = _bad_dicoms(tmp_path)
    results = predict.predict_files(model, bad + [good])
    assert [r["error"].startswith("unsupported DICOM: ") for r in results[:2]] == [True, True]
    assert results[2]["probability"] == pytest.approx(0.75) and "error" not in results[2]
