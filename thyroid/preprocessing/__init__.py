"""Image preprocessing: resizing, per-network input scaling, augmentation."""
