"""Every page of the built book in Chromium, as a reader on a desktop and on a phone meets it, offline.

Per page (one test each; the book is built once per session, one browser and one local server serve all):

* at 1280x900: no console error or JavaScript exception; no request leaves the local server (each one is
  blocked and recorded); every equation rendered by MathJax (no raw TeX, no MathJax error); every image
  loaded; every collapsed solution / code cell and every model-answer dropdown opens on a click and shows its
  content; the menu button collapses the sidebar and brings it back; axe-core reports no serious or
  critical violation;
* at 390x844 (a phone): the page does not scroll sideways; every display equation wider than the column
  scrolls inside its own box and shows the scroll cue; the navigation drawer and (where the page has
  sections) the page-contents drawer open on a tap and close with Escape.

Plus: the search page finds results. A failed check keeps a screenshot in tests/browser/_failures/.
"""
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import browserkit as bk  # noqa: E402

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def pages() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]] + [c["file"] for part in toc["parts"] for c in part["chapters"]]
    return files + ["genindex"]


READY = """async () => {
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
    const images = [...document.images];
    images.forEach(i => { i.loading = 'eager'; });
    const loaded = i => i.complete ? null : new Promise(r => {
        i.addEventListener('load', r); i.addEventListener('error', r); });
    await Promise.race([Promise.all(images.map(loaded)), new Promise(r => setTimeout(r, 15000))]);
}"""

CONTENT = """() => {
    const maths = [...document.querySelectorAll('.math')];
    const raw = maths.filter(m => !m.querySelector('mjx-container'));
    return {
        equations: maths.length,
        raw: raw.slice(0, 3).map(m => m.textContent.trim().slice(0, 60)),
        mathErrors: [...document.querySelectorAll('mjx-merror')].slice(0, 3).map(e => e.textContent.slice(0, 60)),
        images: document.images.length,
        broken: [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src),
    };
}"""

VISIBLE = """el => { const r = el.getBoundingClientRect(); const s = getComputedStyle(el);
    return r.width > 1 && r.height > 1 && s.visibility !== 'hidden' && s.display !== 'none'; }"""

PHONE_LAYOUT = """() => {
    const width = document.documentElement.clientWidth;
    const culprits = [];
    if (document.documentElement.scrollWidth > width + 1) {
        for (const el of document.querySelectorAll('body *')) {
            const r = el.getBoundingClientRect();
            if (r.right <= width + 1 || r.width === 0) continue;
            let clipped = false;
            for (let a = el.parentElement; a && a !== document.body; a = a.parentElement) {
                const o = getComputedStyle(a).overflowX;
                if (o !== 'visible') { clipped = true; break; }
            }
            if (!clipped) culprits.push(el.tagName.toLowerCase() + '.' + [...el.classList].join('.') +
                                        ' right=' + Math.round(r.right));
            if (culprits.length >= 3) break;
        }
    }
    // a display equation: div.math holding MathJax's mjx-container; whichever of the two overflows scrolls
    const boxes = [...document.querySelectorAll('div.math, div.math > mjx-container')];
    const wide = boxes.filter(m => m.scrollWidth > m.clientWidth + 1);
    const noCue = wide.filter(m => {
        const s = getComputedStyle(m);
        return !['auto', 'scroll'].includes(s.overflowX) || !s.backgroundImage.includes('gradient');
    });
    return {scrollWidth: document.documentElement.scrollWidth, width, culprits,
            wideEquations: wide.length, noCue: noCue.slice(0, 3).map(m => m.textContent.slice(0, 50))};
}"""


def visible(locator) -> bool:
    return locator.count() > 0 and locator.first.evaluate(VISIBLE)


def check_toggles(page, problems: list[str]) -> int:
    """Open every collapsed cell / solution and every dropdown admonition; return how many were opened."""
    opened = 0
    details = page.locator("details.hide")
    for i in range(details.count()):
        d = details.nth(i)
        d.locator("summary").first.click()
        if not d.evaluate("d => d.open") or not visible(d.locator(":scope > :not(summary)")):
            problems.append(f"collapsed cell {i + 1} does not open on a click")
        opened += 1
    dropdowns = page.locator("div.dropdown.admonition")
    for i in range(dropdowns.count()):
        box = dropdowns.nth(i)
        box.locator(".admonition-title").first.click()
        body = box.locator(":scope > :not(.admonition-title)")
        page.wait_for_timeout(50)
        if not visible(body):
            problems.append(f"dropdown {box.locator('.admonition-title').first.inner_text()!r} "
                            "does not open on a click")
        opened += 1
    return opened


def check_desktop_menu(page, problems: list[str]) -> None:
    sidebar = page.locator("#pst-primary-sidebar")
    toggle = page.locator(".bd-header-article .primary-toggle")
    if not visible(toggle):
        problems.append("desktop: no visible menu button")
        return
    toggle.click()
    page.wait_for_timeout(300)
    if visible(sidebar):
        problems.append("desktop: the menu button does not collapse the sidebar")
    toggle.click()
    page.wait_for_timeout(300)
    if not visible(sidebar):
        problems.append("desktop: a second click on the menu button does not bring the sidebar back")


def check_drawer(page, toggle_selector: str, dialog_selector: str, what: str, problems: list[str]) -> None:
    toggle = page.locator(toggle_selector)
    toggle.click()
    dialog = page.locator(dialog_selector)
    try:
        page.wait_for_function(f"() => document.querySelector('{dialog_selector}').open", timeout=3000)
    except Exception:
        problems.append(f"phone: tapping the {what} button does not open the {what} drawer")
        return
    links = dialog.locator("a")
    if not (links.count() and visible(links.first)):
        problems.append(f"phone: the {what} drawer opens without visible links")
    page.keyboard.press("Escape")
    page.wait_for_timeout(100)
    if dialog.evaluate("d => d.open"):
        problems.append(f"phone: Escape does not close the {what} drawer")


@pytest.mark.parametrize("name", pages())
def test_page(site, chromium, name, request):
    url = f"{site}/{name}.html"
    context = chromium.new_context(viewport=bk.DESKTOP)
    watch = bk.Watch(site).attach(context)
    page = watch.watch_page(context.new_page())
    problems: list[str] = []
    try:
        page.goto(url, wait_until="load", timeout=60000)
        page.evaluate(READY)
        content = page.evaluate(CONTENT)
        if content["raw"]:
            problems.append(f"equations not rendered (raw TeX): {content['raw']}")
        if content["mathErrors"]:
            problems.append(f"MathJax errors: {content['mathErrors']}")
        if content["broken"]:
            problems.append(f"images not loaded: {content['broken'][:3]}")
        check_toggles(page, problems)
        check_desktop_menu(page, problems)
        if not bk.missing_axe():
            page.mouse.move(0, 0)  # no link left hovered (its hover colour is not what a reader sees)
            for v in bk.run_axe(page):
                problems.append(f"axe {v['impact']} {v['id']} ({v['count']}x): {v['help']}; e.g. {v['nodes'][:2]}")
        if problems:
            bk.screenshot(page, f"{name}-desktop")

        page.set_viewport_size(bk.PHONE)
        page.evaluate("() => window.scrollTo(0, 0)")
        page.wait_for_timeout(200)
        phone = len(problems)
        layout = page.evaluate(PHONE_LAYOUT)
        if layout["scrollWidth"] > layout["width"] + 1:
            problems.append(f"phone: the page is {layout['scrollWidth']}px wide in a {layout['width']}px window; "
                            f"too wide: {layout['culprits']}")
        if layout["noCue"]:
            problems.append(f"phone: wide equations without a sideways scroll cue: {layout['noCue']}")
        check_drawer(page, ".bd-header-article .primary-toggle", "#pst-primary-sidebar-modal", "navigation",
                     problems)
        if visible(page.locator(".bd-header-article .secondary-toggle")):
            check_drawer(page, ".bd-header-article .secondary-toggle", "#pst-secondary-sidebar-modal",
                         "page contents", problems)
        if len(problems) > phone:
            bk.screenshot(page, f"{name}-phone")
    finally:
        context.close()
    problems += [f"request off the local server (blocked): {u}" for u in watch.external]
    problems += watch.errors
    assert not problems, f"{name}.html:\n  " + "\n  ".join(problems)


def test_search_finds_results(site, chromium):
    context = chromium.new_context(viewport=bk.DESKTOP)
    watch = bk.Watch(site).attach(context)
    page = watch.watch_page(context.new_page())
    try:
        page.goto(f"{site}/search.html?q=attention", wait_until="load")
        page.wait_for_selector("#search-results ul.search li", timeout=30000)
        hits = page.locator("#search-results ul.search li").count()
        # and the search button of a page opens the search dialog
        page.goto(f"{site}/book/intro.html", wait_until="load")
        page.locator(".search-button-field").first.click()
        dialog_open = page.evaluate("() => document.getElementById('pst-search-dialog').open")
    finally:
        context.close()
    assert hits >= 5, f"searching 'attention' found {hits} pages"
    assert dialog_open, "the search button does not open the search dialog"
    assert not watch.external and not watch.errors, (watch.external, watch.errors)


def test_axe_core_is_installed():
    """The accessibility part of test_page runs only with axe-core; say so when it is not there."""
    reason = bk.missing_axe()
    if reason:
        pytest.skip(f"accessibility checks skipped: {reason}")
