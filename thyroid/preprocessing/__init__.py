"""Image preprocessing: resizing, augmentation, nodule outlines and features (per-network
input scaling is in ``thyroid.nets.net_inputs``)."""
