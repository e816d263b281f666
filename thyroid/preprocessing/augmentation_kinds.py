"""The kinds of training augmentation a build can bake into its shards, by name: each is a
function (image, count, rng) -> [copies], the signature ``datasets.records.image_records``
calls with the image's own generator (``records.augmentation_rng``)."""

from thyroid.preprocessing import augment, ultrasound_augment

COPY_FUNCTIONS = {
    "standard": augment.augmented_copies,            # flip, rotation, grey noise
    "ultrasound": ultrasound_augment.augmented_copies,  # + gain, speckle, blur, depth, marks
}
AUGMENTATIONS = tuple(COPY_FUNCTIONS)


def copies_function(kind):
    """The copy function of ``kind``; ValueError naming the kinds for any other."""
    if kind not in COPY_FUNCTIONS:
        raise ValueError(f"augmentation {kind!r}: expected one of {', '.join(AUGMENTATIONS)}")
    return COPY_FUNCTIONS[kind]
