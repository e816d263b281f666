"""python -m thyroid.checkpoints {download,convert,verify,inspect} ...

  download --models=vgg_16,inception_v3,mobilenet_v1 [--checkpoint_dir=checkpoints]
  convert  --models=efficientnet_lite0 [--checkpoint_dir=checkpoints]
  verify   --models=NAME[,NAME] [--checkpoint_path=...] [--json]
  inspect  PATH
"""

from absl import flags

from thyroid import cli

cli.require_research_install("checkpoints")  # before the imports that need it

from thyroid.io_utils import json_text
from thyroid.output_guard import OutputError, check_output_dir

COMMAND = "checkpoints"
COMMANDS = ("download", "convert", "verify", "inspect")
DEFAULT_MODELS = {"download": "vgg_16,inception_v3,mobilenet_v1", "convert": "efficientnet_lite0",
                  "verify": "efficientnet_lite0"}
MAX_TIMEOUT_S = 3600.0


def define_flags(fv):
    flags.DEFINE_string("models", None, "Comma-separated networks (default: download: the three "
                        "official ones; convert / verify: efficientnet_lite0).", flag_values=fv)
    flags.DEFINE_string("checkpoint_dir", "checkpoints", "Where checkpoints live.", flag_values=fv)
    flags.DEFINE_string("checkpoint_path", None, "verify: checkpoint prefix or directory "
                        "(default: the network's place under --checkpoint_dir).", flag_values=fv)
    flags.DEFINE_bool("json", False, "verify: print one JSON object.", flag_values=fv)
    flags.DEFINE_float("timeout", 10.0, "download: network timeout in seconds.", lower_bound=0.1,
                       upper_bound=MAX_TIMEOUT_S, flag_values=fv)
    flags.DEFINE_string("url", None, "download: override the tarball URL (one model only).",
                        flag_values=fv)


def expected_errors():
    """What a bad file, a missing file or a failed download raises: reported in one line."""
    from thyroid.checkpoints import DownloadError
    from thyroid.checkpoints.pth_reader import PthReadError
    from thyroid.compat import tf
    from thyroid.restore import CheckpointMismatchError
    return (DownloadError, CheckpointMismatchError, PthReadError, OSError, ValueError,
            tf.errors.OpError)


def usage(message):
    cli.print_error(COMMAND, f"{message} (usage: {__doc__.splitlines()[0]})")
    return cli.USAGE_STATUS


def download(fv, models):
    from thyroid.checkpoints.download import download as fetch
    failures = 0
    for model in models:
        try:
            path = fetch(model, fv.checkpoint_dir, url=fv.url, timeout=fv.timeout)
            print(f"{model}: {path} OK")
        except expected_errors() as error:  # one model failing does not stop the others
            cli.print_error(COMMAND, error)
            failures += 1
    return cli.FAILURE_STATUS if failures else 0


def verify(fv, models):
    from thyroid import checkpoints
    for model in models:
        result = checkpoints.imagenet_top_k(model, fv.checkpoint_path,
                                            checkpoint_dir=fv.checkpoint_dir)
        if fv.json:
            print(json_text(result))
            continue
        for name, top in result.items():
            print(f"{name}: " + "  ".join(f"{c} ({p:.3f})" for c, p in top))
    return 0


def run(fv, argv):
    try:
        return dispatch(fv, argv)
    except (cli.UsageError, OutputError):
        raise
    except expected_errors() as error:
        cli.print_error(COMMAND, error)
        return cli.FAILURE_STATUS


def dispatch(fv, argv):
    if len(argv) < 2 or argv[1] not in COMMANDS:
        return usage(f"give a command: one of {', '.join(COMMANDS)}")
    command, rest = argv[1], argv[2:]
    from thyroid.checkpoints.convert import convert
    from thyroid.nets import NETWORK_NAMES
    models = [m.strip() for m in (fv.models or DEFAULT_MODELS.get(command, "")).split(",") if m.strip()]
    unknown = [m for m in models if m not in NETWORK_NAMES]
    if unknown:
        raise cli.UsageError("models", fv.models, f"unknown {', '.join(unknown)}; "
                             f"choose from {', '.join(NETWORK_NAMES)}")
    if command in ("download", "convert"):
        check_output_dir("checkpoint_dir", fv.checkpoint_dir)
    if command == "download":
        return download(fv, models)
    if command == "convert":
        for model in models:
            print(convert(model, fv.checkpoint_dir))
        return 0
    if command == "verify":
        return verify(fv, models)
    if len(rest) != 1:
        return usage("inspect takes one checkpoint path")
    from thyroid.checkpoints import inspect_checkpoint
    for name, shape in inspect_checkpoint(rest[0]):
        print(f"{name} {list(shape)}")
    return 0


def main(argv=None):
    return cli.main(COMMAND, define_flags, run, argv)


if __name__ == "__main__":
    main()
