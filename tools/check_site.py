"""Open every page of the built book in headless Chromium and report what a reader would see broken.

For each HTML page (served from a local HTTP server on 127.0.0.1, so the check sees what a web host serves):

* **math**: after MathJax finishes, every Sphinx math element (``.math``) must hold a typeset
  ``mjx-container`` and no ``mjx-merror`` (a TeX error renders as red text, not as an exception);
* **images**: every ``<img>`` must load (``naturalWidth > 0``), lazy images included;
* **console**: no ``console.error`` message and no uncaught page exception;
* **requests**: no failed request, and no request leaving the machine (the book must work offline, so the
  check blocks and reports any request to another host).

What a reader meets on the page, measured in a 1280 x 900 viewport (``VIEWPORT``) after every collapsed box
(``<details>``, sphinx-togglebutton dropdowns such as hidden solutions) has been opened, so that hidden
content is laid out and measured too:

* **raw-table**: a cell output (``.cell_output``, or any ``.output`` area) whose text holds a Markdown table
  that was never rendered: a line ``| a | b |`` together with a separator line ``|---|---|`` (the build's
  smart quotes turn ``---`` into ``—``; en dashes and ``:`` alignment marks count too), or a run of two or
  more separator cells on one line. Printed text (``print()`` lands in ``pre`` blocks) is checked as well: a
  raw table there is just as unreadable. Code listings are not (see ``LISTINGS``).
* **raw-tex**: TeX that MathJax never typeset, in the text of cell outputs and of captions, outside typeset
  math, ``pre`` blocks, ``<code>`` and code listings: a ``$...$`` pair (no newline inside) holding a TeX
  command ``\\name`` or a ``^`` / ``_``, a ``$$...$$`` pair, or ``\\(...\\)`` / ``\\[...\\]`` left as text.
  ``pre`` blocks are exempt because printed text may legitimately show dollars and underscores
  (``$HOME``, ``n_tasks``); a ``$`` pair with neither a command nor ``^``/``_`` inside (prices) is not TeX.
* **wide-math**: a display equation (``mjx-container[display="true"]``) whose typeset width (its
  ``mjx-math`` box) exceeds the room it is given: the ``mjx-container``'s ``clientWidth``, which is the
  text column (``div.math``) less the equation number and the theme's gap. The theme scrolls such an
  equation sideways (``overflow: auto``), so its right-hand terms are cut off. Reported with the number,
  the label (``div.math``'s id) and the first 80 characters of the TeX source (from MathJax's math items).
* **leak**: the build machine on the page (article body, code cells' input and code listings excluded
  except for the checkout's own path, which is flagged everywhere): an absolute path under one of
  ``LEAK_PATH_PREFIXES`` or under the checkout (``ROOT``), outside ``<code>`` / ``pre`` in prose (an example
  command like ``meta-rl eval /tmp/r/run`` is the writer's, not the machine's), anywhere in outputs and
  captions; and the phrases of ``LEAK_PHRASES`` (``uncommitted``, build timings, the build's cores). A
  collapsed provenance box (an element of class ``provenance``, or a ``<details>`` / dropdown / admonition
  titled "How this was made ...") may say "uncommitted changes"; paths inside it are still flagged.
* **low-res-figure**: an image in a cell output or a ``<figure>`` of the article that is neither SVG (``.svg``
  file or ``data:image/svg+xml``) nor at least ``SHARP_RATIO`` (1.5) times its displayed width in natural
  pixels, so it is blurred on a high-density screen. Images still 0 px wide once every box is open (shown
  only in another colour mode, say) are skipped, and so are images that did not load (an ``image`` problem).

``PageReport`` counts, per page, the output figures (cell-output and ``<figure>`` images that are not
diagrams), those that are SVG or high-density, and the diagrams: ``<figure>`` / article images whose file is
one of ``book/_static/diagrams/*.svg`` (Sphinx copies figures to ``_images/`` keeping the name, adding a
number on a clash) or that are served from a ``diagrams/`` folder.

Usage: python tools/check_site.py _build/html      (exit status 1 when a problem is found)
Chromium: ``$CHROMIUM`` or /usr/bin/chromium (Debian's ``chromium`` package).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import re
import sys
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
# Folders of the built site that hold assets rather than pages.
SKIP_DIRS = {"_static", "_sources", "_images", "_downloads", "jupyter_execute"}
# Every page is opened at this size; the widths of the text column and of figures are measured at it.
VIEWPORT = {"width": 1280, "height": 900}
# The checkout the book is built from (the parent of tools/): its path must never reach a page.
ROOT = Path(__file__).resolve().parent.parent
# Where a build machine keeps its files: an absolute path under one of these on a page is a leak.
LEAK_PATH_PREFIXES = ("/root/", "/home/", "/work/", "/tmp/", "/Users/")
# Phrases that describe the build rather than the subject (case-insensitive regular expressions): a run's
# dirty working tree, the machine's cores and load, the build's own timings.
LEAK_PHRASES = (
    r"uncommitted",
    r"\b\d+-core machine",
    r"shared with other processes",
    r"chapter ran in",
)
# Phrases a collapsed provenance box may say plainly (the first of LEAK_PHRASES); paths stay leaks there.
PROVENANCE_PHRASES = (r"uncommitted",)
# Natural pixels per displayed pixel below which a raster figure is blurred on a high-density screen.
SHARP_RATIO = 1.5
# Output areas whose text is a code listing (the notebook's input, show_source listings, highlighted
# code blocks in outputs): never searched for raw tables, raw TeX or leak phrases.
LISTINGS = '.cell_input, .meta-rl-source, [class*="highlight-python"], [class*="highlight-ipython"]'
# The explanatory diagrams the book ships; figures of these files are counted as diagrams.
DIAGRAMS_DIR = ROOT / "book" / "_static" / "diagrams"

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


# Runs in the page after _INSPECT_JS: opens every collapsed box, then returns the texts and sizes that the
# reader-facing rules (raw tables, raw TeX, wide equations, leaks, figure resolution) are judged on.
_READER_JS = """
async (listings) => {
  document.querySelectorAll('details').forEach(d => { d.open = true; });
  document.querySelectorAll('.toggle-hidden').forEach(el => el.classList.remove('toggle-hidden'));
  await new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)));
  const article = document.querySelector('article.bd-article') || document.querySelector('main')
      || document.body;
  const where = el => {
    const section = el.closest('section');
    const heading = section && section.querySelector('h1, h2, h3, h4');
    return heading ? heading.textContent.replace(/#$/, '').replace(/\\s+/g, ' ').trim() : '';
  };
  const BLOCKS = 'p, div, pre, li, tr, br, h1, h2, h3, h4, h5, h6, blockquote, figcaption, summary, dt, dd';
  const lines = copy => {  // the text of a detached copy, a line break after each block as on the screen
    copy.querySelectorAll(BLOCKS).forEach(n => n.after('\\n'));
    return copy.textContent;
  };
  const textOf = (el, drop) => {
    const copy = el.cloneNode(true);
    copy.querySelectorAll(drop).forEach(n => n.remove());
    return lines(copy);
  };
  const NOT_TEXT = 'script, style, button, mjx-container, math, .MathJax_Preview';  // button: copy buttons
  const inListing = el => el.closest(listings) !== null;

  const areas = Array.from(article.querySelectorAll('.cell_output, .output'))
    .filter(el => !(el.parentElement && el.parentElement.closest('.cell_output, .output')) && !inListing(el));
  const outputs = areas.map(el => ({
    where: where(el),
    text: textOf(el, NOT_TEXT + ', ' + listings),
    prose: textOf(el, NOT_TEXT + ', pre, code, ' + listings),
  }));
  const captions = Array.from(article.querySelectorAll('figcaption, caption, .caption-text'))
    .filter(el => !el.closest('.cell_output, .output') && !inListing(el))
    .map(el => ({where: where(el), text: textOf(el, NOT_TEXT + ', pre, code')}));

  const titleOf = box => {
    const title = box.querySelector('summary, .admonition-title, .sd-summary-title, .sd-card-header');
    return title ? title.textContent.trim() : '';
  };
  const provenance = Array.from(article.querySelectorAll('.provenance, details, .admonition, .sd-dropdown'))
    .filter(box => box.classList.contains('provenance') || /^how this was made/i.test(titleOf(box)));
  const marked = article.cloneNode(true);
  const originals = Array.from(article.querySelectorAll('*'));
  const copies = Array.from(marked.querySelectorAll('*'));
  provenance.forEach(box => copies[originals.indexOf(box)].setAttribute('data-provenance', ''));
  marked.querySelectorAll('[data-provenance], ' + NOT_TEXT + ', ' + listings + ', .headerlink')
        .forEach(n => n.remove());
  const prose = article.cloneNode(true);  // the text outside outputs, code and listings
  prose.querySelectorAll('.cell_output, .output, pre, code, .headerlink, ' + NOT_TEXT + ', ' + listings)
       .forEach(n => n.remove());
  const codeText = Array.from(article.querySelectorAll(listings + ', pre, code'))
      .filter(el => !el.closest('.cell_output, .output') || inListing(el))
      .filter(el => !(el.parentElement && el.parentElement.closest(listings + ', pre, code')))
      .map(el => el.textContent);

  const items = (window.MathJax && MathJax.startup && MathJax.startup.document)
      ? Array.from(MathJax.startup.document.math) : [];
  const texOf = container => {
    const item = items.find(it => it.typesetRoot === container);
    return item ? String(item.math) : '';
  };
  const equations = Array.from(article.querySelectorAll('mjx-container[display="true"]')).map(c => {
    const box = c.closest('div.math') || c.parentElement;
    const eqno = box.querySelector('.eqno');
    const math = c.querySelector('mjx-math');
    return {
      where: where(c), id: box.id || '', tex: texOf(c),
      number: eqno ? eqno.textContent.replace(/#$/, '').trim() : '',
      width: math ? math.getBoundingClientRect().width : 0,
      room: c.clientWidth, column: box.clientWidth,
    };
  });

  const seen = new Set();
  const images = [];
  for (const img of article.querySelectorAll('.cell_output img, .output img, figure img, img')) {
    if (seen.has(img) || inListing(img)) continue;
    seen.add(img);
    images.push({
      src: img.currentSrc || img.src, where: where(img),
      inOutput: img.closest('.cell_output, .output') !== null, inFigure: img.closest('figure') !== null,
      natural: img.naturalWidth, shown: img.getBoundingClientRect().width,
      loaded: img.complete && img.naturalWidth > 0,
    });
  }
  return {outputs, captions, noProvenance: lines(marked), prose: lines(prose), codeText,
          equations, images};
}
"""


@dataclass(frozen=True)
class Problem:
    """One thing wrong on one page. ``kind``: math, tex-error, image, console, request, offline (the page
    works), or raw-table, raw-tex, wide-math, leak, low-res-figure (the page reads well); see the module's
    docstring for each rule."""

    page: str
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.page}: [{self.kind}] {self.detail}"


@dataclass(frozen=True)
class PageReport:
    """What the check saw on one page: math elements, all images, images among cell outputs, and for the
    figures: output figures (cell-output and ``<figure>`` images that are not diagrams), how many of them are
    SVG or high-density, and the diagrams (with the diagram files they show)."""

    page: str
    maths: int
    images: int
    output_images: int
    figures: int = 0
    sharp_figures: int = 0
    diagrams: int = 0
    diagram_names: tuple[str, ...] = ()


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


_ROW = re.compile(r"^[ \t]*\|.*\|[ \t]*$", re.M)
_DASHES = r"[ \t]*:?[-\u2012-\u2015]+:?[ \t]*"  # hyphens, and the en/em dashes smart quotes make of them
_SEPARATOR = re.compile(rf"^[ \t]*\|?{_DASHES}(?:\|{_DASHES})+\|?[ \t]*$", re.M)
_SEPARATOR_RUN = re.compile(rf"\|(?:{_DASHES}\|){{2,}}")
_TEX_INSIDE = re.compile(r"\\[a-zA-Z]+|[\^_]")
_DISPLAY_DOLLARS = re.compile(r"\$\$(?:(?!\$\$).)+?\$\$", re.S)
_MATHJAX_DELIMITERS = re.compile(r"\\\((?:(?!\\\)).)+?\\\)|\\\[(?:(?!\\\]).)+?\\\]", re.S)


def _squash(text: str, limit: int = 80) -> str:
    """``text`` on one line, whitespace collapsed, cut to ``limit`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def raw_tables(text: str) -> list[str]:
    """Raw Markdown tables in ``text``: for each, its first row (or the separator seen), on one line.

    A table is a separator line (``|---|---|``, dashes or the en/em dashes smart quotes turn them into,
    ``:`` alignment marks allowed) with a ``| ... |`` row line in the same text, or a run of two or more
    separator cells on one line (a table whose line breaks were collapsed).
    """
    found = []
    rows = [m for m in _ROW.finditer(text) if not _SEPARATOR.fullmatch(m.group(0))]
    separators = list(_SEPARATOR.finditer(text))
    if separators and rows:
        before = [r for r in rows if r.start() < separators[0].start()] or rows
        found.append(_squash(before[-1].group(0)))
    elif separators or (run := _SEPARATOR_RUN.search(text)):
        m = separators[0] if separators else run
        found.append(_squash(text[max(0, m.start() - 60): m.end() + 20]))
    return found


def raw_tex(text: str) -> list[str]:
    r"""Unrendered TeX in ``text`` (the text of an output or caption, with typeset math, ``pre`` and
    ``<code>`` removed): ``$$...$$`` pairs, ``\(...\)`` and ``\[...\]``, and ``$...$`` pairs (consecutive
    dollars, no newline between them) holding a TeX command ``\name`` or a ``^`` or ``_``. A pair of dollars
    with neither inside (two prices) is not TeX, and does not hide a TeX pair that starts at its second one.
    """
    found = [m.group(0) for m in _DISPLAY_DOLLARS.finditer(text)]
    found += [m.group(0) for m in _MATHJAX_DELIMITERS.finditer(text)]
    rest = _MATHJAX_DELIMITERS.sub(" ", _DISPLAY_DOLLARS.sub(" ", text))
    dollars = [m.start() for m in re.finditer(r"(?<!\\)\$", rest)]
    i = 0
    while i + 1 < len(dollars):
        start, end = dollars[i], dollars[i + 1]
        inner = rest[start + 1: end]
        if inner.strip() and "\n" not in inner and _TEX_INSIDE.search(inner):
            found.append(rest[start: end + 1])
            i += 2
        else:
            i += 1
    return [_squash(tex) for tex in found]


def _path_pattern(prefixes: Iterable[str]) -> re.Pattern[str]:
    """Absolute paths starting with one of ``prefixes`` (not the tail of a URL or of a relative path)."""
    heads = "|".join(re.escape(p.rstrip("/")) for p in sorted(set(prefixes), key=len, reverse=True))
    return re.compile(rf"(?<![\w.~-])(?:{heads})(?=/|\b)[^\s'\"<>()\[\]{{}},;`]*")


def _in_context(text: str, match: re.Match[str], width: int = 50) -> str:
    """The match with ``width`` characters either side, on one line."""
    return _squash(text[max(0, match.start() - width): match.end() + width], 2 * width + 40)


def leaks(prose: str, outputs: Iterable[str], code: Iterable[str], no_provenance: str,
          root: Path | str = ROOT) -> list[str]:
    """What of the build machine the page shows, one entry per place (the rule: the module's docstring).

    ``prose``: the article's text outside outputs, ``<code>``/``pre`` and listings; ``outputs``: the text of
    each cell output (listings left out); ``code``: code cells' input, listings and ``<code>``/``pre`` in
    prose (searched for the checkout's path only); ``no_provenance``: all the article's text but listings and
    collapsed provenance boxes (searched for the phrases).
    """
    root = str(root).rstrip("/")
    anywhere = _path_pattern([*LEAK_PATH_PREFIXES, root])
    checkout = _path_pattern([root])
    found = []
    for text in [prose, *outputs]:
        found += [f"path '{m.group(0)}' in '{_in_context(text, m)}'" for m in anywhere.finditer(text)]
    for text in code:
        found += [f"checkout path '{m.group(0)}' in code: '{_in_context(text, m)}'"
                  for m in checkout.finditer(text)]
    for phrase in LEAK_PHRASES:
        for m in re.finditer(phrase, no_provenance, re.I):
            found.append(f"'{m.group(0)}' in '{_in_context(no_provenance, m)}'")
    return found


def diagram_names(folder: Path = DIAGRAMS_DIR) -> set[str]:
    """The file names (stems) of the book's diagrams: ``book/_static/diagrams/*.svg``."""
    return {p.stem for p in folder.glob("*.svg")} if folder.is_dir() else set()


def _file_of(src: str) -> str:
    """The file name an image's URL points to (``data:`` URLs have none)."""
    if src.startswith("data:"):
        return ""
    return unquote(urlparse(src).path).rsplit("/", 1)[-1]


def _diagram_of(src: str, names: Iterable[str]) -> str | None:
    """The diagram an image shows: its file is one of ``names`` (Sphinx may add a number when two figures
    share a name) or it is served from a ``diagrams/`` folder; ``None`` if it is no diagram."""
    stem = _file_of(src).rsplit(".", 1)[0]
    for name in names:
        if re.fullmatch(re.escape(name) + r"\d*", stem):
            return name
    if "/diagrams/" in unquote(urlparse(src).path):
        return stem
    return None


def is_svg(src: str) -> bool:
    return src.startswith("data:image/svg+xml") or _file_of(src).lower().endswith((".svg", ".svgz"))


def _where(where: str) -> str:
    return f" [in '{_squash(where, 60)}']" if where else ""


def reader_problems(name: str, seen: dict, diagrams: Iterable[str] = (),
                    root: Path | str = ROOT) -> tuple[list[Problem], dict]:
    """Judge what _READER_JS saw on page ``name``: the problems and the figure counts for its PageReport."""
    problems = []
    for out in seen["outputs"]:
        problems += [Problem(name, "raw-table", f"raw Markdown table in a cell output{_where(out['where'])}: "
                             f"'{row}'") for row in raw_tables(out["text"])]
        problems += [Problem(name, "raw-tex", f"unrendered TeX in a cell output{_where(out['where'])}: "
                             f"'{tex}'") for tex in raw_tex(out["prose"])]
    for cap in seen["captions"]:
        problems += [Problem(name, "raw-tex", f"unrendered TeX in a caption{_where(cap['where'])}: '{tex}'")
                     for tex in raw_tex(cap["text"])]
    for eq in seen["equations"]:
        if eq["room"] > 0 and eq["width"] > eq["room"] + 0.5:
            label = " ".join(x for x in (eq["number"], eq["id"] and f"#{eq['id']}") if x) or "unnumbered"
            less = ", less the equation number" if eq["number"] else ""
            problems.append(Problem(name, "wide-math",
                                    f"{label}{_where(eq['where'])}: {eq['width']:.0f} px wide, "
                                    f"{eq['room']} px of room ({eq['column']} px column{less}) at "
                                    f"{VIEWPORT['width']} px: '{_squash(eq['tex'])}'"))
    problems += [Problem(name, "leak", leak)
                 for leak in leaks(seen["prose"], [o["text"] for o in seen["outputs"]], seen["codeText"],
                                   seen["noProvenance"], root)]
    counts = {"figures": 0, "sharp_figures": 0, "diagrams": 0, "diagram_names": []}
    for img in seen["images"]:
        diagram = _diagram_of(img["src"], diagrams)
        if not (img["inOutput"] or img["inFigure"] or diagram) or not img["loaded"] or img["shown"] <= 0:
            continue
        sharp = is_svg(img["src"]) or img["natural"] >= SHARP_RATIO * img["shown"]
        if diagram:
            counts["diagrams"] += 1
            counts["diagram_names"].append(diagram)
        else:
            counts["figures"] += 1
            counts["sharp_figures"] += sharp
        if not sharp:
            file = _file_of(img["src"]) or img["src"][:40]
            problems.append(Problem(name, "low-res-figure",
                                    f"{file}{_where(img['where'])}: {img['natural']} px wide for "
                                    f"{img['shown']:.0f} px shown ({img['natural'] / img['shown']:.2f}x); "
                                    f"needs SVG or >= {SHARP_RATIO * img['shown']:.0f} px "
                                    f"({SHARP_RATIO}x)"))
    counts["diagram_names"] = tuple(counts["diagram_names"])
    return problems, counts


def chromium_path() -> str:
    """The Chromium that ``meta-rl doctor`` and ``make setup`` look for (one rule, in meta_rl_lessons.doctor);
    raises FileNotFoundError saying how to get it when it is missing."""
    from meta_rl_lessons.doctor import chromium_path as expected_chromium

    path = expected_chromium()
    if not Path(path).exists():
        raise FileNotFoundError(
            f"Chromium not found at {path!r}: install Debian's package (apt-get install -y chromium) "
            "or point $CHROMIUM at a Chromium binary"
        )
    return path


def check_site(site: Path | str, timeout_ms: int = 30_000, diagrams: Iterable[str] | None = None,
               only: Iterable[str] | None = None) -> tuple[list[Problem], list[PageReport]]:
    """Check every page of a built site. Returns the problems found and a per-page summary.

    ``diagrams``: the file names (without ``.svg``) that count as diagrams; default: ``diagram_names()``.
    ``only``: check just these pages (paths relative to the site, e.g. ``chapters/03-rl2.html``).
    """
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    site = Path(site)
    diagrams = sorted(diagram_names() if diagrams is None else diagrams)
    if not (site / "index.html").exists():
        raise FileNotFoundError(f"{site} holds no index.html: build the book first (make book-smoke)")
    problems: list[Problem] = []
    reports: list[PageReport] = []
    with serve(site) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
        try:
            names = [rel.as_posix() for rel in pages(site)]
            for name in names if only is None else [n for n in names if n in set(only)]:
                page = browser.new_page(viewport=VIEWPORT)

                _watch(page, name, problems)
                page.goto(f"{base}/{name}", wait_until="load", timeout=timeout_ms)
                result, seen = _inspect(page, timeout_ms, PlaywrightError)
                page.close()
                problems += [Problem(name, "math", f"untypeset: {text!r}") for text in result["untypeset"]]
                problems += [Problem(name, "tex-error", text) for text in result["texErrors"]]
                problems += [Problem(name, "image", f"did not load: {src}") for src in result["brokenImages"]]
                found, counts = reader_problems(name, seen, diagrams)
                problems += found
                reports.append(PageReport(name, result["maths"], result["images"], result["outputImages"],
                                          **counts))
        finally:
            browser.close()
    return problems, reports


def _inspect(page, timeout_ms: int, error_type: type[Exception]) -> tuple[dict, dict]:
    """Both page scripts, run on the page the browser settles on.

    A redirect (index.html) can navigate away after ``load``, before or between the two scripts; then both run
    again on its target, so that the two results always describe the same page.
    """
    for _ in range(2):
        try:
            return page.evaluate(_INSPECT_JS), page.evaluate(_READER_JS, LISTINGS)
        except error_type as err:
            if "context was destroyed" not in str(err):
                raise
            page.wait_for_load_state("load", timeout=timeout_ms)
    return page.evaluate(_INSPECT_JS), page.evaluate(_READER_JS, LISTINGS)


def summary(problems: list[Problem], reports: list[PageReport]) -> str:
    """One line: pages, problems by kind, share of output figures that are SVG or high-density, diagrams."""
    kinds = Counter(p.kind for p in problems)
    by_kind = ", ".join(f"{kind} {n}" for kind, n in sorted(kinds.items())) or "none"
    figures = sum(r.figures for r in reports)
    sharp = sum(r.sharp_figures for r in reports)
    share = f"{100 * sharp / figures:.0f}%" if figures else "n/a"
    names = sorted({n for r in reports for n in r.diagram_names})
    diagrams = sum(r.diagrams for r in reports)
    return (f"check_site: {len(reports)} pages, {len(problems)} problem(s) ({by_kind}); "
            f"output figures SVG or >= {SHARP_RATIO}x: {sharp}/{figures} ({share}); diagrams: {diagrams} "
            f"({len(names)} distinct{': ' + ', '.join(names) if names else ''})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("site", nargs="?", default="_build/html", help="the built HTML folder")
    parser.add_argument("--page", action="append", metavar="PATH",
                        help="check only this page (relative to the site; repeatable): chapters/03-rl2.html")
    args = parser.parse_args(argv)
    problems, reports = check_site(Path(args.site), only=args.page)
    for report in reports:
        print(f"  {report.page}: {report.maths} math elements, {report.images} images "
              f"({report.output_images} in cell outputs); figures {report.sharp_figures}/{report.figures} "
              f"sharp, {report.diagrams} diagrams")
    for problem in problems:
        print(problem)
    print(summary(problems, reports))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
