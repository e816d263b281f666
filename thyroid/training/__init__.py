"""Training for the study's modes: scratch, bottleneck_svm, bottleneck_fc, finetune and
bottleneck_logreg (multi-layer pooled features + logistic regression); the modes themselves
are ``run_config.MODES``."""
