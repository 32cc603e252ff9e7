"""Sphinx extension: drop duplicated inline scripts and files from each page's ``<head>``.

jupyter-book 1.0.4 with sphinx-thebe 0.3.1 adds sphinx-thebe's inline configuration script twice, and the
second ``const THEBE_JS_URL`` declaration throws a SyntaxError in every page's console. Keeping the first of
each identical (file, body) pair removes the error without touching either package.
"""

from __future__ import annotations

from typing import Any


def _key(asset: Any) -> tuple[str, str]:
    filename = getattr(asset, "filename", asset)
    attributes = getattr(asset, "attributes", {}) or {}
    return (str(filename or ""), str(attributes.get("body", "")))


def _dedupe(app: Any, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    for name in ("script_files", "css_files"):
        assets = context.get(name)
        if not assets:
            continue
        seen: set[tuple[str, str]] = set()
        unique = []
        for asset in assets:
            key = _key(asset)
            if key not in seen:
                seen.add(key)
                unique.append(asset)
        context[name] = unique


def setup(app: Any) -> dict:
    # Run late, after every extension has added its assets for the page.
    app.connect("html-page-context", _dedupe, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
