"""What every ``python -m thyroid.<command>`` shares: parse flags, run, fail in one line.

An entry point defines its flags into a ``FlagValues`` and hands ``run(flag_values, args)``
to ``main``. A bad flag value (absl's own checks or any ``flag_errors.FlagValueError``) prints
one line ``<command>: error: --flag=value: reason`` on stderr and exits 2; an expected
failure of the work itself (a missing file, a missing checkpoint) prints one line and exits 1.
``main`` with an ``argv`` list runs on fresh flags and returns the exit status instead of
exiting, so tests can call entry points in-process.
"""

import importlib.util
import math
import sys

from absl import app, flags, logging

from thyroid.flag_errors import FlagValueError

USAGE_STATUS = 2
FAILURE_STATUS = 1
# The command line being run, recorded in what a command writes (run_config.json).
_command_line = []


def command_line():
    return list(_command_line)


# What the research commands (train, study, build, export, ...) need beyond the serving install
# (``pip install .``: predict and serve). Looked up, not imported.
RESEARCH_MODULES = ("tensorflow", "tf_keras", "tf_slim", "sklearn", "scipy", "matplotlib",
                    "lxml", "docx", "google_crc32c")
RESEARCH_INSTALL = "pip install '.[study]'"


def missing_research_modules():
    return [name for name in RESEARCH_MODULES if importlib.util.find_spec(name) is None]


def require_research_install(command):
    """Exits with one line (status 1) naming what is missing when the research packages are
    not installed. Called at the top of a research entry point, before the imports that need
    them (a serving install has none of them)."""
    missing = missing_research_modules()
    if missing:
        print_error(command, f"needs the research install ({RESEARCH_INSTALL}); missing "
                             f"{', '.join(missing)}")
        raise SystemExit(FAILURE_STATUS)


class UsageError(FlagValueError):
    """A flag value the command cannot use; the message names the flag."""


def define_checkpoint_flags(fv):
    """The flags that say where ImageNet weights come from (train and bottleneck)."""
    flags.DEFINE_string("checkpoint_path", None, "ImageNet checkpoint (file prefix or directory). "
                        "Default: the model's file under --checkpoint_dir.", flag_values=fv)
    flags.DEFINE_string("checkpoint_dir", "checkpoints", "Where downloaded / converted checkpoints "
                        "live.", flag_values=fv)
    flags.DEFINE_boolean("allow_random_init", False, "Run without an ImageNet checkpoint "
                         "(random weights).", flag_values=fv)


def define_integer(name, default, help_text, fv, ranges):
    """An integer flag bounded by ``ranges[name]`` = (low, high), the entry point's table
    (e.g. the ranges ``RunConfig.validate`` checks)."""
    low, high = ranges[name]
    flags.DEFINE_integer(name, default, help_text, lower_bound=low, upper_bound=high, flag_values=fv)


# Errors that are the user's situation, not a bug (a missing file or checkpoint, which are
# OSErrors, unreadable data, a diverging loss): one line, exit 1.
FAILURE_TYPES = (OSError, ValueError, FloatingPointError)


def one_line(text):
    return " ".join(str(text).split())


def print_error(command, message):
    print(f"{command}: error: {one_line(message)}", file=sys.stderr)


def flag_error_message(error):
    """absl's 'flag --x=1: reason' (or a multi-line text) as '--x=1: reason'."""
    text = one_line(error)
    return text[len("flag "):] if text.startswith("flag --") else text


def non_finite_flag(flag_values):
    """The first float flag whose value is NaN or infinite, as '--name=value', or None.
    absl's bounds let NaN through (every comparison with it is false)."""
    for name in sorted(flag_values):
        value = flag_values[name].value
        if isinstance(value, float) and not math.isfinite(value):
            return f"--{name}={value}"
    return None


def parse(command, define_flags, argv, flag_values):
    """Defines and parses the flags; -> (other arguments, None) or (None, exit status)."""
    define_flags(flag_values)
    try:
        rest = flag_values(argv)
    except flags.Error as error:
        print_error(command, flag_error_message(error))
        return None, USAGE_STATUS
    bad = non_finite_flag(flag_values)
    if bad:
        print_error(command, f"{bad}: must be a finite number")
        return None, USAGE_STATUS
    return rest, None


def call(command, run, flag_values, args):
    """Runs ``run`` and turns the known errors into one line and an exit status."""
    try:
        status = run(flag_values, args)
    except FlagValueError as error:
        print_error(command, error)
        return USAGE_STATUS
    except KeyboardInterrupt as error:
        print_error(command, str(error) or "interrupted")
        return 130
    except FAILURE_TYPES as error:
        logging.debug("%s failed", command, exc_info=True)
        print_error(command, error)
        return FAILURE_STATUS
    return int(status or 0)


def main(command, define_flags, run, argv=None):
    """The whole life of a command. ``argv=None``: the process's own, and exit with the status."""
    _command_line[:] = sys.argv if argv is None else argv
    if argv is not None:
        flag_values = flags.FlagValues()
        rest, status = parse(command, define_flags, list(argv), flag_values)
        return status if rest is None else call(command, run, flag_values, rest)

    def parser(process_argv):
        rest, status = parse(command, define_flags, process_argv, flags.FLAGS)
        if rest is None:
            sys.exit(status)
        return rest

    app.run(lambda rest: sys.exit(call(command, run, flags.FLAGS, rest)), flags_parser=parser)
