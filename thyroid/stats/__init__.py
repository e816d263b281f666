"""The statistics leaf: metric definitions (numpy and in-graph), operating points, pooled
out-of-fold statistics, the patient bootstrap and DeLong's test. Imports nothing of
``thyroid`` but ``compat`` (and TensorFlow only inside the in-graph functions)."""
