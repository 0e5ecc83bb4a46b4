"""report.html in a real browser (headless Chromium from Debian, driven by Selenium).

A small real run (2 codecs x 2 eval utterances, no ASR) writes its report; the page must sort on
every column, every <audio> must point at an existing file that Chromium decodes to the file's
duration, every image (plots, spectrograms) must decode, and the console must stay free of errors.
Then each of these is broken once on a copy of the page, and the check must notice.

Skipped, with the reason, only when Chromium, chromedriver or selenium is missing (``.ci/run``
installs Debian's chromium and chromium-driver as root).
"""
from __future__ import annotations

import contextlib
import io
import os
import shutil
from pathlib import Path

import pytest

import browser_check
from benchmarks import leaderboard, run
from test_run_cli import write_manifest

_, _, WHY_NOT = browser_check.find_browser()
pytestmark = pytest.mark.skipif(bool(WHY_NOT), reason=f"no headless browser: {WHY_NOT}")

IDS = ("ps_cards_001", "ps_cards_003")
CODECS = "opus@6k,jepa-daam@small-50hz"


@pytest.fixture(scope="module")
def browser():
    session = browser_check.start_browser()
    yield session
    session.quit()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, eval_rows) -> Path:
    tmp = tmp_path_factory.mktemp("browser")
    manifest = write_manifest(tmp, eval_rows, IDS)
    out = tmp / "run"
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = run.main(["--codecs", CODECS, "--data", str(manifest), "--out", str(out),
                         "--cache-dir", str(tmp / "cache"), "--no-asr", "--no-perceptual", "--listen", "2"])
    assert code == 0, err.getvalue()
    return out


def _screenshot_path(tmp_path: Path, name: str) -> Path:
    """Screenshots go to $REPORT_SCREENSHOT_DIR when set (to look at them), else the test's tmp folder."""
    folder = Path(os.environ.get("REPORT_SCREENSHOT_DIR") or tmp_path)
    return folder / name


def test_run_writes_a_page_that_works_in_chromium(browser, run_dir: Path, tmp_path: Path):
    page = run_dir / "report.html"
    assert page.is_file(), "benchmarks.run did not write report.html"
    shot = _screenshot_path(tmp_path, "report.png")
    problems = browser_check.check_page(browser, page, screenshot=shot,
                                        sort_tables=("summary-table", "codebook-table"), min_plots=2)
    assert problems == []
    assert shot.read_bytes()[:4] == b"\x89PNG" and shot.stat().st_size > 10_000
    # 2 utterances x (original + 2 codecs) players, all files beside the page; the run's own
    # reconstructions (cache hits of the signals it scored), not re-encodings
    assert len(list((run_dir / "listen").rglob("*.flac"))) == 6
    assert page.read_text(encoding="utf-8").count("as scored (run cache)") == 4


def test_leaderboard_page_works_in_chromium(browser, run_dir: Path, tmp_path: Path):
    page = leaderboard.write_leaderboard(tmp_path / "board" / "leaderboard.html", [run_dir])
    assert browser_check.check_page(browser, page, screenshot=_screenshot_path(tmp_path, "leaderboard.png")) == []


@pytest.fixture()
def copy(run_dir: Path, tmp_path: Path) -> Path:
    """A copy of the run folder's page and files, to break."""
    target = tmp_path / "copy"
    shutil.copytree(run_dir, target, ignore=shutil.ignore_patterns("tokens", "*.pdf"))
    return target


def _edit(page: Path, old: str, new: str) -> None:
    html = page.read_text(encoding="utf-8")
    assert old in html, f"{old!r} not in the page: update the test"
    page.write_text(html.replace(old, new), encoding="utf-8")


def test_check_fails_when_an_audio_file_is_missing(browser, copy: Path):
    victim = sorted((copy / "listen").rglob("*.flac"))[1]
    victim.unlink()
    problems = browser_check.check_page(browser, copy / "report.html")
    assert any("file does not exist" in p and victim.name in p for p in problems), problems


def test_check_fails_when_an_audio_file_does_not_decode(browser, copy: Path):
    victim = sorted((copy / "listen").rglob("*.flac"))[2]
    victim.write_bytes(b"fLaC" + b"\x00" * 2000)  # a FLAC header and nothing that decodes
    problems = browser_check.check_page(browser, copy / "report.html")
    assert any("does not decode" in p and victim.name in p for p in problems), problems


def test_check_fails_when_sorting_breaks(browser, copy: Path):
    page = copy / "report.html"
    _edit(page, "rows.forEach(function (row) { body.appendChild(row); });", "")  # sorts, but never reorders
    problems = browser_check.check_page(browser, page)
    assert any("not sorted" in p for p in problems), problems


def test_check_fails_on_a_script_error(browser, copy: Path):
    page = copy / "report.html"
    _edit(page, '"use strict";', '"use strict"; undefinedFunction();')
    problems = browser_check.check_page(browser, page)
    assert any(p.startswith("console:") and "undefinedFunction" in p for p in problems), problems
    assert any("aria-sort" in p or "not sorted" in p for p in problems), problems


def test_check_fails_when_a_plot_breaks(browser, copy: Path):
    page = copy / "report.html"
    html = page.read_text(encoding="utf-8")
    start = html.index('<img class="plot" src="') + len('<img class="plot" src="')
    page.write_text(html[:start] + "data:image/svg+xml;base64,bm90IGFuIGltYWdl" + html[html.index('"', start):],
                    encoding="utf-8")
    problems = browser_check.check_page(browser, page)
    assert any("does not decode" in p and "(plot)" in p for p in problems), problems


def test_check_fails_when_plots_are_missing(browser, copy: Path):
    page = copy / "report.html"
    html = page.read_text(encoding="utf-8")
    page.write_text(html.replace('<img class="plot"', '<img class="gone"'), encoding="utf-8")
    problems = browser_check.check_page(browser, page)
    assert any(p.startswith("plots: 0 plot images") for p in problems), problems
