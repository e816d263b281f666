"""The names under which a run records the user's sources (``plan.json``'s ``sources``), and
which of them a job kind reads: a leaf, so that the job-kind registry can say what each kind
reads without importing how the sources are recorded."""

# The development sources, by their flags.
DEVELOPMENT_SOURCES = ("--ddti_dir", "--local_dir", "--image_dir", "--csv")
# An external set is recorded as "external <kind>=<path>".
EXTERNAL_PREFIX = "external "
# The previous run a progressive-transfer study starts from.
PREVIOUS_RUN_SOURCE = "--init_from"


def is_development(name):
    return name in DEVELOPMENT_SOURCES


def is_external(name):
    return name.startswith(EXTERNAL_PREFIX)


def is_previous_run(name):
    return name == PREVIOUS_RUN_SOURCE
