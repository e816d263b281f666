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
from study_runs import read_rows
from test_pooled import _study_predictions
from thyroid.stats import decision, pooled
from thyroid.study import clinical_report, cv_report, findings, html_page, tables
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
        opened = driver.execute_script("""
            var sections = Array.from(document.querySelectorAll('details'));
            var opened = sections.filter(d => d.open).map(d => d.id);
            sections.forEach(d => { d.open = true; });  // unfold the rest to measure it
            return opened;""")
        assert opened == ["findings", "results-pooled-out-of-fold-predictions"]
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


def _findings_block(run_dir):
    """The findings section of summary.md, which must be the report's first section."""
    markdown = (run_dir / html_page.SUMMARY_MD).read_text(encoding="utf-8")
    first = markdown.split("\n## ", 1)[1]
    assert first.startswith(findings.FINDINGS_HEADING + "\n"), first[:80]
    return first.split("\n## ", 1)[0]


def _two(value):
    return f"{float(value):.2f}"


def _bullet(block, title):
    found = [line for line in block.splitlines() if line.startswith(f"- **{title}")]
    assert len(found) == 1, (title, block)
    return found[0]


def _best_strategy(rows, threshold):
    """The decision curves' verdict at ``threshold`` computed again from summary.csv: a row
    must beat treating all and treating none outright."""
    name = decision.threshold_name(threshold)
    options = {"treat none": 0.0, "treat all": next(
        float(r[f"treat_all_at_{name}"]) for r in rows.values() if r[f"treat_all_at_{name}"])}
    options.update({f"row {row_id}": float(r[f"net_benefit_at_{name}"])
                    for row_id, r in rows.items() if r[f"net_benefit_at_{name}"]})
    best = "treat none"
    for option, value in options.items():
        if value > options[best] + 1e-9:
            best = option
    return best


def check_findings_match_summary_csv(run_dir):
    """Every decimal of the findings block is one summary.csv holds for the row it names (or
    a fixed number of the method: a decision threshold, the 0.05 level), and each statement
    follows from summary.csv: the best row, the rows told apart from it, the verdict."""
    block, rows = _findings_block(run_dir), read_rows(run_dir)
    ran = {row_id: r for row_id, r in rows.items() if r["status"] == "ok" and r["auc"]}
    best_id = max(ran, key=lambda row_id: float(ran[row_id]["auc"]))
    assert ran[best_id]["p_vs_best"] == ""
    best = ran[best_id]
    used = {f"{t:.2f}" for t in decision.TABLE_THRESHOLDS} | {"0.05", "0.001"}

    line = _bullet(block, "Best pooled AUC")
    auc = f"{_two(best['auc'])} [{_two(best['auc_ci_low'])}, {_two(best['auc_ci_high'])}]"
    assert f"row {best_id} (" in line and auc in line, line
    assert f"{best['images']} images, {best['patients']} patients" in line
    used |= {_two(best[name]) for name in ("auc", "auc_ci_low", "auc_ci_high")}

    line = _bullet(block, f"Compared with row {best_id}")
    named = re.findall(r"row (\d+) (\d\.\d\d) \(p (?:= )?(< 0\.001|\d\.\d{3})\)", line)
    assert sorted(int(row_id) for row_id, _, _ in named) == sorted(set(ran) - {best_id})
    same, _, lower = line.partition("lower (p < 0.05)")
    for row_id, auc_text, p_shown in named:
        row = ran[int(row_id)]
        assert auc_text == _two(row["auc"]) and p_shown == tables.p_text(row["p_vs_best"])
        apart = float(row["p_vs_best"]) < findings.ALPHA
        assert (f"row {row_id} {auc_text}" in (lower if apart else same)), line
        used |= {auc_text, p_shown.lstrip("< ")}

    line, judged = _bullet(block, "Decision curves"), []
    for strategy, thresholds in re.findall(r"(treat all|treat none|row \d+) at t = ([\d., ]+\d)",
                                           line):
        for threshold in thresholds.split(", "):
            assert _best_strategy(ran, float(threshold)) == strategy, (threshold, line)
            judged.append(float(threshold))
    assert sorted(judged) == sorted(decision.TABLE_THRESHOLDS), line

    line = _bullet(block, "Calibration")
    assert (f"intercept {_two(best['calibration_intercept_recalibrated'])}, slope "
            f"{_two(best['calibration_slope_recalibrated'])}") in line, line
    assert (f"raw score {_two(best['calibration_intercept'])} / "
            f"{_two(best['calibration_slope'])}") in line, line
    used |= {_two(best[name]) for name in ("calibration_intercept_recalibrated",
                                            "calibration_slope_recalibrated",
                                            "calibration_intercept", "calibration_slope")}

    line = _bullet(block, "External set")
    if "external_auc" in best:
        shown = {int(row_id): values for row_id, *values in re.findall(
            r"row (\d+) (\d\.\d\d) \[(\d\.\d\d), (\d\.\d\d)\]", line)}
        top = max((r for r in ran if ran[r]["external_auc"]),
                  key=lambda row_id: float(ran[row_id]["external_auc"]))
        assert best_id in shown and top in shown, line
        for row_id, values in shown.items():
            assert values == [_two(ran[row_id][f"external_auc{suffix}"])
                              for suffix in ("", "_ci_low", "_ci_high")], line
            used |= set(values)
    stray = set(re.findall(r"-?\d+\.\d+", block)) - used
    assert not stray, (stray, block)
    return block


def test_the_findings_come_from_the_figures_of_summary_csv(report_dir):
    block = check_findings_match_summary_csv(report_dir)
    assert "fold ensemble (mean risk)" in _bullet(block, "External set")
    assert "risk of a TIRADS 4a or above rating" in _bullet(block, "What the label means")
    assert "(#rows-that-did-not-run)" in _bullet(block, "Did not run")


def test_the_quick_study_opens_with_its_findings_from_summary_csv(quick_study):
    _, run_dir = quick_study
    block = check_findings_match_summary_csv(run_dir)
    assert "none given" in _bullet(block, "External set")
    assert "risk of a TIRADS 4a or above rating" in _bullet(block, "What the label means")
    assert "rows 2, 3, 4, 5, 6, 7;" in _bullet(block, "Did not run")


@pytest.mark.browser
@pytest.mark.skipif(chromium.missing() is not None, reason=str(chromium.missing()))
def test_the_quick_study_page_shows_findings_and_results_on_its_first_screen(quick_study,
                                                                             tmp_path):
    """On a 1280 x 900 window the findings block and the results table are on the first
    screen; every other section is folded."""
    _, run_dir = quick_study
    with chromium.headless(tmp_path / "profile", 900, width=1280) as driver:
        driver.get("file://" + str(run_dir / html_page.SUMMARY_HTML))
        facts = driver.execute_script("""
            var findings = document.getElementById('findings');
            var table = document.querySelector(
                '#results-pooled-out-of-fold-predictions table');
            var box = findings.getBoundingClientRect(), top = table.getBoundingClientRect();
            return {screen: window.innerHeight, width: window.innerWidth,
                    findingsTop: box.top, findingsBottom: box.bottom, tableTop: top.top,
                    firstRow: table.rows[1].getBoundingClientRect().bottom,
                    text: findings.innerText, scrolled: window.scrollY,
                    open: Array.from(document.querySelectorAll('details'))
                               .filter(d => d.open).map(d => d.id),
                    sections: document.querySelectorAll('details').length};""")
        print(facts)
    assert facts["width"] == 1280 and facts["scrolled"] == 0
    assert 0 <= facts["findingsTop"] < facts["findingsBottom"] <= facts["screen"]
    assert facts["tableTop"] < facts["firstRow"] <= facts["screen"]
    assert "Best pooled AUC" in facts["text"] and "Decision curves" in facts["text"]
    assert facts["open"] == ["findings", "results-pooled-out-of-fold-predictions"]
    assert facts["sections"] >= 8  # the design, run, timing and the rest fold


def test_the_findings_check_catches_a_number_summary_csv_does_not_hold(report_dir, tmp_path):
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(report_dir, copy)
    markdown = (copy / html_page.SUMMARY_MD).read_text(encoding="utf-8")
    line = _bullet(_findings_block(copy), "Calibration")
    changed = re.sub(r"slope (-?\d\.\d\d)", lambda m: f"slope {float(m.group(1)) + 0.01:.2f}",
                     line, count=1)
    (copy / html_page.SUMMARY_MD).write_text(markdown.replace(line, changed), encoding="utf-8")
    with pytest.raises(AssertionError):
        check_findings_match_summary_csv(copy)
