"""summary.html: one self-contained page with everything summary.md has, readable on a phone.

The page is built from a fabricated cross-validation (no training); headless Chromium opens it
at a phone's width and checks that its tables and images render and that nothing widens the
page. Skips when chromium / chromedriver / selenium are absent (Debian: apt-get install -y
chromium chromium-driver). THYROID_HTML_SCREENSHOT=docs/summary_html.png saves the screenshot.
"""

import os
import re
from html.parser import HTMLParser

import numpy as np
import pytest

import chromium
from study_rows import report_row
from test_pooled import _study_predictions
from thyroid.stats import pooled
from thyroid.study import clinical_report, cv_report, html_page
from thyroid.study.payloads import ExternalCheckPayload

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# User strings that a Markdown page would turn into a script link, bold text or an element.
HOSTILE_LINK = "[c](javascript:alert%285%29).jpg"
HOSTILE_BOLD = "**b**_i_.jpg"
HOSTILE_HTML = "<img src=x onerror=alert(1)>&amp;"
HOSTILE_NOTE = "no checkpoint at [n](javascript:alert(3)) `x` www.example.com | cell"
def _records():
    """Fabricated out-of-fold records with a recalibrated risk, and an external set."""
    records = _study_predictions(num_repeats=1)
    for record in records:
        record["risk"] = 1 / (1 + np.exp(-(0.8 * np.log(record["prob"] / (1 - record["prob"]))
                                           - 0.1)))
    external = [dict(r, fold=pooled.EXTERNAL_FOLD, image="ext-" + r["image"]) for r in records
                if r["row_id"] in (1, 2) and r["fold"] == 0]
    ensemble = [dict(r, fold=pooled.ENSEMBLE_FOLD, spread=0.05) for r in external]
    return records, external + ensemble


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("html_report")
    records, outside = _records()
    rows = [report_row(1, "vgg_16", "bottleneck_svm", "ok", checkpoint="ImageNet (vgg)"),
            report_row(2, "efficientnet_lite0", "finetune", "ok"),
            report_row(3, "small_cnn", "scratch", "ok"),
            report_row(4, "inception_v3", "finetune", "skipped", note=HOSTILE_NOTE)]
    summaries = pooled.summarize_predictions(records, num_samples=50)
    by_model = {"refit": pooled.summarize_external(outside, 50),
                "folds": pooled.summarize_external(outside, 50, fold=pooled.ENSEMBLE_FOLD)}
    assignment = {"num_folds": 4, "num_repeats": 1, "seed": 0, "inner_validation_fraction": 0.15,
                  "patient_ids": [r["patient_id"] for r in records],
                  "labels": [r["label"] for r in records]}
    check = ExternalCheckPayload(
        exact=[{"external": "ddti:9/9_1.jpg", "development": "ddti:1/1_1.jpg", "sha256": "ab"},
               {"external": f"ddti:{HOSTILE_LINK}", "development": f"ddti:{HOSTILE_BOLD}",
                "sha256": "cd"}], near=[], external_images=40, development_images=160,
        near_bits=6)
    clinical = clinical_report.ClinicalFacts(
        final_model="folds", external_by_model=by_model, external_check=check,
        external_name=f"ddti /ext {HOSTILE_HTML}", tirads_labels=True)
    design = cv_report.StudyDesign(
        data=f"fabricated {HOSTILE_BOLD}", assignment=assignment, augment_copies=2,
        operating_point="youden", eval_every_n_epochs=0.5, early_stopping_patience=10,
        external="ddti /ext", external_assignment={"patient_ids": ["ddti:9"], "labels": [1]},
        clinical=clinical)
    run_info = {"run_name": "html", "date": "2026-01-01", "total_seconds": 12.0,
                "stages": [("shards", 2.0)]}
    cv_report.write_cv_report(str(run_dir), rows, records + outside, summaries,
                              by_model["folds"], run_info, design)
    return run_dir


def test_the_page_holds_what_the_markdown_holds(report_dir):
    markdown = (report_dir / html_page.SUMMARY_MD).read_text()
    page = (report_dir / html_page.SUMMARY_HTML).read_text()
    tables = sum(1 for block, _ in html_page._blocks(markdown.splitlines()) if block == "table")
    assert page.count("<table>") == tables >= 8
    assert page.count('src="data:image/png;base64,') == 3  # roc, calibration, decision curves
    assert 'name="viewport"' in page and "<script" not in page
    for heading in re.findall(r"^#+ (.+)$", markdown, flags=re.M):
        assert html_page.inline(heading) in page, heading
    assert "ddti:9/9_1.jpg = ddti:1/1_1.jpg" in page
    assert "TIRADS 4a or above" in page and "Decision curves" in page


class _Markup(HTMLParser):
    """The page's links, emphasised text, images and visible text."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.links, self.strong, self.images, self.text, self._in_strong = [], [], [], [], 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "a":
            self.links.append(attrs.get("href"))
        elif tag == "img":
            self.images.append(attrs.get("src", ""))
        self._in_strong += tag == "strong"

    def handle_endtag(self, tag):
        self._in_strong -= tag == "strong"

    def handle_data(self, data):
        self.text.append(data)
        if self._in_strong:
            self.strong.append(data)


def _is_safe_link(href, run_dir):
    return (href.startswith(("https://", "http://", "#"))
            or ("/" not in href and os.path.isfile(os.path.join(run_dir, href))))


def test_no_user_string_becomes_markup_in_the_page(report_dir):
    markup = _Markup()
    markup.feed((report_dir / html_page.SUMMARY_HTML).read_text())
    assert markup.links and all(_is_safe_link(href, report_dir) for href in markup.links)
    assert all(src.startswith("data:image/png;base64,") for src in markup.images)
    assert not any("b" == text or "i" in text.split("_") for text in markup.strong)
    text = "".join(markup.text)
    for hostile in (HOSTILE_LINK, HOSTILE_BOLD, HOSTILE_HTML, HOSTILE_NOTE):
        assert hostile in text, hostile


def test_no_user_string_becomes_markup_in_the_markdown(report_dir):
    markdown_it = pytest.importorskip("markdown_it")
    rendered = markdown_it.MarkdownIt("commonmark").enable("table").render(
        (report_dir / html_page.SUMMARY_MD).read_text())
    markup = _Markup()
    markup.feed(rendered)
    assert all(_is_safe_link(href, report_dir) or href.endswith(".png")
               for href in markup.links)
    assert not any("javascript" in src for src in markup.images)
    text = "".join(markup.text)
    for hostile in (HOSTILE_LINK, HOSTILE_BOLD, HOSTILE_HTML, HOSTILE_NOTE):
        assert hostile in text, hostile


@pytest.mark.browser
@pytest.mark.skipif(chromium.missing() is not None, reason=str(chromium.missing()))
def test_the_page_renders_on_a_phone_in_chromium(report_dir, tmp_path):
    with chromium.headless(tmp_path / "profile", 1800) as driver:
        driver.get("file://" + str(report_dir / html_page.SUMMARY_HTML))
        facts = driver.execute_script("""
            var images = Array.from(document.images);
            var tables = Array.from(document.querySelectorAll('table'));
            return {images: images.length,
                    loaded: images.filter(i => i.complete && i.naturalWidth > 0).length,
                    fitting: images.filter(i => i.getBoundingClientRect().width
                                                <= window.innerWidth).length,
                    tables: tables.length,
                    rendered: tables.filter(t => t.rows.length > 1
                                                 && t.getBoundingClientRect().height > 20).length,
                    pageWidth: document.documentElement.scrollWidth,
                    viewport: window.innerWidth};""")
        print(facts)
        assert facts["images"] == facts["loaded"] == facts["fitting"] == 3
        assert facts["tables"] == facts["rendered"] >= 8
        assert facts["pageWidth"] <= facts["viewport"]  # wide tables scroll in their own box
        links = driver.execute_script(
            "return Array.from(document.links).map(a => a.getAttribute('href'));")
        assert links and all(_is_safe_link(href, report_dir) for href in links)
        shown = driver.execute_script("return document.body.textContent;")
        for hostile in (HOSTILE_LINK, HOSTILE_BOLD, HOSTILE_HTML, HOSTILE_NOTE):
            assert hostile in shown, hostile
        target = os.environ.get("THYROID_HTML_SCREENSHOT")
        target = (os.path.join(ROOT, target) if target and not os.path.isabs(target)
                  else target or str(tmp_path / "summary_html.png"))
        assert driver.save_screenshot(target) and os.path.getsize(target) > 1000
