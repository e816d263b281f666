"""The statistics leaf: metric definitions (numpy in ``metrics``, in-graph in
``graph_metrics``, text in ``metric_text``), operating points, pooled out-of-fold
statistics, the patient bootstrap and DeLong's test. Imports nothing of ``thyroid`` but
``compat`` (and TensorFlow only in ``graph_metrics``)."""
