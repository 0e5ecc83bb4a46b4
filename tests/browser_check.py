"""Checks an HTML report in headless Chromium (Debian's ``chromium`` + ``chromium-driver``, driven
by Selenium): the tables sort, every ``<audio>`` source exists and decodes, every image (plots,
spectrograms) decodes, and the JavaScript console shows no error. Used by
``tests/test_report_browser.py``; also a command for a person::

    python tests/browser_check.py runs/default-all/report.html --screenshot shot.png

prints one line per problem (exit 1) or ``ok`` (exit 0).
"""
from __future__ import annotations

import argparse
import base64
import shutil
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMEDRIVER = ("/usr/bin/chromedriver",)

#: In the page: load every <audio> fully and report what the media element says about it.
_AUDIO_JS = """
const done = arguments[arguments.length - 1];
const players = Array.from(document.querySelectorAll('audio'));
const results = [];
let pending = players.length;
if (!pending) { done(results); }
const timer = setTimeout(() => done(results.concat([{timeout: true, pending: pending}])), 20000);
players.forEach((a, i) => {
  let settled = false;
  const finish = () => {
    if (settled) { return; }
    settled = true;
    results.push({index: i, src: a.getAttribute('src'), currentSrc: a.currentSrc, readyState: a.readyState,
                  duration: a.duration, error: a.error ? a.error.code + ': ' + a.error.message : null});
    if (--pending === 0) { clearTimeout(timer); done(results); }
  };
  a.addEventListener('canplaythrough', finish, {once: true});
  a.addEventListener('error', finish, {once: true});
  a.preload = 'auto';
  a.load();
});
"""

#: In the page: every image, and whether the browser could decode it.
_IMAGES_JS = """
return Array.from(document.images).map(img => ({src: img.getAttribute('src').slice(0, 80), cls: img.className,
  complete: img.complete, width: img.naturalWidth, height: img.naturalHeight}));
"""

#: In the page: the sort values of one column of a table, in displayed order.
_COLUMN_JS = """
const table = document.getElementById(arguments[0]);
const index = arguments[1];
return Array.from(table.tBodies[0].rows).map(r => {
  const c = r.cells[index];
  const s = c.getAttribute('data-sort');
  return s === null ? c.textContent.trim().toLowerCase() : s;
});
"""


def find_browser() -> tuple[str | None, str | None, str]:
    """(chromium, chromedriver, why not) — paths of the system browser and driver, or a reason."""
    chromium = next((p for p in CHROMIUM if Path(p).exists()), None) or shutil.which("chromium")
    driver = next((p for p in CHROMEDRIVER if Path(p).exists()), None) or shutil.which("chromedriver")
    try:
        import selenium  # noqa: F401
    except ImportError:
        return chromium, driver, "selenium is not installed (pip install -e '.[dev]')"
    if not chromium or not driver:
        return chromium, driver, ("Debian's chromium and chromium-driver are not installed "
                                  "(apt-get install -y chromium chromium-driver; .ci/run does this as root)")
    return chromium, driver, ""


def start_browser(width: int = 1280, height: int = 900):
    """A headless Chromium session with the browser console log kept (Selenium WebDriver)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver, why = find_browser()
    if why:
        raise RuntimeError(why)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--mute-audio",
                "--autoplay-policy=no-user-gesture-required", f"--window-size={width},{height}",
                "--hide-scrollbars", "--disable-extensions", "--no-first-run"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(options=options, service=Service(executable_path=driver))
    browser.set_script_timeout(30)
    browser.set_page_load_timeout(30)
    return browser


def _local_path(page: Path, src: str) -> Path | None:
    """The file a relative or file:// ``src`` of ``page`` points to (None for data: URIs)."""
    if src.startswith("data:"):
        return None
    parsed = urlparse(src)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    return (page.parent / unquote(parsed.path)).resolve()


def check_sorting(browser, table_id: str) -> list[str]:
    """Click every header of ``table_id`` twice; the column must come out ordered both ways."""
    from selenium.webdriver.common.by import By

    problems = []
    headers = browser.find_elements(By.CSS_SELECTOR, f"#{table_id} thead th")
    if not headers:
        return [f"table #{table_id}: not found or has no header"]
    for index, th in enumerate(headers):
        numeric = th.get_attribute("data-kind") == "num"
        label = th.text.split("\n")[0]
        seen = []
        for _ in range(2):
            browser.execute_script("arguments[0].scrollIntoView({block: 'center', inline: 'center'})", th)
            th.click()
            values = browser.execute_script(_COLUMN_JS, table_id, index)
            direction = th.get_attribute("aria-sort")
            if direction not in ("ascending", "descending"):
                problems.append(f"table #{table_id}, column {label!r}: aria-sort is {direction!r} after a click")
                break
            keyed = list(values)
            if numeric:
                n = sum(1 for v in values if v != "")
                if "" in values[:n]:
                    problems.append(f"table #{table_id}, column {label!r}: empty values not sorted last: {values}")
                keyed = [float(v) for v in values if v != ""]
            expected = sorted(keyed, reverse=direction == "descending")
            if keyed != expected:
                problems.append(f"table #{table_id}, column {label!r}: not sorted {direction} after a click: {values}")
            seen.append(direction)
        if len(seen) == 2 and seen[0] == seen[1]:
            problems.append(f"table #{table_id}, column {label!r}: a second click did not reverse the order")
    return problems


def check_page(browser, page: Path, screenshot: Path | None = None, sort_tables: tuple[str, ...] = ("summary-table",),
               min_plots: int = 1) -> list[str]:
    """Open ``page`` and return every problem found (empty list: the page works).

    Args:
        browser: a session from :func:`start_browser`.
        page: the HTML file.
        screenshot: where to save a PNG of the top of the page (None: no screenshot).
        sort_tables: ids of tables whose every column must sort.
        min_plots: ``img.plot`` images the page must have.
    """
    page = Path(page).resolve()
    browser.get_log("browser")  # drop what an earlier page logged
    browser.get(page.as_uri())
    problems = []
    for table_id in sort_tables:
        problems += check_sorting(browser, table_id)
    players = browser.execute_async_script(_AUDIO_JS)
    for p in players:
        if p.get("timeout"):
            problems.append(f"audio: {p['pending']} players neither loaded nor failed within 20 s")
            continue
        path = _local_path(page, p["src"] or "")
        if path is not None and not path.is_file():
            problems.append(f"audio {p['src']}: file does not exist ({path})")
        if p["error"] or p["readyState"] < 3 or not (p["duration"] or 0) > 0:
            problems.append(f"audio {p['src']}: does not decode (error {p['error']}, readyState {p['readyState']}, "
                            f"duration {p['duration']})")
        elif path is not None and path.is_file():
            import soundfile as sf

            expected = sf.info(str(path)).duration
            if abs(p["duration"] - expected) > 0.05:
                problems.append(f"audio {p['src']}: browser says {p['duration']:.3f} s, file holds {expected:.3f} s")
    images = browser.execute_script(_IMAGES_JS)
    for img in images:
        if not img["complete"] or img["width"] == 0:
            problems.append(f"image {img['src']} ({img['cls']}): does not decode")
    n_plots = sum(1 for img in images if "plot" in img["cls"].split())
    if n_plots < min_plots:
        problems.append(f"plots: {n_plots} plot images, expected at least {min_plots}")
    for entry in browser.get_log("browser"):
        if entry.get("level") in ("SEVERE", "ERROR"):
            problems.append(f"console: {entry.get('message')}")
    if screenshot is not None:  # of the page as it opens
        browser.get(page.as_uri())
        Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
        Path(screenshot).write_bytes(base64.b64decode(browser.get_screenshot_as_base64()))
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("page", type=Path)
    parser.add_argument("--screenshot", type=Path)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=900)
    args = parser.parse_args(argv)
    browser = start_browser(args.width, args.height)
    try:
        problems = check_page(browser, args.page, args.screenshot)
    finally:
        browser.quit()
    print("\n".join(problems) if problems else "ok")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
