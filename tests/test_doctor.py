"""meta-rl doctor: the report's rows, its exit status, and usage errors without a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from meta_rl_lessons import doctor

PIECES = ["Python", "meta_rl_lessons", "torch", "CUDA device", "gymnasium", "MuJoCo", "GL backend",
          "Chromium", "threads", "budget"]


def doctor_cli(*args: str, **env_changes: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **env_changes}
    return subprocess.run([sys.executable, "-m", "meta_rl_lessons.cli", "doctor", *args], capture_output=True,
                          text=True, env=env, timeout=300)


def test_report_names_every_piece_and_exits_0_when_the_required_ones_are_there():
    out = doctor_cli("--json", CHROMIUM="/nonexistent/chromium")
    assert out.returncode == 0, out.stdout + out.stderr
    rows = json.loads(out.stdout)
    assert [r["name"] for r in rows] == PIECES
    by_name = {r["name"]: r for r in rows}
    # optional pieces may be absent, and then say what to do
    assert by_name["Chromium"]["status"] == "optional" and "chromium" in by_name["Chromium"]["fix"]
    assert all(r["status"] in ("ok", "optional") for r in rows)
    assert all(r["fix"] for r in rows if r["status"] != "ok")


def test_a_missing_required_piece_exits_1_and_says_what_to_do():
    out = doctor_cli(META_RL_BUDGET="enormous")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "MISSING" in out.stdout and "allowed values are smoke, book, full" in out.stdout
    assert "something required is missing" in out.stdout


def test_bad_flags_exit_2_with_a_message_not_a_traceback():
    out = doctor_cli("--no-such-flag")
    assert out.returncode == 2
    assert "unrecognized arguments: --no-such-flag" in out.stderr and "Traceback" not in out.stderr


def test_formats():
    rows = [doctor.Check("torch", doctor.OK, "2.13"),
            doctor.Check("GL backend", doctor.OPTIONAL, "none", "a|b")]
    assert doctor.all_required_ok(rows)
    assert not doctor.all_required_ok([*rows, doctor.Check("budget", doctor.MISSING, "x", "fix it")])
    text = doctor.format_text(rows)
    assert "OPTIONAL" in text and "-> a|b" in text and "all required pieces are present" in text
    md = doctor.format_markdown(rows).splitlines()
    assert md[0].startswith("| piece |") and md[-1] == "| GL backend | optional | none | a\\|b |"
