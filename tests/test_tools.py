import json

import book_cache
from check_notebooks import main as check_notebooks


def write_notebook(path, outputs=(), execution_count=None, cell_id="c0"):
    cell = {"cell_type": "code", "metadata": {}, "source": "1 + 1", "outputs": list(outputs),
            "execution_count": execution_count}
    if cell_id is not None:
        cell["id"] = cell_id
    path.write_text(json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))


def test_clean_notebook_passes(tmp_path, capsys):
    write_notebook(tmp_path / "a.ipynb")
    assert check_notebooks([str(tmp_path)]) == 0


def test_outputs_and_counts_fail(tmp_path, capsys):
    write_notebook(tmp_path / "a.ipynb", outputs=[{"output_type": "stream", "name": "stdout", "text": "2"}])
    write_notebook(tmp_path / "b.ipynb", execution_count=3)
    assert check_notebooks([str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "a.ipynb: cell 0 has 1 output" in out and "b.ipynb: cell 0 has execution_count 3" in out


def test_cells_without_an_id_fail(tmp_path, capsys):
    write_notebook(tmp_path / "a.ipynb", cell_id=None)
    assert check_notebooks([str(tmp_path)]) == 1
    assert "a.ipynb: cell 0 has no id" in capsys.readouterr().out


def test_committed_chapters_are_clean():
    assert check_notebooks(["chapters"]) == 0


def test_cache_cleared_when_package_or_budget_changes(tmp_path, monkeypatch):
    root = tmp_path / "repo"
    (root / "meta_rl_lessons").mkdir(parents=True)
    module = root / "meta_rl_lessons" / "m.py"
    module.write_text("x = 1\n")
    monkeypatch.setattr(book_cache, "ROOT", root)
    monkeypatch.setattr(book_cache, "fingerprint", lambda root=root, f=book_cache.fingerprint: f(root))
    build = tmp_path / "_build"
    cache = build / ".jupyter_cache"

    def cached_run():
        book_cache.main(str(build))
        cache.mkdir(parents=True, exist_ok=True)  # the build then fills the cache

    monkeypatch.setenv("META_RL_BUDGET", "book")
    cached_run()
    book_cache.main(str(build))
    assert cache.exists(), "nothing changed: the cache must survive"
    module.write_text("x = 2\n")
    book_cache.main(str(build))
    assert not cache.exists(), "the package changed: the cache must go"
    cached_run()
    monkeypatch.setenv("META_RL_BUDGET", "smoke")
    book_cache.main(str(build))
    assert not cache.exists(), "the budget changed: the cache must go"


def test_site_check_reruns_both_page_scripts_after_a_redirect():
    """A redirect (index.html) may navigate away between check_site's two page scripts; both run again on
    the target page, so their results describe the same page (this flaked once in a clean-clone build)."""
    from check_site import _inspect

    class ContextDestroyed(Exception):
        pass

    class RedirectingPage:
        def __init__(self):
            self.calls, self.page = 0, "index"

        def evaluate(self, script, arg=None):
            self.calls += 1
            if self.calls == 2:  # the second script of the first attempt: the redirect fires
                self.page = "target"
                raise ContextDestroyed("Execution context was destroyed, most likely because of a navigation")
            return self.page

        def wait_for_load_state(self, state, timeout):
            assert state == "load"

    page = RedirectingPage()
    assert _inspect(page, 1000, ContextDestroyed) == ("target", "target")
    assert page.calls == 4
