"""What the browser tests share: Debian's Chromium driven by Playwright, a local HTTP server, a blocked network.

Playwright's own browser download cannot work here (no internet), so the tests drive Debian's ``chromium``
(``apt-get install chromium``) through ``executable_path``. axe-core comes from the npm registry at install
time (``make axe``: ``npm install axe-core@4.14.1`` into the git-ignored ``tests/browser/node_modules``),
never at run time.

Every request that does not go to the local server is aborted and recorded, so a page that needs the
internet fails its test instead of silently loading from a CDN.
"""
from __future__ import annotations

import contextlib
import functools
import http.server
import os
import shutil
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CHROMIUM = os.environ.get("COURSE_CHROMIUM", "/usr/bin/chromium")
AXE_JS = HERE / "node_modules" / "axe-core" / "axe.min.js"
AXE_VERSION = "4.14.1"
FAILURES = HERE / "_failures"  # screenshots of failed checks, for the developer (git-ignored)
# Chromium as root in a container, without GPU, without background traffic of its own.
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-dev-shm-usage"]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


def missing() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (it is pinned in requirements.txt: make env)"
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        return f"Debian's Chromium is missing at {CHROMIUM} (apt-get install -y chromium, as .ci/run does)"
    return None


def missing_axe() -> str | None:
    if not AXE_JS.exists():
        return (f"axe-core is not installed in {AXE_JS.parent.parent} "
                f"(make axe: npm install axe-core@{AXE_VERSION})")
    return None


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest's output clean
        pass


@contextlib.contextmanager
def serve(folder: Path):
    """Serve ``folder`` over HTTP on 127.0.0.1 (a free port) in a thread; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS, headless=True)


@dataclass
class Watch:
    """What a page did that it should not: requests off the local server, console errors, JS exceptions."""

    origin: str
    external: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def attach(self, context):
        def route(r):
            url = r.request.url
            if url.startswith(self.origin) or url.startswith(("data:", "blob:", "about:")):
                r.continue_()
            else:
                self.external.append(url)
                r.abort()

        context.route("**/*", route)
        return self

    def watch_page(self, page):
        def console(msg):
            # a blocked request is reported twice (the request list and a console error): keep it once
            if msg.type == "error" and "net::ERR_FAILED" not in msg.text:
                self.errors.append(f"console: {msg.text}")

        page.on("console", console)
        page.on("pageerror", lambda exc: self.errors.append(f"exception: {exc}"))
        return page


def screenshot(page, name: str) -> Path:
    """Keep a full-page screenshot of a failed check in tests/browser/_failures/."""
    FAILURES.mkdir(exist_ok=True)
    path = FAILURES / (name.replace("/", "__") + ".png")
    with contextlib.suppress(Exception):
        page.screenshot(path=str(path), full_page=True, timeout=15000)
    return path


def run_axe(page) -> list[dict]:
    """axe-core's serious and critical violations of the page as it is now: [{id, impact, help, nodes}]."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE_JS))
    return page.evaluate("""async () => {
        const r = await axe.run(document, {resultTypes: ['violations']});
        return r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical').map(v => ({
            id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.slice(0, 3).map(n => n.target.join(' ') + ': ' + (n.failureSummary || '')),
            count: v.nodes.length}));
    }""")
