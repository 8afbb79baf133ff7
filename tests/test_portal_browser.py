"""The portal page in a real browser: Debian's chromium, driven by Playwright.

Opened straight from the file system (file://): every public dataset shown, every chart
drawn with a size, no console error, no request leaving the page's folder. A screenshot is
saved under var/ for people to look at. `make test` installs chromium
(scripts/install-chromium.sh); without it the test is skipped and says why.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from catalog.definitions import load_catalog
from catalog.portal import CHARTS
from etl.publish_public import publish_open_data
from etl.zones import PUBLIC, Lake
from tests.helpers import DEMO_DATE, REPO, extract_and_validate

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT = REPO / "var" / "portal-screenshot.png"


@pytest.fixture(scope="module")
def portal(departments, tmp_path_factory) -> Path:
    from catalog.store import CatalogStore

    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed (scripts/install-chromium.sh installs it as root)")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (dev extra)")
    root = tmp_path_factory.mktemp("portal")
    catalog = load_catalog()
    lake = Lake(str(root / "lake"), f"sqlite:///{root / 'catalog.db'}")
    store = CatalogStore(f"sqlite:///{root / 'catalog.db'}")
    openable = [d for d in catalog.datasets if d.openable]
    extract_and_validate(
        openable, departments.out_dir, DEMO_DATE, lake=lake, store=store, run_id="p",
        work_dir=root,
    )  # fmt: skip
    publish_open_data(catalog, lake, store, DEMO_DATE, "p")
    return Path(lake.root) / PUBLIC / "index.html"


def test_the_portal_page_draws_everything_offline(portal: Path) -> None:
    from playwright.sync_api import sync_playwright

    page_url = portal.as_uri()
    folder = portal.parent.as_uri()
    console_errors, requests = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.on("console", lambda m: m.type == "error" and console_errors.append(m.text))
            page.on("pageerror", lambda e: console_errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_url)
            page.wait_for_load_state("load")
            for chart in CHARTS:
                page.wait_for_selector(f"#{chart} canvas", state="attached", timeout=10_000)
            shown = page.eval_on_selector_all(
                "section.dataset", "nodes => nodes.map(n => n.dataset.name)"
            )
            sizes = {
                chart: page.eval_on_selector(
                    f"#{chart} canvas",
                    "c => [c.getBoundingClientRect().width, c.getBoundingClientRect().height]",
                )
                for chart in CHARTS
            }
            links = page.eval_on_selector_all("a.download", "nodes => nodes.map(n => n.href)")
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)
        finally:
            browser.close()
    catalog = load_catalog()
    expected = {d.id for d in catalog.datasets if d.openable}
    assert expected <= set(shown)
    assert len([n for n in shown if n.startswith("stats/")]) == 11
    for chart, (width, height) in sizes.items():
        assert width > 100 and height > 100, chart
    assert console_errors == []
    assert requests and all(url.startswith(folder) for url in requests), requests
    assert len(links) == 2 * len(shown)
    for link in links:  # every download link points at a file that is there
        assert Path(link.removeprefix("file://")).is_file(), link
    assert SCREENSHOT.stat().st_size > 10_000
