"""python -m thyroid.checkpoints {download,convert,verify,inspect} ...

  download --models=vgg_16,inception_v3,mobilenet_v1 [--checkpoint_dir=checkpoints]
  convert  --model=efficientnet_lite0 [--checkpoint_dir=checkpoints]
  verify   --model=NAME [--checkpoint_path=...] [--json]
  inspect  PATH
"""

import json
import logging
import sys

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("models", ",".join(("vgg_16", "inception_v3", "mobilenet_v1")),
                    "download: comma-separated networks.")
flags.DEFINE_string("model", "efficientnet_lite0", "convert / verify: the network.")
flags.DEFINE_string("checkpoint_dir", "checkpoints", "Where checkpoints live.")
flags.DEFINE_string("checkpoint_path", None, "verify: checkpoint prefix or directory "
                    "(default: the network's place under --checkpoint_dir).")
flags.DEFINE_bool("json", False, "verify: print one JSON object.")
flags.DEFINE_float("timeout", 10.0, "download: network timeout in seconds.")
flags.DEFINE_string("url", None, "download: override the tarball URL (one model only).")

COMMANDS = ("download", "convert", "verify", "inspect")


def _usage(message):
    sys.stderr.write("%s\n%s" % (message, __doc__))
    return 2


def _expected_errors():
    """What a bad file, a missing file or a failed download raises: reported in one line."""
    from thyroid.checkpoints import DownloadError
    from thyroid.checkpoints.pth_reader import PthReadError
    from thyroid.compat import tf
    from thyroid.restore import CheckpointMismatchError
    return (DownloadError, CheckpointMismatchError, PthReadError, OSError, ValueError,
            tf.errors.OpError)


def _report(error):
    sys.stderr.write("error: %s\n" % " ".join(str(error).split()))


def main(argv):
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if len(argv) < 2 or argv[1] not in COMMANDS:
        return _usage("Give a command: one of %s" % ", ".join(COMMANDS))
    errors = _expected_errors()
    try:
        return _run(argv[1], argv[2:], errors)
    except errors as error:
        _report(error)
        return 1


def _run(command, rest, errors):
    from thyroid import checkpoints
    from thyroid.restore import parse_scopes

    if command == "download":
        failures = 0
        for model in parse_scopes(FLAGS.models):
            try:  # one model failing does not stop the others
                path = checkpoints.download(model, FLAGS.checkpoint_dir, url=FLAGS.url,
                                            timeout=FLAGS.timeout)
                print("%s: %s OK" % (model, path))
            except errors as error:
                _report(error)
                failures += 1
        return 1 if failures else 0
    if command == "convert":
        path = checkpoints.convert(FLAGS.model, FLAGS.checkpoint_dir)
        print(path)
        return 0
    if command == "verify":
        result = checkpoints.imagenet_top_k(FLAGS.model, FLAGS.checkpoint_path,
                                            checkpoint_dir=FLAGS.checkpoint_dir)
        if FLAGS.json:
            print(json.dumps(result))
        else:
            for name, top in result.items():
                print("%s: %s" % (name, "  ".join("%d (%.3f)" % (c, p) for c, p in top)))
        return 0
    if command == "inspect":
        if len(rest) != 1:
            return _usage("inspect takes one checkpoint path")
        for name, shape in checkpoints.inspect_checkpoint(rest[0]):
            print("%s %s" % (name, list(shape)))
        return 0
    return 2


def run():
    app.run(main)


if __name__ == "__main__":
    run()
