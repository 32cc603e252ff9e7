"""Executors: run a batch of :class:`~meta_rl_lessons.adaptive.trial.Segment` objects, serially or in
parallel.

One small interface, three implementations::

    with ProcessPoolExecutor(workers=2) as ex:          # or SerialExecutor(), RayExecutor()
        for index, result in ex.run(segments):          # as each segment finishes
            ...

* :class:`SerialExecutor` runs segments one after the other in this process (debugging, notebooks).
* :class:`ProcessPoolExecutor` (the default on one machine) runs them in worker processes started with the
  ``spawn`` method: a forked child of a process that has already used torch's thread pool can deadlock,
  and ``spawn`` also behaves the same on Linux, macOS and Windows. Each worker sets
  ``torch.set_num_threads(1)``: small networks gain nothing from intra-op threads, and one thread per
  process is what makes the processes scale.
* :class:`RayExecutor` submits each segment as a Ray task (``pip install .[distributed]``): the same search
  then runs on a Ray cluster. Checkpoints are files, so ``run_dir`` must be on storage every node sees.

**Same results everywhere.** A segment carries its seed (or restores its checkpoint, which carries its random
generator state), and :func:`~meta_rl_lessons.adaptive.trial.run_segment` always runs with one torch
thread, so the serial, process-pool and Ray executors return identical numbers for the same segments.

**Failures never hang.** An exception in a segment, or a worker process that dies, raises
:class:`TrialError` naming the segment's ``trial_id`` (a dead process pool names every segment in flight).

:class:`ResultStore` adds resumption: it appends every finished segment to ``run_dir/results.jsonl`` and
skips segments whose ``trial_id`` is already there, so a search interrupted at any point and started again
with the same arguments reruns nothing that finished.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import json
import math
import multiprocessing
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch

from meta_rl_lessons.adaptive.trial import Segment, SegmentResult, run_segment

__all__ = ["Executor", "ProcessPoolExecutor", "RayExecutor", "ResultStore", "SerialExecutor", "TrialError",
           "make_executor"]


class TrialError(RuntimeError):
    """A segment failed (an exception, or its worker process died); ``trial_ids`` names the segments."""

    def __init__(self, message: str, trial_ids: Sequence[str]) -> None:
        super().__init__(message)
        self.trial_ids = list(trial_ids)


class Executor(Protocol):
    """Runs segments; yields ``(index in segments, result)`` as each finishes; raises :class:`TrialError`."""

    def run(self, segments: Sequence[Segment]) -> Iterator[tuple[int, SegmentResult]]: ...

    def close(self) -> None: ...


def _run_one_thread(segment: Segment) -> SegmentResult:
    """:func:`run_segment` with one torch thread (restored afterwards), for identical numbers everywhere."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_segment(segment)
    finally:
        torch.set_num_threads(threads)


class _Base:
    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class SerialExecutor(_Base):
    """Run every segment in this process, one after the other."""

    def run(self, segments: Sequence[Segment]) -> Iterator[tuple[int, SegmentResult]]:
        for i, seg in enumerate(segments):
            try:
                result = _run_one_thread(seg)
            except Exception as err:
                raise TrialError(f"trial {seg.trial_id!r} failed: {type(err).__name__}: {err}",
                                 [seg.trial_id]) from err
            yield i, result


def _worker_init() -> None:
    torch.set_num_threads(1)
    os.environ.setdefault("META_RL_PROGRESS", "0")


class ProcessPoolExecutor(_Base):
    """A pool of ``workers`` processes (``spawn`` start method, one torch thread each), kept for reuse.

    Args:
        workers: number of processes (default: ``os.cpu_count()``).
        start_method: ``"spawn"`` (default) or ``"forkserver"``; ``"fork"`` is refused (unsafe with torch).
        timeout: seconds to wait for one batch of segments (``None``: no limit); a batch that takes longer
            raises :class:`TrialError` naming the unfinished segments.
    """

    def __init__(self, workers: int | None = None, start_method: str = "spawn",
                 timeout: float | None = None) -> None:
        if start_method not in ("spawn", "forkserver"):
            raise ValueError(f"start_method must be 'spawn' or 'forkserver' (fork is unsafe with torch), "
                             f"got {start_method!r}")
        self.workers = int(workers or os.cpu_count() or 1)
        if self.workers <= 0:
            raise ValueError(f"workers must be a positive integer, got {workers!r}")
        self.start_method, self.timeout = start_method, timeout
        self._pool: cf.ProcessPoolExecutor | None = None

    def _get_pool(self) -> cf.ProcessPoolExecutor:
        if self._pool is None:
            self._pool = cf.ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context(self.start_method),
                initializer=_worker_init)
        return self._pool

    def run(self, segments: Sequence[Segment]) -> Iterator[tuple[int, SegmentResult]]:
        if not segments:
            return
        pool = self._get_pool()
        futures = {pool.submit(run_segment, seg): i for i, seg in enumerate(segments)}
        pending = set(futures)
        try:
            for fut in cf.as_completed(futures, timeout=self.timeout):
                pending.discard(fut)
                i = futures[fut]
                try:
                    result = fut.result()
                except cf.process.BrokenProcessPool as err:
                    names = sorted(segments[futures[f]].trial_id for f in pending | {fut})
                    self._discard_pool()
                    raise TrialError(f"a worker process died while running trial(s) {names} "
                                     f"({err}); the pool was shut down", names) from err
                except Exception as err:
                    raise TrialError(f"trial {segments[i].trial_id!r} failed in a worker process: "
                                     f"{type(err).__name__}: {err}", [segments[i].trial_id]) from err
                yield i, result
        except cf.TimeoutError as err:
            names = sorted(segments[futures[f]].trial_id for f in pending)
            self._discard_pool()
            raise TrialError(f"trial(s) {names} did not finish within {self.timeout} s", names) from err
        finally:
            for f in pending:
                f.cancel()

    def _discard_pool(self) -> None:
        if self._pool is not None:
            workers = list((getattr(self._pool, "_processes", None) or {}).values())  # our own workers
            self._pool.shutdown(wait=False, cancel_futures=True)
            for p in workers:
                if p.is_alive():
                    p.kill()
            self._pool = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


class RayExecutor(_Base):
    """Each segment is a Ray task with ``num_cpus`` CPUs. Starts a local Ray instance unless one is running
    (``ray.init(address=...)`` first to use a cluster). Needs ``pip install .[distributed]``."""

    def __init__(self, num_cpus_per_trial: float = 1.0, init_kwargs: dict[str, Any] | None = None) -> None:
        try:
            import ray
        except ImportError as err:
            raise ImportError("RayExecutor needs ray: pip install 'meta-rl-lessons[distributed]' "
                              "(or pip install ray)") from err
        self.ray = ray
        if not ray.is_initialized():
            ray.init(**{"include_dashboard": False, "log_to_driver": False, **(init_kwargs or {})})
            self._owns_ray = True
        else:
            self._owns_ray = False
        self._remote = ray.remote(num_cpus=num_cpus_per_trial, max_retries=0)(_run_one_thread)

    def run(self, segments: Sequence[Segment]) -> Iterator[tuple[int, SegmentResult]]:
        ray = self.ray
        refs = {self._remote.remote(seg): i for i, seg in enumerate(segments)}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            i = refs[done[0]]
            try:
                result = ray.get(done[0])
            except Exception as err:
                for ref in pending:
                    ray.cancel(ref, force=True)
                raise TrialError(f"trial {segments[i].trial_id!r} failed in a Ray task: {err}",
                                 [segments[i].trial_id]) from err
            yield i, result

    def close(self) -> None:
        if self._owns_ray and self.ray.is_initialized():
            self.ray.shutdown()


def make_executor(name: str = "process", workers: int | None = None) -> Executor:
    """``"serial"``, ``"process"`` (default) or ``"ray"``."""
    if name == "serial":
        return SerialExecutor()
    if name == "process":
        return ProcessPoolExecutor(workers)
    if name == "ray":
        return RayExecutor()
    raise ValueError(f"unknown executor {name!r}; allowed: 'serial', 'process', 'ray'")


# ---------------------------------------------------------------------------------------------- resuming
def _json_safe(x: Any) -> Any:
    """Non-finite floats as the strings ``"nan"``, ``"inf"``, ``"-inf"`` (strict JSON has no NaN)."""
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return x


def _from_json(x: Any) -> Any:
    if x in ("nan", "inf", "-inf"):
        return float(x)
    if isinstance(x, dict):
        return {k: _from_json(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_from_json(v) for v in x]
    return x


class ResultStore:
    """Finished segments of one search, in ``run_dir/results.jsonl`` (one JSON object per line).

    :meth:`run` returns the results of ``segments`` in order, taking those already in the file from it and
    running the others on the executor, appending each to the file the moment it finishes. ``run_dir=None``
    keeps results in memory only (no resumption).

    Attributes:
        executed: ``trial_id`` of every segment this object actually ran (the rest came from the file).
    """

    def __init__(self, run_dir: str | os.PathLike | None) -> None:
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.results: dict[str, SegmentResult] = {}
        self.executed: list[str] = []
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            path = self.run_dir / "results.jsonl"
            if path.exists():
                lines = path.read_text().splitlines(keepends=True)
                good: list[str] = []
                for n, line in enumerate(lines, 1):
                    try:
                        row = _from_json(json.loads(line))
                    except json.JSONDecodeError:
                        if n == len(lines):  # cut by a crash mid-write: drop it, that segment reruns
                            path.write_text("".join(good))
                            break
                        raise ValueError(f"{path}: line {n} is not valid JSON") from None
                    good.append(line if line.endswith("\n") else line + "\n")
                    self.results[row["trial_id"]] = SegmentResult(**row)

    def checkpoint_path(self, name: str) -> str | None:
        """Where a segment should save its checkpoint (``run_dir/checkpoints/<name>.pt``), or ``None``."""
        return None if self.run_dir is None else str(self.run_dir / "checkpoints" / f"{name}.pt")

    def _append(self, result: SegmentResult) -> None:
        self.results[result.trial_id] = result
        if self.run_dir is not None:
            with (self.run_dir / "results.jsonl").open("a") as fh:
                fh.write(json.dumps(_json_safe(dataclasses.asdict(result))) + "\n")

    def run(self, executor: Executor, segments: Sequence[Segment]) -> list[SegmentResult]:
        ids = [s.trial_id for s in segments]
        if len(set(ids)) != len(ids):
            raise ValueError(f"segment trial_ids must be unique within a search, got repeats in {ids}")
        todo = [s for s in segments if s.trial_id not in self.results]
        for _, result in executor.run(todo):
            self.executed.append(result.trial_id)
            self._append(result)
        return [self.results[i] for i in ids]

    def write_json(self, name: str, payload: Any) -> None:
        """Write a summary (e.g. the search's final state) as ``run_dir/<name>.json``."""
        if self.run_dir is not None:
            (self.run_dir / f"{name}.json").write_text(json.dumps(_json_safe(payload), indent=1))
