"""tools/execute_parallel.py: notebooks executed side by side land in the cache the book build reads."""

from __future__ import annotations

import execute_parallel
import nbformat


def _notebook(path, *sources):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_executed_notebooks_are_found_by_the_build_and_failures_stop_it(tmp_path, capsys):
    from jupyter_cache import get_cache

    good = _notebook(tmp_path / "good.ipynb", "import os\nprint(os.getcwd())", "x = 6 * 7\nx")
    bad = _notebook(tmp_path / "bad.ipynb", "raise ValueError('deliberately broken')")
    cache_dir = tmp_path / "_build" / ".jupyter_cache"

    assert execute_parallel.main(["--cache", str(cache_dir), "--jobs", "2", str(good)]) == 0
    # The build's lookup (myst-nb's cache mode) matches the unexecuted notebook to the executed one.
    _, merged = get_cache(str(cache_dir)).merge_match_into_notebook(nbformat.read(good, as_version=4))
    assert merged.cells[0].outputs[0]["text"].strip() == str(tmp_path)  # ran in the notebook's folder
    assert merged.cells[1].outputs[0]["data"]["text/plain"] == "42"
    assert execute_parallel.main(["--cache", str(cache_dir), str(good)]) == 0
    assert "all 1 notebooks are cached" in capsys.readouterr().out

    assert execute_parallel.main(["--cache", str(cache_dir), str(bad), str(good)]) == 1
    out = capsys.readouterr().out
    assert "bad.ipynb FAILED" in out and "deliberately broken" in out
