"""The hand-crafted nodule measurements now live in ``thyroid.preprocessing.nodule_features``
(the study's localisation rows use them); this name stays for the experiment harness."""

from thyroid.preprocessing.nodule_features import *  # noqa: F401,F403
from thyroid.preprocessing.nodule_features import (FEATURE_NAMES, SHAPE_NAMES,  # noqa: F401
                                                   polygon_mask, roi_features)
