"""Exercises that check themselves: assignment functions a student writes, and a ``check_*`` per assignment.

Every chapter module has, for each exercise, a *template* (signature and docstring with shapes and
the chapter's equation; it raises ``NotImplementedError``), a *reference* with the same signature built on
the package's own code, and a ``check_*(your_function, *, seed=0, ...)`` that runs your function on seeded
random inputs and edge cases, compares it with the package and returns a
:class:`~meta_rl_lessons.exercises.report.CheckReport`::

    from meta_rl_lessons.exercises import drl

    def my_gae(rewards, values, next_values, terminated, truncated, gamma, lam):
        ...

    report = drl.check_gae(my_gae)
    print(report)              # one line per case; the first mismatch is diagnosed
    report.raise_if_failed()   # for scripts and tests

=============  =========================  ==========================================================
module         chapter                    checks
=============  =========================  ==========================================================
``drl``        1, deep RL basics          ``check_gae``, ``check_line_search``, ``check_ppo_clip_loss``
``maml``       2, MAML derived            ``check_inner_step``, ``check_reptile_update``
``maml_rl``    2b, MAML for RL            ``check_magic_box``, ``check_inner_loss``
``rl2``        3, RL²                     ``check_rl2_inputs``, ``check_ucb1``
``adaptive``   4, adaptive deep RL        ``check_pbt_exploit``, ``check_promote``
=============  =========================  ==========================================================

A function that raises, or returns the wrong type, shape or dtype, gives a failed report with the
message, never a crash. The solutions are in the chapters' exercise sections (hidden dropdowns), not in
this package.
"""

from meta_rl_lessons.exercises import adaptive, drl, maml, maml_rl, rl2
from meta_rl_lessons.exercises.report import Case, CheckReport, ExerciseFailed

#: Every check, by name: what ``tests/test_exercises.py`` runs the references through.
CHECKS = {
    "drl.check_gae": (drl.check_gae, drl.reference_gae),
    "drl.check_line_search": (drl.check_line_search, drl.reference_line_search),
    "drl.check_ppo_clip_loss": (drl.check_ppo_clip_loss, drl.reference_ppo_clip_loss),
    "maml.check_inner_step": (maml.check_inner_step, maml.reference_inner_step),
    "maml.check_reptile_update": (maml.check_reptile_update, maml.reference_reptile_update),
    "maml_rl.check_magic_box": (maml_rl.check_magic_box, maml_rl.reference_magic_box),
    "maml_rl.check_inner_loss": (maml_rl.check_inner_loss, maml_rl.reference_inner_loss),
    "rl2.check_rl2_inputs": (rl2.check_rl2_inputs, rl2.reference_rl2_inputs),
    "rl2.check_ucb1": (rl2.check_ucb1, rl2.reference_ucb1),
    "adaptive.check_pbt_exploit": (adaptive.check_pbt_exploit, adaptive.reference_pbt_exploit),
    "adaptive.check_promote": (adaptive.check_promote, adaptive.reference_promote),
}

__all__ = ["CHECKS", "Case", "CheckReport", "ExerciseFailed", "adaptive", "drl", "maml", "maml_rl", "rl2"]
