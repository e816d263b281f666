"""An external set checked against the development set it is meant to be independent of.

* Exact duplicates: an external image whose file is byte-identical (SHA-256, recorded per
  original image in each build's manifest under ``image_sha256``) to a development image.
  The study leaves these out of every external figure.
* Near duplicates: a small perceptual hash (``dhash``: brighter-than-right-neighbour bits of
  a 9 x 9 greyscale thumbnail) of the scan field only (the shards hold the scan-field crop).
  The whole frame is never hashed: every scan of one machine shares its layout (black margins,
  text bands, scale bars), which would make unrelated scans look alike. A pair within
  ``NEAR_DUPLICATE_BITS`` of 72 bits is listed as a warning (the same scan re-encoded,
  resized or slightly cropped), not left out: similar-looking nodules are not the same image.
"""

import dataclasses

import numpy as np

from thyroid.datasets import images, shards
from thyroid.preprocessing.resize import resize_square

HASH_SIZE = 9  # a 9 x 9 thumbnail gives 9 rows x 8 neighbour comparisons = 72 bits
NEAR_DUPLICATE_BITS = 6


@dataclasses.dataclass
class ExternalCheck:
    """Pairs (external key, development key) found: ``exact`` (byte-identical files, with
    their ``sha256``) and ``near`` (perceptual hashes ``bits`` apart); the images compared."""
    exact: list
    near: list
    external_images: int
    development_images: int
    near_bits: int = NEAR_DUPLICATE_BITS

    def excluded_keys(self):
        return sorted({pair["external"] for pair in self.exact})

    def to_json(self):
        return dataclasses.asdict(self)


def dhash(rgb, size=HASH_SIZE):
    """The difference hash of an image as a bool array of size * (size - 1) bits."""
    grey = resize_square(np.asarray(rgb, np.uint8), size).astype(np.float64).mean(axis=2)
    return (grey[:, :-1] > grey[:, 1:]).reshape(-1)


def _original_hashes(dataset_dir, split):
    """{key: difference hash of the scan field} of the split's original (not augmented)
    images, read one record at a time: no split's pixels are held."""
    crop = shards.read_manifest(dataset_dir).get("crop", "scan")
    found = {}
    for record in shards.iter_split(dataset_dir, split):
        if not record.augmented:
            rgb = shards.decode_image(record.encoded)
            found[str(record.key)] = dhash(images.crop(rgb, "scan") if crop == "none" else rgb)
    return found


def exact_duplicates(development_sha256, external_sha256):
    """[{external, development, sha256}] of external files byte-identical to development ones."""
    by_digest = {}
    for key, digest in sorted(development_sha256.items()):
        by_digest.setdefault(digest, key)
    return [{"external": key, "development": by_digest[digest], "sha256": digest}
            for key, digest in sorted(external_sha256.items()) if digest in by_digest]


def near_duplicates(development, external, max_bits=NEAR_DUPLICATE_BITS, skip=()):
    """[{external, development, bits}]: for each external image (not in ``skip``) its nearest
    development image when the hashes are at most ``max_bits`` apart. ``development`` and
    ``external``: {key: image}."""
    return _nearest({key: dhash(rgb) for key, rgb in development.items()},
                    {key: dhash(rgb) for key, rgb in external.items()}, max_bits, skip)


def _nearest(development, external, max_bits, skip):
    """``near_duplicates`` on {key: difference hash}."""
    if not development or not external:
        return []
    dev_keys = sorted(development)
    dev_hashes = np.stack([development[key] for key in dev_keys])
    found = []
    for key in sorted(external):
        if key in skip:
            continue
        distances = np.sum(dev_hashes != external[key][None, :], axis=1)
        nearest = int(np.argmin(distances))
        if distances[nearest] <= max_bits:
            found.append({"external": key, "development": dev_keys[nearest],
                          "bits": int(distances[nearest])})
    return found


def check_external(development_dir, development_split, external_dir, external_split):
    """The ``ExternalCheck`` of an external build against the development build."""
    dev_sha = shards.read_manifest(development_dir).get("image_sha256") or {}
    ext_sha = shards.read_manifest(external_dir).get("image_sha256") or {}
    if not dev_sha or not ext_sha:
        raise ValueError(f"{development_dir if not dev_sha else external_dir}: the manifest "
                         "lacks image_sha256; rebuild it with this version of thyroid")
    exact = exact_duplicates(dev_sha, ext_sha)
    development = _original_hashes(development_dir, development_split)
    external = _original_hashes(external_dir, external_split)
    near = _nearest(development, external, NEAR_DUPLICATE_BITS,
                    {pair["external"] for pair in exact})
    return ExternalCheck(exact, near, len(external), len(development))
