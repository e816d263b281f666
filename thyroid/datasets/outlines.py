"""The outline set: every image of the sources with its nodule outline, for the segmentation
network and the localisation rows (``build_outline_set``, ``OutlineSet.load``).

Where outlines come from: DDTI's XML polygons (``Example.polygons``); for the folders and CSV
readers, a mask image beside the image, ``<name>_mask.png`` (any non-zero pixel is nodule; it
must have the image's size). An image's mask is the union of its polygons; each connected
region is one nodule view.

The set holds labelled and unlabelled images alike (an unlabelled image still teaches the
segmentation where nodules are), cropped as the shards are (``crop``), so a labelled image
here has the pixels its shard record has. Images without a usable outline are kept when
labelled (the localisation rows predict their outline) with the reason in ``reason``:
the reader's (an empty or cut-off DDTI polygon), "no outline", or "outline outside the scan
field". Every record carries its split unit: patients linked by a byte-identical image, over
labelled and unlabelled images, share one (``splits.group_patients``), so a fold never trains
on a copy of its test image.

Written as ``outlines.json`` (records and counts) and ``outlines.npz`` (each crop as JPEG
bytes, ``image_<i>``), both atomically, the JSON last.
"""

import dataclasses
import os
from typing import List, Optional

import numpy as np
from absl import logging

from thyroid.datasets import images, shards, splits
from thyroid.datasets.example import reason_summary
from thyroid.datasets.sources import ReaderOptions, read_sources
from thyroid.io_utils import atomic_path, atomic_write_json, read_json
from thyroid.preprocessing.outline import MIN_REGION_PIXELS, rasterize, shift

INDEX_NAME = "outlines.json"
IMAGES_NAME = "outlines.npz"
FORMAT = 1
MASK_SUFFIX = images.MASK_SUFFIX
CROPS = ("scan", "none")  # a nodule-ROI crop would already be the answer
NO_OUTLINE = "no outline"
OUTSIDE_FIELD = "outline outside the scan field"
MASK_SIZE_MISMATCH = "mask image of another size than its image"


@dataclasses.dataclass
class OutlineRecord:
    """One image: where it is in the shards (``key``), its patient and split unit, its label
    (None: unlabelled), the crop box in the original image (top, bottom, left, right), its
    outline polygons in crop coordinates, and why it has no usable outline ('' if it has)."""
    key: str
    patient_id: str
    unit: str
    label: Optional[int]
    sha256: str
    crop_box: tuple
    polygons: list
    reason: str = ""

    @property
    def has_outline(self):
        return not self.reason

    @property
    def size(self):
        """(height, width) of the crop."""
        top, bottom, left, right = self.crop_box
        return bottom - top, right - left


def mask_path(image_path):
    """Where the folders and CSV readers' mask image of ``image_path`` is looked for."""
    return os.path.splitext(image_path)[0] + MASK_SUFFIX


def crop_box(rgb, crop):
    height, width = rgb.shape[:2]
    if crop == "scan":
        return tuple(int(v) for v in images.find_scan_box(rgb))
    if crop == "none":
        return (0, height, 0, width)
    raise ValueError(f"unknown outline crop {crop!r}; expected one of {CROPS}")


def _mask_polygons(example, shape):
    """Polygons of a mask image beside the image (traced), [] when there is none; raises
    images.ImageError for a mask that cannot be used."""
    from thyroid.preprocessing.outline import outlines
    path = mask_path(example.image_path)
    if not os.path.isfile(path):
        return []
    mask = images.load_image(path).max(axis=2) > 0
    if mask.shape != shape[:2]:
        raise images.ImageError(MASK_SIZE_MISMATCH,
                                f"{mask.shape[1]}x{mask.shape[0]} vs {shape[1]}x{shape[0]}")
    return outlines(mask, min_pixels=1, max_points=4096)


def _outline_of(example, rgb, box, broken):
    """(polygons in crop coordinates, reason)."""
    polygons = example.polygons or _mask_polygons(example, rgb.shape)
    if not polygons:
        return [], broken.get(example.image_path, NO_OUTLINE)
    top, bottom, left, right = box
    moved = shift(polygons, -left, -top)
    if rasterize(moved, bottom - top, right - left).sum() < MIN_REGION_PIXELS:
        return moved, OUTSIDE_FIELD
    return moved, ""


def _examples(results):
    """Every example of the sources once (keys are unique per image)."""
    seen, found = set(), []
    for result in results.values():
        for example in result.examples:
            if example.key not in seen:
                seen.add(example.key)
                found.append(example)
    return found


def _hashes(examples, max_pixels, skipped):
    hashes = {}
    for example in examples:
        try:
            hashes[example.image_path] = images.file_sha256(example.image_path, max_pixels)
        except images.ImageError as error:
            skipped.append({"path": example.image_path, "reason": error.reason})
    return hashes


def _record(example, unit, digest, crop, broken, max_pixels):
    """(OutlineRecord, JPEG bytes of the crop) of one example; raises images.ImageError."""
    rgb = images.load_image(example.image_path, max_pixels)
    box = crop_box(rgb, crop)
    polygons, reason = _outline_of(example, rgb, box, broken)
    top, bottom, left, right = box
    record = OutlineRecord(example.key, example.patient_id, unit, example.label, digest, box,
                           [[list(p) for p in polygon] for polygon in polygons], reason)
    return record, shards.encode_jpeg(np.ascontiguousarray(rgb[top:bottom, left:right]))


def collect(results, crop="scan", max_pixels=images.DEFAULT_MAX_PIXELS):
    """-> (records, JPEG crops, skipped entries) from ``{kind: ReadResult}``. Unlabelled images
    without an outline are left out: they would serve neither the segmentation nor a row."""
    skipped = []
    examples = _examples(results)
    hashes = _hashes(examples, max_pixels, skipped)
    examples = [e for e in examples if e.image_path in hashes]
    units = splits.group_patients([e.patient_id for e in examples],
                                  [hashes[e.image_path] for e in examples])
    broken = {entry["path"]: entry["reason"] for result in results.values()
              for entry in result.broken_outlines}
    records, crops = [], []
    for example in examples:
        try:
            record, jpeg = _record(example, units[example.patient_id], hashes[example.image_path],
                                   crop, broken, max_pixels)
        except images.ImageError as error:
            skipped.append({"path": example.image_path, "reason": error.reason})
            continue
        if record.label is None and not record.has_outline:
            continue
        records.append(record)
        crops.append(jpeg)
    return records, crops, skipped


def counts(records, skipped=()):
    """What the set holds, for its index and the report."""
    with_outline = [r for r in records if r.has_outline]
    reasons = {}
    for record in records:
        if record.reason:
            reasons[record.reason] = reasons.get(record.reason, 0) + 1
    return {"images": len(records), "with_outline": len(with_outline),
            "labelled_with_outline": sum(r.label is not None for r in with_outline),
            "unlabelled_with_outline": sum(r.label is None for r in with_outline),
            "labelled_without_outline": sum(r.label is not None and not r.has_outline
                                            for r in records),
            "distinct_outlined_images": len({r.sha256 for r in with_outline}),
            "units": len({r.unit for r in records}),
            "without_outline_reasons": reasons,
            "skipped": {reason: group["count"] for reason, group in
                        reason_summary(list(skipped)).items()}}


def build_outline_set(sources, output_dir, crop="scan", reader_options=None,
                      max_pixels=images.DEFAULT_MAX_PIXELS, flag_names=None):
    """Reads ``sources`` ({kind: path}) and writes the outline set into ``output_dir``;
    -> OutlineSet."""
    if crop not in CROPS:
        raise ValueError(f"unknown outline crop {crop!r}; expected one of {CROPS}")
    results = read_sources(sources, reader_options or ReaderOptions(), flag_names)
    records, crops, skipped = collect(results, crop, max_pixels)
    summary = dict(counts(records, skipped), crop=crop, sources=dict(sources))
    os.makedirs(output_dir, exist_ok=True)
    with atomic_path(os.path.join(output_dir, IMAGES_NAME)) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **{f"image_{i}": np.frombuffer(data, np.uint8)
                           for i, data in enumerate(crops)})
    atomic_write_json(os.path.join(output_dir, INDEX_NAME), {
        "format": FORMAT, "summary": summary,
        "records": [dataclasses.asdict(record) for record in records]})
    logging.info("outline set %s: %d images, %d with an outline (%d unlabelled), reasons %s",
                 output_dir, summary["images"], summary["with_outline"],
                 summary["unlabelled_with_outline"], summary["without_outline_reasons"])
    return OutlineSet.load(output_dir)


class OutlineSet:
    """An outline set read back: ``records``, ``summary``, ``image(i)``, ``mask(i)``."""

    def __init__(self, directory, records: List[OutlineRecord], summary):
        self.directory, self.records, self.summary = directory, records, summary
        self._images = {}

    @classmethod
    def load(cls, directory):
        path = os.path.join(directory, INDEX_NAME)
        saved = read_json(path)
        if saved.get("format") != FORMAT:
            raise ValueError(f"{path}: an outline set of another format; build it again")
        records = [OutlineRecord(**dict(r, crop_box=tuple(r["crop_box"])))
                   for r in saved["records"]]
        return cls(os.path.abspath(directory), records, saved["summary"])

    def __len__(self):
        return len(self.records)

    def index_of(self):
        """{key: index}."""
        return {record.key: i for i, record in enumerate(self.records)}

    def image(self, index):
        """uint8 HxWx3 crop of record ``index`` (decoded once)."""
        if index not in self._images:
            with np.load(os.path.join(self.directory, IMAGES_NAME)) as arrays:
                self._images[index] = images.decode_image_bytes(
                    arrays[f"image_{index}"].tobytes())
        return self._images[index]

    def images(self, indices):
        """The crops of ``indices`` (one read of the archive for all)."""
        missing = [i for i in indices if i not in self._images]
        if missing:
            with np.load(os.path.join(self.directory, IMAGES_NAME)) as arrays:
                for i in missing:
                    self._images[i] = images.decode_image_bytes(arrays[f"image_{i}"].tobytes())
        return [self._images[i] for i in indices]

    def mask(self, index):
        """bool [height, width] of the crop: the union of its polygons (empty without)."""
        record = self.records[index]
        return rasterize(record.polygons if record.has_outline else [], *record.size)
