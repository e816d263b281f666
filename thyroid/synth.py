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


from absl import app, flags

from thyroid.datasets.synthetic import DEFAULT_HEIGHT, DEFAULT_WIDTH, generate

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_string("output_dir", None, "Folder to write ddti/ and local/ into.")
    flags.DEFINE_integer("num_cases", 100, "DDTI-style cases to write.")
    flags.DEFINE_integer("num_local_cases", None, "Local patients (default: --num_cases).")
    flags.DEFINE_integer("seed", 0, "Random seed; the same seed writes the same bytes.")
    flags.DEFINE_integer("width", DEFAULT_WIDTH, "Image width (DDTI: 560).")
    flags.DEFINE_integer("height", DEFAULT_HEIGHT, "Image height (DDTI: 360).")
    flags.mark_flag_as_required("output_dir")


def main(argv):
    del argv
    generate(FLAGS.output_dir, FLAGS.num_cases, FLAGS.seed, FLAGS.width, FLAGS.height,
             FLAGS.num_local_cases)


if __name__ == "__main__":
    define_flags()
    app.run(main)
