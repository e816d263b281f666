"""Training for the study's four modes: scratch, bottleneck_svm, bottleneck_fc, finetune."""

MODES = ("scratch", "bottleneck_svm", "bottleneck_fc", "finetune")
