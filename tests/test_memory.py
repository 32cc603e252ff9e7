"""keep_freed_memory: in effect on Linux/glibc, idempotent, off with META_RL_MALLOC=default, and numbers are
the same either way (a MAML-TRPO meta-iteration in two processes)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from meta_rl_lessons.memory import keep_freed_memory

CHILD = r"""
import json, torch
torch.set_num_threads(1)
from meta_rl_lessons.memory import keep_freed_memory
from meta_rl_lessons.maml.rl import MAMLTRPO, MAMLTRPOConfig
kept = keep_freed_memory()
tr = MAMLTRPO(MAMLTRPOConfig(family="Navigation2D", family_kwargs=dict(horizon=8), meta_batch_size=3,
                             num_episodes=4, hidden_sizes=(8,), seed=2))
row = tr.iteration()
print(json.dumps({"kept": kept, "again": keep_freed_memory(), "row": row["return_post"],
                  "params": [float(p.detach().sum()) for p in tr.policy.parameters()]}))
"""


def _child(**env):
    res = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True,
                         env={**os.environ, **env})
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_setting_is_in_effect_where_glibc_is_and_changes_no_number():
    default, kept = _child(META_RL_MALLOC="default"), _child()
    assert default["kept"] is False and default["again"] is False
    glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert kept["kept"] is glibc and kept["again"] is glibc
    assert kept["row"] == default["row"] and kept["params"] == default["params"]


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_in_this_process():
    assert keep_freed_memory() is (os.environ.get("META_RL_MALLOC") != "default")
