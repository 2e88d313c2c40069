"""The report as a browser shows it: headless Chromium renders every figure and no NaN/None/True/False.

Needs the Debian package ``chromium`` (skipped locally without it, a failure in CI).
"""

import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from distlaw.fitting.synthetic import synthetic_runs
from conftest import require_service

PROBE = """<script>
window.addEventListener("load", () => {
  const images = [...document.images];
  document.body.dataset.images = images.length;
  document.body.dataset.rendered = images.filter(i => i.complete && i.naturalWidth > 0 && i.naturalHeight > 0).length;
  document.body.dataset.bad = (document.body.innerText.match(/\\b(NaN|nan|None|True|False|undefined)\\b/g) || []).join(",");
});
</script></body>"""


def chromium(*args: str) -> subprocess.CompletedProcess:
    binary = shutil.which("chromium")
    require_service(binary is not None, "chromium not installed (apt-get install chromium)")
    return subprocess.run([binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", *args],
                          capture_output=True, text=True, timeout=60, check=True)


@pytest.fixture
def report(cli, tmp_path):
    runs = synthetic_runs("busbridge2025", n_supervised=12, n_distilled=12, noise=0.0, seed=3)
    runs["wall_time_s"] = np.where(np.arange(len(runs)) % 2, np.nan, 10.0)  # blanks to print
    runs.to_csv(tmp_path / "runs.csv", index=False)
    out = tmp_path / "report.html"
    r = cli("report", tmp_path / "runs.csv", "-c", "busbridge2025", "--out", out)
    assert r.code == 0, r.stderr
    return out


def test_chromium_renders_every_figure_and_no_missing_value_words(report, tmp_path):
    probe = tmp_path / "probe.html"
    probe.write_text(report.read_text().replace("</body>", PROBE))
    dom = chromium(f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()).stdout
    body = re.search(r"<body([^>]*)>", dom).group(1)
    attrs = dict(re.findall(r'data-(\w+)="([^"]*)"', body))
    assert int(attrs["images"]) == 3  # supervised law, distilled students, every run against the laws
    assert attrs["rendered"] == attrs["images"]
    assert attrs["bad"] == ""


def test_chromium_screenshot_is_not_blank(report, tmp_path):
    shot = tmp_path / "shot.png"
    chromium(f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1000,2400", report.as_uri())
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape == (2400, 1000)
    dark = pixels < 128
    assert dark.mean() > 0.01  # text and figures, not a white page
    assert dark[1200:].mean() > 0.005  # the figures further down rendered too
