"""Training for the study's modes: scratch, bottleneck_svm, bottleneck_fc, finetune and
bottleneck_logreg (multi-layer pooled features + logistic regression)."""

MODES = ("scratch", "bottleneck_svm", "bottleneck_fc", "finetune", "bottleneck_logreg")
