"""The SVM rows: scikit-learn's SVC on cached bottleneck features.

SVC's defaults (RBF kernel, C=1, gamma='scale') are kept, as in the study. Its
decision value goes through a logistic function so that the shared metrics can use
one threshold (0.5 <=> decision 0); it is a score for ranking (AUC), not a calibrated
probability.
"""

import os

import numpy as np
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from thyroid.io_utils import atomic_write_pickle, read_own_pickle

MODEL_FILE = "svm.pkl"


def fit_svm(features, labels, standardize=False, class_weight=None, seed=0):
    classifier = SVC(class_weight=class_weight, random_state=seed)
    steps = [StandardScaler(), classifier] if standardize else [classifier]
    model = make_pipeline(*steps)
    features = np.asarray(features)  # rows on disk (a RowFile) are read here
    model.fit(features.reshape(len(features), -1), labels)
    return model


def svm_scores(model, features):
    features = np.asarray(features)
    decision = model.decision_function(features.reshape(len(features), -1))
    return (1.0 / (1.0 + np.exp(-decision))).astype(np.float32)


def save_svm(model, train_dir):
    atomic_write_pickle(os.path.join(train_dir, MODEL_FILE), model)


def load_svm(train_dir):
    """The model this project wrote in ``train_dir``."""
    return read_own_pickle(os.path.join(train_dir, MODEL_FILE), "SVM")
