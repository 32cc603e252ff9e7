"""Results with provenance: the logs of the long runs the chapters show, read from the repository's
``results/``.

A *result* is a directory ``results/<name>/`` whose files were copied verbatim from a finished
``meta-rl train`` run directory (see :mod:`meta_rl_lessons.runs` for their contents) by ``meta-rl export``::

    results/maml-HalfCheetahDir-full-s0/
      config.json       algorithm, environment, budget, seed, device, threads, the full config dataclass
      provenance.json   the command line, git commit, machine (CPU model, cores, GPUs), times, status
      progress.csv      one row of metrics per iteration
      eval.json         (if ``meta-rl eval`` was run) the evaluation report
      policy.json       (optional) the trained policy's parameters, written by ``meta-rl export``

Checkpoints are never kept here. A chapter reads a result with :func:`load_result` and puts
:meth:`Result.caption` under every figure or table built from it, so the reader sees which command, budget,
seed, commit and machine produced each number.

``RESULTS_DIR`` is the repository's ``results/`` (next to the package); the environment variable
``META_RL_RESULTS`` replaces it (tests point it at a temporary directory). The functions below read the
variable at each call, so setting it after import works too.

``python -m meta_rl_lessons.results --index`` prints the Markdown index table of ``results/README.md``;
``--write-readme`` rewrites that table in place.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meta_rl_lessons.runs import CONFIG, PROGRESS, PROVENANCE, read_progress

__all__ = [
    "EVAL",
    "Reference",
    "POLICY",
    "REQUIRED_FILES",
    "RESULTS_DIR",
    "Result",
    "check_reference",
    "check_result",
    "index_table",
    "list_results",
    "load_result",
    "machine_summary",
    "notebook_references",
    "params_from_json",
    "params_to_json",
    "rebuild_config",
    "results_dir",
    "short_command",
    "train_command",
]

EVAL = "eval.json"
POLICY = "policy.json"
#: The files every result must have (``eval.json`` and ``policy.json`` are optional).
REQUIRED_FILES: tuple[str, ...] = (CONFIG, PROVENANCE, PROGRESS)
#: Environment variable that replaces :data:`RESULTS_DIR`.
ENV_VAR = "META_RL_RESULTS"
#: The repository's ``results/`` directory (the package lives in ``<repo>/meta_rl_lessons``).
DEFAULT_RESULTS_DIR = Path(__file__).resolve().parent.parent / "results"


def results_dir() -> Path:
    """``$META_RL_RESULTS`` if set (and not empty), else the repository's ``results/``."""
    override = os.environ.get(ENV_VAR, "").strip()
    return Path(override) if override else DEFAULT_RESULTS_DIR


#: The results directory as seen at import time (use :func:`results_dir` to honour later changes of
#: ``META_RL_RESULTS``).
RESULTS_DIR: Path = results_dir()


def list_results(root: str | os.PathLike | None = None) -> list[str]:
    """Sorted names of the result directories in ``root`` (default :func:`results_dir`): every
    sub-directory that holds a ``config.json``. An absent ``root`` gives ``[]``."""
    base = Path(root) if root is not None else results_dir()
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if p.is_dir() and (p / CONFIG).is_file())


# ============================================================================ policy.json
def params_to_json(params: Mapping[str, Any]) -> dict[str, Any]:
    """``{name: tensor}`` -> ``{name: {"dtype", "shape", "data"}}`` with ``data`` nested lists.

    Floating-point values are written with Python's shortest round-trip ``repr`` of the value *as a double*;
    a float32 (or float64) tensor read back by :func:`params_from_json` is bit-for-bit the original.
    """
    import torch

    out = {}
    for name, value in params.items():
        t = torch.as_tensor(value).detach().cpu()
        out[name] = {"dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape), "data": t.tolist()}
    return out


def params_from_json(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`params_to_json`: ``{name: torch.Tensor}`` with the recorded dtype and shape.

    Raises:
        ValueError: an unknown dtype, or data whose shape differs from the recorded one (naming the entry).
    """
    import torch

    out = {}
    for name, entry in payload.items():
        dtype = getattr(torch, str(entry["dtype"]), None)
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"parameter {name!r}: unknown dtype {entry['dtype']!r}")
        t = torch.tensor(entry["data"], dtype=dtype)
        if list(t.shape) != list(entry["shape"]):
            raise ValueError(f"parameter {name!r}: data has shape {list(t.shape)}, recorded {entry['shape']}")
        out[name] = t
    return out


# ============================================================================ one result
def train_command(provenance: Mapping[str, Any]) -> list[str]:
    """The ``meta-rl train ...`` argv recorded in ``provenance.json`` (the first session's command).

    Raises:
        ValueError: the provenance has no command, or it is not a ``meta-rl train`` command.
    """
    command = provenance.get("command")
    if isinstance(command, str):
        import shlex

        command = shlex.split(command)
    if not isinstance(command, list) or not all(isinstance(a, str) for a in command):
        raise ValueError(f"provenance.json has no command (a list of strings), got {command!r}")
    if len(command) < 3 or Path(command[0]).name != "meta-rl" or command[1] != "train":
        raise ValueError(f"provenance.json's command is not a `meta-rl train ...` command: {command!r}")
    return list(command)


def short_command(argv: Sequence[str]) -> str:
    """The command line without ``--out DIR`` and ``--no-progress`` (they change where and how the run was
    shown, not what it computed), shell-quoted."""
    import shlex

    keep, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--out":
            skip = True
            continue
        if arg.startswith("--out=") or arg == "--no-progress":
            continue
        keep.append(shlex.quote(arg))
    return " ".join(keep)


def machine_summary(prov: Mapping[str, Any]) -> str:
    """``"<CPU model>, <n> cores, GPU <name>"`` (or ``no GPU``), from provenance."""
    cores = prov.get("cpu_affinity") or prov.get("cpu_count")
    cpu = prov.get("cpu_model") or "unknown CPU"
    gpus = prov.get("gpus") or []
    parts = [cpu, f"{cores} cores" if cores else "unknown cores"]
    parts.append(f"GPU {', '.join(gpus)}" if gpus else "no GPU")
    return ", ".join(parts)


@dataclass
class Result:
    """One result directory, read by :func:`load_result`.

    Attributes:
        name: the directory's name.
        path: the directory.
        config: ``config.json`` (algorithm, env, budget, seed, device, threads, overrides, config).
        provenance: ``provenance.json`` (command, git, machine, start/end times, status).
        progress: the rows of ``progress.csv``; numeric cells are floats, other cells stay strings.
        eval: ``eval.json``, or ``None`` when the run was not evaluated.
    """

    name: str
    path: Path
    config: dict[str, Any]
    provenance: dict[str, Any]
    progress: list[dict[str, Any]]
    eval: dict[str, Any] | None = field(default=None)

    # -- convenience -----------------------------------------------------------------------------------
    @property
    def algorithm(self) -> str:
        return str(self.config.get("algorithm"))

    @property
    def commit(self) -> str | None:
        """The full git commit the run was trained at (``None`` if it was not in a git checkout)."""
        git = self.provenance.get("git") or {}
        return git.get("commit")

    @property
    def machine(self) -> str:
        """``"<CPU model>, <n> cores, GPU <name>"`` or ``..., no GPU``."""
        return machine_summary(self.provenance)

    def column(self, name: str) -> list[Any]:
        """One column of ``progress.csv``.

        Raises:
            KeyError: naming the column and the columns that exist.
        """
        if not self.progress or name not in self.progress[0]:
            have = ", ".join(self.progress[0]) if self.progress else "none (progress.csv is empty)"
            raise KeyError(f"result {self.name!r} has no progress column {name!r}; columns: {have}")
        return [row[name] for row in self.progress]

    def policy_params(self) -> dict[str, Any]:
        """The trained policy's parameters from ``policy.json``: ``{name: torch.Tensor}`` (for MAML the
        meta-parameters θ, for RL² the GRU policy, for PPO/TRPO the policy and its observation statistics,
        names prefixed ``policy.`` / ``obs_rms.``).

        Raises:
            FileNotFoundError: the result was exported without ``policy.json``.
        """
        path = self.path / POLICY
        if not path.is_file():
            raise FileNotFoundError(
                f"result {self.name!r} has no {POLICY} (it was exported without the policy's parameters); "
                f"files there: {', '.join(sorted(p.name for p in self.path.iterdir()))}")
        payload = json.loads(path.read_text())
        return params_from_json(payload["parameters"])

    def trainer(self, **overrides: Any) -> Any:
        """The result's trainer, rebuilt from its recorded config, with the trained policy's parameters from
        ``policy.json`` loaded (for PPO also its observation statistics); the rest (optimiser, samplers) is as
        a fresh trainer has it. Close it when done (``with result.trainer() as t: ...``)::

            trainer = load_result("maml-Navigation2D-book-s0").trainer()
            returns = trainer.evaluate(tasks, step_sizes=(0.1,))

        Args:
            overrides: config fields to replace, for fields that change how, not what, is computed on this
                machine (e.g. ``num_workers=0``: no MuJoCo worker processes for a short evaluation).

        Raises:
            FileNotFoundError: the result has no ``policy.json``.
            ValueError: the recorded config does not build a trainer here.
        """
        from meta_rl_lessons import experiments

        params = self.policy_params()
        spec = experiments.spec(self.algorithm)
        config = dict(self.config["config"])
        # a notebook replays a result on this machine: its own device, no log file or progress bar of its own
        config.update({k: v for k, v in (("log_path", None), ("progress", False)) if k in config})
        unknown = sorted(set(overrides) - set(config))
        if unknown:
            raise ValueError(f"Result.trainer: {unknown} are not fields of the {self.algorithm} config; its "
                             f"fields: {', '.join(sorted(config))}")
        config.update(overrides)
        trainer = spec.build(experiments.config_from_dict(spec.name, config))
        try:
            experiments.load_policy_parameters(trainer, params)
        except BaseException:
            trainer.close()
            raise
        return trainer

    def caption(self) -> str:
        """One line for a figure caption: command, budget, seed, commit (short), machine, date."""
        prov, cfg = self.provenance, self.config
        try:
            command = short_command(train_command(prov))
        except ValueError:
            command = "unknown command"
        commit = (self.commit or "no git commit")[:7]
        if (prov.get("git") or {}).get("dirty"):
            commit += " (with uncommitted changes)"
        date = str(prov.get("end_time") or prov.get("start_time") or "unknown date")[:10]
        return (f"Source: results/{self.name}, `{command}` (budget {cfg.get('budget')}, "
                f"seed {cfg.get('seed')}), commit {commit}, {self.machine}, {date}.")


def _read_json(path: Path) -> Any:
    """``path`` parsed as JSON. Raises ``ValueError`` naming the file when it is not valid JSON."""
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err})") from None


def load_result(name: str, root: str | os.PathLike | None = None) -> Result:
    """Read ``<root>/<name>`` (default root :func:`results_dir`).

    Raises:
        ValueError: ``name`` is empty or contains a path separator.
        FileNotFoundError: the directory or one of :data:`REQUIRED_FILES` is missing; the message names it and
            lists the results (or files) that do exist.
    """
    if not name or "/" in name or os.sep in name or name in (".", ".."):
        raise ValueError(f"a result name is one directory name inside results/, got {name!r}")
    base = Path(root) if root is not None else results_dir()
    path = base / name
    if not path.is_dir():
        have = list_results(base)
        overridden = root is None and os.environ.get(ENV_VAR, "").strip()
        where = f"{base} (set by ${ENV_VAR})" if overridden else base
        raise FileNotFoundError(
            f"no result {name!r}: directory {str(path)!r} does not exist; results in {where}: "
            f"{', '.join(have) if have else 'none'}")
    missing = [f for f in REQUIRED_FILES if not (path / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"result {name!r} is incomplete: {', '.join(str(path / f) for f in missing)} missing; "
            f"files there: {', '.join(sorted(p.name for p in path.iterdir())) or 'none'}")
    config = _read_json(path / CONFIG)
    prov = _read_json(path / PROVENANCE)
    progress = read_progress(path / PROGRESS)
    ev = _read_json(path / EVAL) if (path / EVAL).is_file() else None
    return Result(name=name, path=path, config=config, provenance=prov, progress=progress, eval=ev)


# ============================================================================ checks
def _parse_train_command(argv: Sequence[str]) -> dict[str, Any]:
    """The config-building flags of a recorded ``meta-rl train`` argv (others, like ``--out``, ignored).

    Raises:
        ValueError: the command is not one the command line accepts (with the parser's message).
    """
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> typing.NoReturn:
            raise ValueError(message)

    p = Parser(prog="meta-rl train", add_help=False)
    p.add_argument("algorithm")
    p.add_argument("--env", default=None)
    p.add_argument("--budget", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--threads", type=int, default=None)
    # the flags of `meta-rl train` that change where and how a run is shown, not what it computes
    for flag in ("--out", "--checkpoint-every", "--log-every", "--stop-after-iterations"):
        p.add_argument(flag)
    for flag in ("--force", "--no-progress", "--tensorboard"):
        p.add_argument(flag, action="store_true")
    try:
        args = p.parse_args(list(argv[2:]))
    except ValueError as err:
        raise ValueError(f"the command line rejects {' '.join(argv)!r}: {err}") from None
    keep = ("algorithm", "env", "budget", "seed", "device", "set", "threads")
    return {k: v for k, v in vars(args).items() if k in keep}


def rebuild_config(command: Sequence[str], recorded: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``config.json`` content that the ``meta-rl train`` command ``command`` (an argv, ``"meta-rl"``
    first) builds, through :func:`meta_rl_lessons.experiments.build_config` (what ``meta-rl train`` calls),
    without training or creating anything; JSON-normalised like the file (tuples become lists).

    Inputs a command line does not fix are taken from ``recorded`` (the result's ``config.json``): the budget
    when the command has no ``--budget`` (it defaulted to ``$META_RL_BUDGET`` at the time), the thread count
    when it has no ``--threads`` (torch's default depends on the machine), and the changes made on resume
    (``resume_overrides``: ``meta-rl resume RUN --set key=value``).

    Raises:
        ValueError: the command is not one the command line accepts, or fails to build a config.
    """
    from meta_rl_lessons import experiments
    from meta_rl_lessons.runs import normalised

    argv = train_command({"command": list(command)})
    recorded = recorded or {}
    a = _parse_train_command(argv)
    threads = a["threads"] if a["threads"] is not None else recorded.get("threads")
    try:
        _, config, meta = experiments.build_config(
            a["algorithm"], env=a["env"], budget=a["budget"] or recorded.get("budget") or "book",
            seed=a["seed"], device=a["device"], overrides=a["set"], threads=threads, check_hardware=False)
        later = list(recorded.get("resume_overrides") or [])
        if later:
            config = experiments.config_from_dict(meta["algorithm"], normalised(config), later)
            meta = {**meta, "config": normalised(config), "resume_overrides": later}
    except experiments.ExperimentError as error:
        raise ValueError(f"`{' '.join(argv)}` fails: {error}") from None
    return normalised(meta)


#: Config classes that moved (recorded name -> today's): the same fields, so the same config.
MOVED_CLASSES: dict[str, str] = {
    "meta_rl_lessons.cli.AdaptiveConfig": "meta_rl_lessons.experiments.AdaptiveConfig"}

#: Config fields whose values name ways of computing the same numbers (equal to float rounding, checked in
#: the tests named): a recorded run made with one still matches a command that builds another.
#: ``fvp_method``: the default became ``"analytic"`` (closed-form products, tests/test_maml_curvature.py);
#: runs recorded before were made with ``"factorized"``.
EQUIVALENT_VALUES: dict[str, frozenset[str]] = {"fvp_method": frozenset({"analytic", "factorized"})}


def _same_setting(key: str, a: Any, b: Any) -> bool:
    return a == b or (key in EQUIVALENT_VALUES and {a, b} <= EQUIVALENT_VALUES[key])


def _same_config(a: Any, b: Any) -> bool:
    """``a == b``, except that in two dicts with the same keys equivalent values count as equal."""
    if not (isinstance(a, dict) and isinstance(b, dict)) or a.keys() != b.keys():
        return a == b
    return all(_same_setting(k, a[k], b[k]) for k in a)


def check_result(name: str, root: str | os.PathLike | None = None) -> list[str]:
    """Everything wrong with result ``name`` (an empty list when it is sound):

    - ``config.json``, ``provenance.json``, ``progress.csv`` exist and parse, the CSV has rows, ``eval.json``
      and ``policy.json`` parse when present;
    - provenance's command is a ``meta-rl train ...`` command the parser accepts, and rebuilds (with
      :func:`rebuild_config`) a config equal to ``config.json``;
    - provenance names a git commit and the machine (hostname, CPU model, cores), and the run finished.
    """
    try:
        r = load_result(name, root)
    except (OSError, ValueError) as err:  # json.JSONDecodeError is a ValueError
        return [f"{name}: {err}"]
    problems = []
    if not r.progress:
        problems.append(f"{name}: progress.csv has no rows")
    if (r.path / POLICY).is_file():
        try:
            params_from_json(json.loads((r.path / POLICY).read_text())["parameters"])
        except (ValueError, KeyError, TypeError) as err:
            problems.append(f"{name}: {POLICY} does not parse: {err!r}")
    prov = r.provenance
    try:
        rebuilt = rebuild_config(train_command(prov), r.config)
    except ValueError as err:
        problems.append(f"{name}: {err}")
    else:
        keys = ("algorithm", "env", "budget", "seed", "device", "threads", "overrides", "config_class",
                "config")
        recorded = {**r.config, "config_class": MOVED_CLASSES.get(r.config.get("config_class"),
                                                                   r.config.get("config_class"))}
        for key in keys:
            if not _same_config(rebuilt.get(key), recorded.get(key)):
                diff = rebuilt.get(key), recorded.get(key)
                if key == "config" and isinstance(diff[0], dict) and isinstance(diff[1], dict):
                    diff = ({k: v for k, v in diff[0].items()
                             if not _same_setting(k, diff[1].get(k, object()), v)},
                            {k: v for k, v in diff[1].items()
                             if not _same_setting(k, diff[0].get(k, object()), v)})
                problems.append(f"{name}: the recorded command builds {key} = {diff[0]!r}, but config.json "
                                f"has {diff[1]!r}")
    commit = (prov.get("git") or {}).get("commit")
    if not (isinstance(commit, str) and re.fullmatch(r"[0-9a-f]{40}", commit)):
        problems.append(f"{name}: provenance.json names no git commit (git = {prov.get('git')!r})")
    for key in ("hostname", "cpu_model", "cpu_count"):
        if not prov.get(key):
            problems.append(f"{name}: provenance.json does not name the machine's {key}")
    if prov.get("status") != "finished":
        problems.append(f"{name}: provenance status is {prov.get('status')!r}, not 'finished'")
    return problems


@dataclass(frozen=True)
class Reference:
    """A chapter code cell's reference to a result: ``load_result("name")`` or a ``results/name[/file]``
    path string."""

    notebook: str
    cell: int
    name: str
    files: tuple[str, ...]
    """The files the cell needs: the required ones, ``eval.json`` if it reads ``.eval``, a named file."""


_LOAD = re.compile(r"""load_result\(\s*(?:name\s*=\s*)?["']([^"']+)["']""")
_PATH = re.compile(r"""["'](?:[^"']*/)?results/([^"'/\s]+)(?:/([^"'\s]+))?["']""")
_READS_EVAL = re.compile(r"\.eval\b(?!\s*\()")


def notebook_references(paths: Sequence[str | os.PathLike]) -> list[Reference]:
    """Every literal reference to a result in the code cells of the notebooks ``paths``."""
    refs = []
    for nb_path in paths:
        nb = json.loads(Path(nb_path).read_text())
        for i, cell in enumerate(nb.get("cells", [])):
            if cell.get("cell_type") != "code":
                continue
            src = "".join(cell.get("source", []))
            needs = REQUIRED_FILES + ((EVAL,) if _READS_EVAL.search(src) else ())
            for m in _LOAD.finditer(src):
                refs.append(Reference(str(nb_path), i, m.group(1), needs))
            for m in _PATH.finditer(src):
                extra = (m.group(2),) if m.group(2) else ()
                refs.append(Reference(str(nb_path), i, m.group(1), needs + extra))
    return refs


def check_reference(ref: Reference, root: str | os.PathLike | None = None) -> list[str]:
    """What is missing for ``ref`` in ``root`` (default :func:`results_dir`): the directory or its files."""
    base = Path(root) if root is not None else results_dir()
    where = f"{ref.notebook} cell {ref.cell}"
    if not (base / ref.name).is_dir():
        return [f"{where} reads result {ref.name!r}, but {base / ref.name} does not exist (results: "
                f"{', '.join(list_results(base)) or 'none'})"]
    return [f"{where} reads {ref.name}/{f}, which does not exist" for f in dict.fromkeys(ref.files)
            if not (base / ref.name / f).is_file()]


# ============================================================================ README index
INDEX_BEGIN = "<!-- index: generated by `python -m meta_rl_lessons.results --write-readme`; do not edit -->"
INDEX_END = "<!-- end of index -->"


def index_table(root: str | os.PathLike | None = None) -> str:
    """The Markdown table of every result: name, command, budget, seed, commit, machine, status."""
    lines = ["| name | command | budget | seed | commit | machine | finished |",
             "|---|---|---|---|---|---|---|"]
    for name in list_results(root):
        r = load_result(name, root)
        try:
            command = short_command(train_command(r.provenance))
        except ValueError as err:
            command = f"invalid: {err}"
        commit = (r.commit or "none")[:7] + ("+dirty" if (r.provenance.get("git") or {}).get("dirty") else "")
        end = str(r.provenance.get("end_time") or "")[:10]
        cells = [name, f"`{command}`", str(r.config.get("budget")), str(r.config.get("seed")), commit,
                 r.machine, f"{r.provenance.get('status')} {end}".strip()]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def readme_with_index(text: str, table: str) -> str:
    """``text`` with the part between :data:`INDEX_BEGIN` and :data:`INDEX_END` replaced by ``table``.

    Raises:
        ValueError: the markers are missing.
    """
    pattern = re.compile(re.escape(INDEX_BEGIN) + r"\n.*?" + re.escape(INDEX_END), re.S)
    if not pattern.search(text):
        raise ValueError(f"README has no index markers ({INDEX_BEGIN!r} ... {INDEX_END!r})")
    return pattern.sub(lambda _: f"{INDEX_BEGIN}\n{table}{INDEX_END}", text)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m meta_rl_lessons.results",
                                description="Index the results/ directory.")
    p.add_argument("--index", action="store_true", help="print the Markdown index table")
    p.add_argument("--write-readme", action="store_true", help="rewrite the table in results/README.md")
    args = p.parse_args(argv)
    table = index_table()
    if args.write_readme:
        readme = results_dir() / "README.md"
        readme.write_text(readme_with_index(readme.read_text(), table))
        print(f"wrote the index of {len(list_results())} results to {readme}")
    if args.index or not args.write_readme:
        sys.stdout.write(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
