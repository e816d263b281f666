"""Synthetic DDTI-style and local-style data, for tests and a default study without real data.

    python -m thyroid.synth --output_dir=DIR --num_cases=100 --seed=0

Writes ``DIR/ddti/`` (``<case>.xml`` + ``<case>_<k>.jpg``) and ``DIR/local/``
(``<patient>/report.docx`` + images). Images imitate B-mode ultrasound: Rayleigh speckle,
log compression, a scan field with a scale bar, scanner text and a bottom text band that
repeats the TIRADS (as DDTI burns it in, so the scan crop must remove it).

The nodule carries the label the way radiologists read it: benign nodules are smooth,
wider-than-tall ovals, iso/hyperechoic or cystic; malignant ones are hypoechoic, irregular,
taller-than-wide, with microcalcifications. Brightness alone does not separate the classes:
benign cysts are darker than malignant solid nodules, and the overall gain varies.
Same seed, same bytes.
"""

import os

from absl import flags

from thyroid import cli

cli.require_research_install("synth")  # before the imports that need it

from thyroid.output_guard import check_output_dir
from thyroid.datasets.synthetic import (DEFAULT_HEIGHT, DEFAULT_WIDTH, generate,
                                       write_class_folders)
from thyroid.datasets.synthetic_scans import OTHER_SCANNER

COMMAND = "synth"
MAX_CASES = 100_000
# Below these the scan field, text bands and nodule no longer fit in the frame.
MIN_WIDTH, MIN_HEIGHT, MAX_SIDE = 160, 120, 4096
OTHER_SCANNER_DIR = "other_scanner"


def define_flags(fv):
    flags.DEFINE_string("output_dir", None, "Folder to write ddti/ and local/ into.", flag_values=fv)
    flags.DEFINE_integer("num_cases", 100, "DDTI-style cases to write.", lower_bound=1,
                         upper_bound=MAX_CASES, flag_values=fv)
    flags.DEFINE_integer("num_local_cases", None, "Local patients (default: --num_cases).",
                         lower_bound=0, upper_bound=MAX_CASES, flag_values=fv)
    flags.DEFINE_integer("seed", 0, "Random seed; the same seed writes the same bytes.",
                         lower_bound=0, upper_bound=2**31 - 1, flag_values=fv)
    flags.DEFINE_integer("width", DEFAULT_WIDTH, "Image width (DDTI: 560).", lower_bound=MIN_WIDTH,
                         upper_bound=MAX_SIDE, flag_values=fv)
    flags.DEFINE_integer("height", DEFAULT_HEIGHT, "Image height (DDTI: 360).",
                         lower_bound=MIN_HEIGHT, upper_bound=MAX_SIDE, flag_values=fv)
    flags.DEFINE_integer("other_scanner_cases", 0,
                         "Also write this many one-view cases drawn as another scanner would "
                         "(other gain, speckle, frame and caliper marks) into "
                         f"{OTHER_SCANNER_DIR}/benign and /malignant: a shifted external set.",
                         lower_bound=0, upper_bound=MAX_CASES, flag_values=fv)
    flags.mark_flag_as_required("output_dir", flag_values=fv)


def holds_only_synthetic_data(directory):
    """Whether ``directory`` holds nothing but the folders synth writes."""
    return set(os.listdir(directory)) <= {"ddti", "local", OTHER_SCANNER_DIR}


def run(fv, args):
    del args
    output_dir = check_output_dir("output_dir", fv.output_dir, is_ours=holds_only_synthetic_data)
    generate(output_dir, fv.num_cases, fv.seed, fv.width, fv.height, fv.num_local_cases)
    if fv.other_scanner_cases:
        # A seed stream of its own: the ddti/ and local/ bytes do not depend on this flag.
        write_class_folders(os.path.join(output_dir, OTHER_SCANNER_DIR), fv.other_scanner_cases,
                            [fv.seed, 1], fv.width, fv.height, look=OTHER_SCANNER)


def main(argv=None):
    return cli.main(COMMAND, define_flags, run, argv)


if __name__ == "__main__":
    main()
