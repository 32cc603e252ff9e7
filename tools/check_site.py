"""Open every page of the built book in headless Chromium and report what a reader would see broken.

For each HTML page (served from a local HTTP server on 127.0.0.1, so the check sees what a web host serves):

* **math**: after MathJax finishes, every Sphinx math element (``.math``) must hold a typeset
  ``mjx-container`` and no ``mjx-merror`` (a TeX error renders as red text, not as an exception);
* **images**: every ``<img>`` must load (``naturalWidth > 0``), lazy images included;
* **console**: no ``console.error`` message and no uncaught page exception;
* **requests**: no failed request, and no request leaving the machine (the book must work offline, so the
  check blocks and reports any request to another host).

Usage: python tools/check_site.py _build/html      (exit status 1 when a problem is found)
Chromium: ``$CHROMIUM`` or /usr/bin/chromium (Debian's ``chromium`` package).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
# Folders of the built site that hold assets rather than pages.
SKIP_DIRS = {"_static", "_sources", "_images", "_downloads", "jupyter_execute"}

# Runs in the page: waits for MathJax (if the page loads it), forces lazy images to load, then reports.
_INSPECT_JS = """
async () => {
  const imgs = Array.from(document.images);
  for (const img of imgs) { img.loading = 'eager'; }
  await Promise.all(imgs.map(img => img.complete ? null :
      new Promise(done => { img.addEventListener('load', done); img.addEventListener('error', done); })));
  if (window.MathJax && window.MathJax.startup && window.MathJax.startup.promise) {
    await window.MathJax.startup.promise;
  }
  const maths = Array.from(document.querySelectorAll('.math'));
  const untypeset = maths.filter(el => !el.querySelector('mjx-container'))
                         .map(el => el.textContent.trim().slice(0, 80));
  const texErrors = Array.from(document.querySelectorAll('mjx-merror'))
                         .map(el => (el.getAttribute('data-mjx-error') || el.textContent).slice(0, 80));
  const brokenImages = imgs.filter(img => !(img.complete && img.naturalWidth > 0))
                           .map(img => img.getAttribute('src'));
  const outputImages = document.querySelectorAll('.cell_output img').length;
  return {maths: maths.length, untypeset, texErrors, brokenImages, images: imgs.length, outputImages};
}
"""


@dataclass(frozen=True)
class Problem:
    """One thing wrong on one page; ``kind`` is math, tex-error, image, console, request or offline."""

    page: str
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.page}: [{self.kind}] {self.detail}"


@dataclass(frozen=True)
class PageReport:
    """What the check saw on one page: math elements, all images, and images among cell outputs."""

    page: str
    maths: int
    images: int
    output_images: int


def pages(site: Path) -> list[Path]:
    """Every HTML page of the site, relative to it, skipping asset folders."""
    return sorted(
        p.relative_to(site)
        for p in site.rglob("*.html")
        if not SKIP_DIRS.intersection(p.relative_to(site).parts)
    )


@contextlib.contextmanager
def serve(site: Path) -> Iterator[str]:
    """Serve ``site`` on 127.0.0.1 at a free port for the duration of the block; yields the base URL."""

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep test output readable
            pass

    class QuietServer(http.server.ThreadingHTTPServer):
        def handle_error(self, request: object, client_address: object) -> None:
            # The browser drops connections it no longer needs (redirects, aborted loads): not a problem.
            if not isinstance(sys.exc_info()[1], ConnectionError):
                super().handle_error(request, client_address)

    handler = functools.partial(QuietHandler, directory=str(site))
    server = QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _offline_guard(name: str, problems: list[Problem]):
    """A route handler that lets local requests through and blocks (and reports) every other one."""

    def handle(route) -> None:
        url = route.request.url
        if url.startswith(("data:", "blob:")) or urlparse(url).hostname == "127.0.0.1":
            route.continue_()
        else:
            problems.append(Problem(name, "offline", f"request leaves the machine: {url}"))
            route.abort()

    return handle


def _watch(page, name: str, problems: list[Problem]) -> None:
    """Record console errors, page exceptions, HTTP errors and failed or external requests of ``page``."""

    def on_console(message) -> None:
        if message.type == "error":
            problems.append(Problem(name, "console", message.text[:200]))

    def on_response(response) -> None:
        if response.status >= 400:
            problems.append(Problem(name, "request", f"HTTP {response.status} for {response.url}"))

    def on_request_failed(request) -> None:
        if _local_failure(request):
            problems.append(Problem(name, "request", f"failed: {request.url} ({request.failure})"))

    page.route("**/*", _offline_guard(name, problems))
    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(Problem(name, "console", str(error)[:200])))
    page.on("response", on_response)
    page.on("requestfailed", on_request_failed)


def _local_failure(request) -> bool:
    """A failed request to the local server, other than a navigation that a redirect cut short."""
    if urlparse(request.url).hostname != "127.0.0.1":
        return False  # blocked external requests are reported as "offline" problems already
    return not (request.is_navigation_request() and "ERR_ABORTED" in (request.failure or ""))


def chromium_path() -> str:
    path = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    if not Path(path).exists():
        raise FileNotFoundError(
            f"Chromium not found at {path!r}: install Debian's package (apt-get install -y chromium) "
            "or point $CHROMIUM at a Chromium binary"
        )
    return path


def check_site(site: Path | str, timeout_ms: int = 30_000) -> tuple[list[Problem], list[PageReport]]:
    """Check every page of a built site. Returns the problems found and a per-page summary."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    site = Path(site)
    if not (site / "index.html").exists():
        raise FileNotFoundError(f"{site} holds no index.html: build the book first (make book-smoke)")
    problems: list[Problem] = []
    reports: list[PageReport] = []
    with serve(site) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
        try:
            for rel in pages(site):
                name = rel.as_posix()
                page = browser.new_page()

                _watch(page, name, problems)
                page.goto(f"{base}/{name}", wait_until="load", timeout=timeout_ms)
                try:
                    result = page.evaluate(_INSPECT_JS)
                except PlaywrightError as err:  # a redirect (index.html) navigated away: check its target
                    if "context was destroyed" not in str(err):
                        raise
                    page.wait_for_load_state("load", timeout=timeout_ms)
                    result = page.evaluate(_INSPECT_JS)
                page.close()
                problems += [Problem(name, "math", f"untypeset: {text!r}") for text in result["untypeset"]]
                problems += [Problem(name, "tex-error", text) for text in result["texErrors"]]
                problems += [Problem(name, "image", f"did not load: {src}") for src in result["brokenImages"]]
                reports.append(PageReport(name, result["maths"], result["images"], result["outputImages"]))
        finally:
            browser.close()
    return problems, reports


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("site", nargs="?", default="_build/html", help="the built HTML folder")
    args = parser.parse_args(argv)
    problems, reports = check_site(Path(args.site))
    for report in reports:
        print(f"  {report.page}: {report.maths} math elements, {report.images} images "
              f"({report.output_images} in cell outputs)")
    for problem in problems:
        print(problem)
    print(f"check_site: {len(reports)} pages, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
