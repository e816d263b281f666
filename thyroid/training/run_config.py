"""What a training run was, saved in its train_dir so evaluation and export can rebuild it."""

import dataclasses
import os

from thyroid.io_utils import atomic_write_json, read_json

FILE_NAME = "run_config.json"


@dataclasses.dataclass
class RunConfig:
    model: str
    mode: str
    dataset_dir: str
    image_size: int
    # The ImageNet checkpoint the frozen part comes from (None: random weights).
    checkpoint_path: str | None = None
    checkpoint_description: str = ""
    cache_dir: str = ""
    trainable_scopes: tuple = ()
    # Whether fine-tuning trains from cached frozen-prefix activations.
    uses_frozen_prefix: bool = False
    seed: int = 0
    threshold: float = 0.5
    extra: dict = dataclasses.field(default_factory=dict)

    def save(self, train_dir):
        atomic_write_json(os.path.join(train_dir, FILE_NAME), dataclasses.asdict(self))

    @classmethod
    def load(cls, train_dir):
        path = os.path.join(train_dir, FILE_NAME)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: not a training directory (no {FILE_NAME})")
        values = read_json(path)
        values["trainable_scopes"] = tuple(values.get("trainable_scopes", ()))
        return cls(**values)
