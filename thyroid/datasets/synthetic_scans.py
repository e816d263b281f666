"""What a synthetic scan looks like: the nodule's appearance model and the B-mode frame
drawn from it (``sample_nodule``, ``render_image``), or drawn as another scanner would
(``ScannerLook``, ``render_scanner_image``); ``synthetic`` writes them as DDTI-style,
local-style and class-folder data.

What the generator models, so that the methods can be told apart (rows land well between
chance and perfect instead of all at 1.00):

- Overlapping classes. Each nodule has a latent suspicion score drawn from N(-1.3, 1) for a
  benign-looking and N(+1.3, 1) for a malignant-looking nodule (``SUSPICION_MEAN``). Shape
  (taller-than-wide aspect), margin irregularity and spiculation, microcalcifications
  (count and micro vs macro), posterior shadowing, halo and size each follow that score plus
  their own noise, so a benign nodule can be taller than wide with a few foci and a
  malignant one a smooth oval. Composition is drawn per class with overlap
  (``KIND_PROBABILITIES``): benign nodules are iso/hyperechoic, cystic or (20 %) solid
  hypoechoic; malignant ones mostly solid hypoechoic, a quarter isoechoic. Brightness alone
  does not separate the classes: cysts are the darkest nodules and the overall gain varies.
- Label noise. ``LABEL_NOISE`` (10 %) of cases look like the other class: their recorded
  TIRADS or diagnosis disagrees with the appearance, about the rate at which ultrasound
  risk categories and cytology/histology disagree. With it no model can reach AUC 1.0: the
  latent score itself ranks the recorded labels with an AUC of about 0.87
  (``bench/synthetic_difficulty.py``); composition adds a little on top.
- Acquisition: Rayleigh speckle (laterally correlated), log compression, depth attenuation,
  gain, strap muscles and carotid artery (a dark round shape in either class), a scale bar,
  scanner text and a bottom text band.

Every step draws from the caller's generator in a fixed order: same seed, same pixels.
"""

import dataclasses

import numpy as np
from PIL import Image, ImageDraw, ImageFont

DEFAULT_WIDTH, DEFAULT_HEIGHT = 560, 360
# Scan field, as fractions of the image (DDTI-like: text on the right, band at the bottom).
FIELD_BOX = (0.155, 0.04, 0.84, 0.83)  # left, top, right, bottom


# ----------------------------------------------------------------------------- nodules

# Share of cases whose recorded label (DDTI TIRADS, local diagnosis) disagrees with what the
# image shows: the nodule is drawn as the other class would look. About the rate at which
# ultrasound risk categories and cytology/histology disagree in published series (roughly one
# case in ten; TIRADS 4-5 nodules that prove benign, TIRADS 2-3 nodules that prove malignant).
LABEL_NOISE = 0.10
# Mean of the latent suspicion score per appearance class (standard deviation 1). Every
# visual feature is a noisy function of this score, so the classes overlap: a benign nodule
# can look suspicious and a malignant one bland.
SUSPICION_MEAN = {0: -1.3, 1: 1.3}
# Nodule composition/echogenicity given the appearance class.
KINDS = ("solid", "iso", "hyper", "cystic")
KIND_PROBABILITIES = {0: (0.2, 0.35, 0.2, 0.25), 1: (0.7, 0.25, 0.05, 0.0)}
ECHO_RANGE = {"solid": (0.28, 0.55), "iso": (0.85, 1.1), "hyper": (1.3, 1.7),
              "cystic": (0.04, 0.12)}


def _sigmoid(value):
    return 1.0 / (1.0 + np.exp(-value))


def sample_nodule(rng, label, label_noise=LABEL_NOISE):
    """Parameters of one nodule; every view of a case re-uses them.

    ``label`` is the recorded label; with probability ``label_noise`` the nodule looks like
    the other class (``appearance``). Within a class, shape, margin, calcifications and
    shadowing follow one latent suspicion score plus independent noise per feature.
    """
    appearance = int(label) if rng.random() >= label_noise else 1 - int(label)
    suspicion = rng.normal(SUSPICION_MEAN[appearance], 1.0)
    kind = str(rng.choice(KINDS, p=KIND_PROBABILITIES[appearance]))
    low, high = ECHO_RANGE[kind]
    irregularity = float(np.clip(0.035 + 0.025 * suspicion + rng.normal(0, 0.015), 0.0, 0.12))
    micro = rng.random() < _sigmoid(2.0 * suspicion)
    if kind == "cystic":
        posterior = rng.uniform(1.3, 1.6)  # enhancement behind fluid
    else:  # shadowing grows with suspicion
        posterior = float(np.clip(1.0 - 0.15 * suspicion + rng.normal(0, 0.08), 0.55, 1.1))
    return {
        "label": int(label), "appearance": appearance, "suspicion": float(suspicion),
        "kind": kind,
        "half_width": float(np.clip(0.135 - 0.015 * suspicion + rng.normal(0, 0.025), 0.07, 0.2)),
        # > 1 is taller than wide, the classic malignant sign; benign centred near 0.7.
        "aspect": float(np.clip(0.9 + 0.25 * suspicion + rng.normal(0, 0.15), 0.5, 1.7)),
        "echo": rng.uniform(low, high),
        "harmonics": irregularity * rng.uniform(0.5, 1.5, size=4) * rng.choice([-1, 1], size=4),
        "harmonic_orders": rng.choice(np.arange(2, 13), size=4, replace=False),
        "spikes": int(rng.poisson(max(0.0, 1.2 + 1.5 * suspicion))),
        "calcifications": int(rng.poisson(max(0.0, 2.0 + 4.0 * suspicion))),
        "calcification_size": 1.2 if micro else 3.5,  # micro (suspicious) or macro (benign)
        "halo": kind == "iso" and rng.random() < _sigmoid(-2.0 * suspicion),
        "posterior": posterior,
    }


def looks_irregular(nodule):
    """Whether a reader would call the margin irregular (spiculated or clearly lobulated)."""
    return nodule["spikes"] > 0 or float(np.abs(nodule["harmonics"]).max()) > 0.06


def _radius(nodule, theta, spike_angles):
    r = np.ones_like(theta)
    for amplitude, order in zip(nodule["harmonics"], nodule["harmonic_orders"]):
        r = r + amplitude * np.cos(order * theta + 1.3 * order)
    for angle in spike_angles:  # spiculated margin: narrow outward bumps
        wrapped = np.mod(theta - angle + np.pi, 2 * np.pi) - np.pi
        r = r + 0.25 * np.exp(-(wrapped / 0.08) ** 2)
    return r


# ----------------------------------------------------------------------------- images

def _smooth(values, axis, taps):
    """Moving average along one axis (speckle is correlated over a few pixels)."""
    out = values.copy()
    for shift in range(1, taps):
        if axis == 0:
            out[shift:] += values[:-shift]
        else:
            out[:, shift:] += values[:, :-shift]
    return out * np.float32(1.0 / taps)


@dataclasses.dataclass
class NoduleShape:
    """Where a nodule sits in the field (pixels) and its spiculation angles."""
    cx: float
    cy: float
    half_w: float
    half_h: float
    spike_angles: np.ndarray


def _background(rng, height, width, y, x):
    """The field without its nodule -> (echo amplitude, texture factor)."""
    echo = np.ones((height, width), np.float32)
    # Skin and subcutaneous fat (bright), strap muscles (darker), then the gland.
    skin = int(rng.uniform(0.05, 0.09) * height)
    strap = skin + int(rng.uniform(0.08, 0.14) * height)
    echo[:skin] = 1.6
    echo[skin:strap] = 0.6
    # A carotid artery (anechoic circle) in either class, so "dark round thing" is no label.
    if rng.random() < 0.6:
        cx, cy, rad = rng.choice([0.1, 0.9]), rng.uniform(0.55, 0.75), rng.uniform(0.07, 0.1)
        echo[((x - cx) * width) ** 2 + ((y - cy) * height) ** 2 < (rad * width) ** 2] = 0.05
    # Gently varying background texture.
    coarse = rng.normal(0.0, 0.12, size=(6, 8)).astype(np.float32)
    texture = 1.0 + np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC))
    echo *= texture
    return echo, texture


def _nodule_shape(rng, nodule, height, width, jitter):
    cx = (rng.uniform(0.35, 0.65) if jitter else 0.5) * width
    cy = (rng.uniform(0.45, 0.6) if jitter else 0.52) * height
    scale = rng.uniform(0.9, 1.1) if jitter else 1.0
    half_w = nodule["half_width"] * width * scale
    half_h = min(half_w * nodule["aspect"], 0.3 * height)
    spike_angles = rng.uniform(-np.pi, np.pi, size=nodule["spikes"])
    return NoduleShape(cx, cy, half_w, half_h, spike_angles)


def _paint_nodule(echo, texture, nodule, shape):
    """Nodule, halo and posterior shadowing or enhancement into ``echo`` (in place), computed
    in a window around the nodule (the rest of the field is untouched)."""
    height, width = echo.shape
    cx, cy, half_w, half_h = shape.cx, shape.cy, shape.half_w, shape.half_h
    reach = 1.5
    y0, y1 = max(0, int(cy - reach * half_h)), min(height, int(cy + reach * half_h) + 1)
    x0, x1 = max(0, int(cx - reach * half_w)), min(width, int(cx + reach * half_w) + 1)
    py = np.arange(y0, y1, dtype=np.float32)[:, None] - cy
    px = np.arange(x0, x1, dtype=np.float32)[None, :] - cx
    theta = np.arctan2(py / half_h, px / half_w)
    rho = np.sqrt((px / half_w) ** 2 + (py / half_h) ** 2)
    boundary = _radius(nodule, theta, shape.spike_angles)
    inside = rho < boundary
    window = echo[y0:y1, x0:x1]
    window[inside] = (nodule["echo"] * (1.0 + 0.5 * (texture[y0:y1, x0:x1] - 1.0)))[inside]
    if nodule["halo"]:  # thin hypoechoic halo, mostly around bland iso nodules
        window[(rho >= boundary) & (rho < boundary * 1.08)] = 0.3
    # Posterior shadowing (malignant) or enhancement (cyst) below the nodule's centre.
    columns = slice(max(0, int(cx - 0.8 * half_w)), min(width, int(cx + 0.8 * half_w) + 1))
    below = echo[int(cy):, columns]
    inside_below = np.zeros(below.shape, bool)
    rows_in_window = min(y1 - int(cy), below.shape[0])
    inside_below[:rows_in_window] = inside[int(cy) - y0:int(cy) - y0 + rows_in_window,
                                           columns.start - x0:columns.stop - x0]
    below[~inside_below] *= nodule["posterior"]


def _add_calcifications(rng, echo, nodule, shape):
    """Microcalcifications: small bright foci inside the nodule, added to ``echo``."""
    count = nodule["calcifications"]
    if not count:
        return
    height, width = echo.shape
    angles = rng.uniform(-np.pi, np.pi, count)
    radii = np.sqrt(rng.uniform(0.0, 0.6, count))
    size = nodule["calcification_size"]
    half = int(3 * size) + 1
    offsets = np.arange(-half, half + 1, dtype=np.float32)
    for fx, fy in zip(shape.cx + radii * shape.half_w * np.cos(angles),
                      shape.cy + radii * shape.half_h * np.sin(angles)):
        ix, iy = int(round(fx)), int(round(fy))
        if not (half <= ix < width - half and half <= iy < height - half):
            continue
        spot = np.exp(-((offsets[:, None] + iy - fy) ** 2 + (offsets[None, :] + ix - fx) ** 2)
                      / (2 * size ** 2))
        echo[iy - half:iy + half + 1, ix - half:ix + half + 1] += 6.0 * spot


@dataclasses.dataclass(frozen=True)
class Acquisition:
    """How a scanner turns echo amplitude into pixels: depth attenuation and gain ranges (drawn
    per image), speckle correlation (moving-average taps across and along the beam) and log
    compression (pixels ~ log1p(``echo_scale`` x amplitude) / log1p(``dynamic_range``))."""
    attenuation: tuple = (0.2, 0.6)
    gain: tuple = (0.8, 1.25)
    lateral_taps: int = 3
    axial_taps: int = 2
    echo_scale: float = 12.0
    dynamic_range: float = 48.0


# The look of every image ``generate`` writes.
DEFAULT_ACQUISITION = Acquisition()


def _acquire(rng, echo, y, acquisition=DEFAULT_ACQUISITION):
    """Depth attenuation, speckle (Rayleigh, laterally correlated), log compression -> uint8."""
    height, width = echo.shape
    a = acquisition
    echo *= np.exp(-rng.uniform(*a.attenuation) * y)
    real = rng.standard_normal((height, width), dtype=np.float32)
    imag = rng.standard_normal((height, width), dtype=np.float32)
    speckle = np.hypot(_smooth(_smooth(real, 1, a.lateral_taps), 0, a.axial_taps),
                       _smooth(_smooth(imag, 1, a.lateral_taps), 0, a.axial_taps))
    gain = rng.uniform(*a.gain)
    pixels = (255.0 * gain / np.log1p(a.dynamic_range)) * np.log1p(a.echo_scale * echo * speckle)
    return np.clip(pixels, 0, 255).astype(np.uint8)


def render_field(rng, nodule, height, width, jitter=True, acquisition=DEFAULT_ACQUISITION):
    """Echo amplitude of the scan field with its nodule -> (uint8 field, polygon in field px).
    The steps draw from ``rng`` in a fixed order: same seed, same bytes."""
    y = (np.arange(height, dtype=np.float32) / max(height - 1, 1))[:, None]
    x = (np.arange(width, dtype=np.float32) / max(width - 1, 1))[None, :]
    echo, texture = _background(rng, height, width, y, x)
    shape = _nodule_shape(rng, nodule, height, width, jitter)
    _paint_nodule(echo, texture, nodule, shape)
    _add_calcifications(rng, echo, nodule, shape)
    field = _acquire(rng, echo, y, acquisition)
    angles = np.linspace(-np.pi, np.pi, 36, endpoint=False)
    r = _radius(nodule, angles, shape.spike_angles)
    polygon = [(float(shape.cx + shape.half_w * ri * np.cos(a)),
                float(shape.cy + shape.half_h * ri * np.sin(a))) for a, ri in zip(angles, r)]
    return field, polygon


def render_image(rng, nodule, width=DEFAULT_WIDTH, height=DEFAULT_HEIGHT, band_text="",
                 side_text=("P100", "12L6", "12.0", "31fps", "DR65")):
    """A full frame: black background, scan field, scale bar, scanner text, bottom band.

    Returns (uint8 HxWx3, polygon in image pixels).
    """
    left, top = int(FIELD_BOX[0] * width), int(FIELD_BOX[1] * height)
    right, bottom = int(FIELD_BOX[2] * width), int(FIELD_BOX[3] * height)
    field, polygon = render_field(rng, nodule, bottom - top, right - left)
    canvas = np.zeros((height, width), np.uint8)
    canvas[top:bottom, left:right] = field
    # Grey scale bar on the left, depth dots along the field edge.
    bar_top, bar_bottom = int(0.45 * height), int(0.7 * height)
    bar_x = slice(int(0.015 * width), int(0.03 * width) + 1)
    canvas[bar_top:bar_bottom, bar_x] = np.linspace(255, 0, bar_bottom - bar_top)[:, None]
    canvas[top:bottom:max(1, height // 7), max(0, left - 4)] = 200
    image = Image.fromarray(np.stack([canvas] * 3, axis=2))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    for i, line in enumerate(side_text):  # scanner parameters, right margin
        draw.text((int(0.93 * width), int(0.02 * height) + 11 * i), line, fill=(230, 230, 230),
                  font=font)
    if band_text:  # the bottom band where DDTI burns in text, labels included
        draw.text((int(0.3 * width), int(0.9 * height)), band_text, fill=(235, 235, 235), font=font)
    polygon = [(px + left, py + top) for px, py in polygon]
    return np.asarray(image), polygon


# ----------------------------------------------------------------------------- another scanner
# Images of the same nodules as another scanner would draw them: another acquisition (gain,
# speckle, compression), another frame (where the scan field sits, header text, a depth scale)
# and marks (calipers and their measurement). What a model trained on ``generate``'s images
# meets at another site; the shift score is tested on it. ``generate`` never draws these.

@dataclasses.dataclass(frozen=True)
class ScannerLook:
    """Another scanner's look: its ``acquisition``, its scan field in the frame (``field_box``:
    left, top, right, bottom fractions), the ``header`` lines above the field, the grey of its
    frame (``frame_grey``) and the share of images with caliper marks (``calipers``)."""
    acquisition: Acquisition
    field_box: tuple
    header: tuple
    frame_grey: int
    calipers: float


OTHER_SCANNER = ScannerLook(
    # Brighter, flatter (wider dynamic range), little depth attenuation, and speckle grains
    # stretched along the beam rather than across it (another probe and another processing).
    acquisition=Acquisition(attenuation=(0.0, 0.2), gain=(1.15, 1.5), lateral_taps=1,
                            axial_taps=4, echo_scale=6.0, dynamic_range=120.0),
    field_box=(0.04, 0.15, 0.88, 0.97), header=("SITE B  THYROID", "L14-5  12MHz  MI 0.8"),
    frame_grey=28, calipers=0.6)


def _draw_calipers(draw, polygon, font):
    """'+' marks at the nodule's left and right ends, a dotted line between them, and the
    measurement's text below the field: what a sonographer leaves on a measured image."""
    xs = [x for x, _ in polygon]
    left = polygon[int(np.argmin(xs))]
    right = polygon[int(np.argmax(xs))]
    for x, y in (left, right):
        draw.line([(x - 5, y), (x + 5, y)], fill=(255, 255, 120), width=1)
        draw.line([(x, y - 5), (x, y + 5)], fill=(255, 255, 120), width=1)
    for step in np.linspace(0.0, 1.0, 12)[1:-1]:
        x, y = left[0] + step * (right[0] - left[0]), left[1] + step * (right[1] - left[1])
        draw.point([(x, y)], fill=(255, 255, 120))
    return f"D1 {(right[0] - left[0]) / 40.0:.2f} cm"


def render_scanner_image(rng, nodule, width=DEFAULT_WIDTH, height=DEFAULT_HEIGHT,
                         look=OTHER_SCANNER):
    """A frame as ``look``'s scanner draws it -> (uint8 HxWx3, polygon in image pixels)."""
    left, top = int(look.field_box[0] * width), int(look.field_box[1] * height)
    right, bottom = int(look.field_box[2] * width), int(look.field_box[3] * height)
    field, polygon = render_field(rng, nodule, bottom - top, right - left,
                                  acquisition=look.acquisition)
    canvas = np.full((height, width), look.frame_grey, np.uint8)
    canvas[top:bottom, left:right] = field
    # A depth scale: ticks along the field's right edge.
    tick_x = slice(right + 2, min(width, right + 8))
    canvas[top:bottom:max(1, (bottom - top) // 10), tick_x] = 220
    image = Image.fromarray(np.stack([canvas] * 3, axis=2))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    for i, line in enumerate(look.header):
        draw.text((left + 4, 2 + 11 * i), line, fill=(200, 220, 255), font=font)
    polygon = [(px + left, py + top) for px, py in polygon]
    if rng.random() < look.calipers:
        text = _draw_calipers(draw, polygon, font)
        draw.text((left + 6, bottom - 14), text, fill=(255, 255, 120), font=font)
    return np.asarray(image), polygon
