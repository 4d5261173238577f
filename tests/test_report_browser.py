"""The HTML report as a reader sees it: ``report --format html`` of a quickstart-like store opened in headless
Chromium at 1600 px (``tests/browser.py``): every figure loaded and shown at a readable width, no table cell cut, no
horizontal scrolling, the subtitle saying where the runs are. Chromium is optional here (the test skips without it)
but required where ``LGRPO_REQUIRE_BROWSER`` is set (``.ci/run`` installs it).
"""

from __future__ import annotations

import os
import re

import pytest
from report_store import build_store, quickstart_specs, store_uri
from typer.testing import CliRunner

from lgrpo_bench.cli import app

pytestmark = pytest.mark.e2e

QUICKSTART = """name: quickstart
base:
  model: {{name: tiny-s}}
  task: {{name: arith}}
  tracking: {{uri: '{uri}', experiment: quickstart}}
axes:
  algorithm.name: [grpo, dapo, dapo_full, dr_grpo, lambda_grpo]
  train.seed: [0, 1, 2]
"""

LAYOUT_JS = """(() => {
  const cut = [];
  for (const cell of document.querySelectorAll('td, th')) {
    if (cell.scrollWidth > cell.clientWidth + 1) cut.push(cell.innerText.trim());
  }
  const images = [...document.querySelectorAll('img')].map(img => ({
    loaded: img.complete && img.naturalWidth > 0, shown: img.getBoundingClientRect().width, natural: img.naturalWidth}));
  return {cut, images, pageWidth: document.documentElement.scrollWidth, viewport: window.innerWidth,
          rows: [...document.querySelectorAll('table')[0].querySelectorAll('tr')].filter(row => row.querySelector('td')).length,
          subtitle: (document.querySelector('h1 + p') || {}).innerText || ''};
})()"""
"""Cells whose content is wider than their box, each image's load state and widths, the page's scroll width, the first
table's body rows and the subtitle."""


def test_html_report_in_a_browser_at_1600_px(tmp_path):
    from browser import Page, chromium

    if chromium() is None:
        if os.environ.get("LGRPO_REQUIRE_BROWSER"):
            pytest.fail("LGRPO_REQUIRE_BROWSER is set but Chromium is not installed (apt-get install -y chromium)")
        pytest.skip("Chromium is not installed (apt-get install -y chromium)")
    grid_file = tmp_path / "quickstart.yaml"
    grid_file.write_text(QUICKSTART.format(uri=store_uri(tmp_path)))
    build_store(tmp_path, quickstart_specs(grid_file), experiment="quickstart", grid="quickstart")
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["report", "--grid", str(grid_file), "--format", "html", "--out", str(out)])
    assert result.exit_code == 0, result.output
    with Page(width=1600, height=1000) as page:
        page.open((out / "report.html").as_uri())
        page.wait_for("document.readyState === 'complete' && [...document.images].every(img => img.complete)")
        layout = page.evaluate(LAYOUT_JS)
    assert layout["rows"] == 5 + 1, "one row per algorithm and the pooled seed std"
    assert layout["cut"] == [], f"cells cut at 1600 px: {layout['cut']}"
    assert layout["pageWidth"] <= layout["viewport"], "the page scrolls sideways at 1600 px"
    assert len(layout["images"]) >= 3 and all(image["loaded"] for image in layout["images"]), layout["images"]
    for image in layout["images"]:  # shown at ≥ 60 % of its natural width (900–1500 px): labels stay readable
        assert image["shown"] >= 0.6 * min(image["natural"], layout["viewport"]), image
    assert re.search(r"15 runs of grid quickstart in experiment quickstart", layout["subtitle"]), layout["subtitle"]
