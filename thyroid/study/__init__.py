"""The study: the paper's rows (and ours) planned as jobs, run by an executor, reported from
the jobs' result files. ``python -m thyroid.study`` is ``thyroid/study/__main__.py``."""
