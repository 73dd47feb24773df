"""index.html in a real browser: headless Debian Chromium opens it from disk with every network
route closed, and the page must show its title, decode every image and sort a column on click.
`.ci/run` installs chromium and chromium-driver; elsewhere the test is skipped."""
import os
import shutil
from pathlib import Path

import pytest

from bench.report import render_report
from tests.report_rows import row, store_rows

PUBLISHED_QUICK = Path(__file__).resolve().parents[1] / "results" / "published" / "quick"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                reason="Debian packages chromium and chromium-driver not installed")
NO_NETWORK = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--no-first-run", "--disable-background-networking", "--disable-component-update",
              "--disable-sync", "--disable-default-apps", "--disable-quic",
              "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
              "--window-size=1400,1000"]


@pytest.fixture
def browser(tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in NO_NETWORK + [f"--user-data-dir={tmp_path / 'profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture
def page(tmp_path):
    rows = [row("a", "ddim", 10, 7.0, 0.2, fid_error=0.4), row("b", "ddpm", 20, 4.0, 0.4),
            row("c", "flow-heun", 19, 5.5, 0.3), row("d", "edm-heun", 35, 9.0, 0.5)]
    store_rows(tmp_path / "results", "s", *rows, grids=True)
    return render_report("s", tmp_path / "results", tmp_path / "reports") / "index.html"


def first_column(driver) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.querySelector('table.sortable').tBodies[0].rows)"
        ".map(r => r.cells[0].innerText);")


def test_report_opens_offline_decodes_images_and_sorts(browser, page, tmp_path):
    browser.get(page.as_uri())
    assert browser.title == "diffbench report: s"
    images = browser.execute_script(
        "return Array.from(document.images).map(i => [i.complete, i.naturalWidth]);")
    assert len(images) >= 6 and all(done and width > 0 for done, width in images)
    assert browser.execute_script(
        "return performance.getEntriesByType('resource').filter(e => !e.name.startsWith('data:')).length;") == 0
    assert first_column(browser) == ["ddim", "ddpm", "edm-heun", "flow-heun"]
    fid_header = browser.find_element("xpath", "(//table[@class='sortable'])[1]//th[starts-with(., 'FID')]")
    fid_header.click()
    assert first_column(browser) == ["ddpm", "flow-heun", "ddim", "edm-heun"]
    fid_header.click()
    assert first_column(browser) == ["edm-heun", "ddim", "flow-heun", "ddpm"]
    shot = tmp_path / "report.png"
    assert browser.save_screenshot(str(shot)) and os.path.getsize(shot) > 10_000


@pytest.fixture
def wide_page(tmp_path):
    """The published quick rows (real model names, hyper-parameters, uncertainties and overhead
    columns) plus a row with the longest hyper-parameters any published suite uses."""
    results = tmp_path / "results"
    shutil.copytree(PUBLISHED_QUICK, results / "quick")
    store_rows(results, "quick", row("z", "edm-stochastic", 35, 57.5, 0.2, fid_error=1.3, model="edm",
                                     hparams={"S_churn": 30.0, "S_min": 0.01, "S_max": 1.0, "S_noise": 1.007}))
    return render_report("quick", results, tmp_path / "reports") / "index.html"


@pytest.mark.parametrize("width", [420, 1400])
def test_the_page_never_scrolls_sideways_and_the_fid_column_is_in_view(browser, wide_page, width):
    browser.set_window_size(width, 900)
    browser.get(wide_page.as_uri())
    inner, page_width = browser.execute_script(
        "return [window.innerWidth, document.documentElement.scrollWidth];")
    assert page_width <= inner
    right = browser.execute_script(
        "var th = Array.from(document.querySelector('table.sortable').tHead.rows[0].cells)"
        ".find(c => c.textContent.startsWith('FID')); return th.getBoundingClientRect().right;")
    assert right <= inner
