import subprocess
import sys

import pytest

from meta_rl_lessons import budget


def test_default_is_book(monkeypatch):
    monkeypatch.delenv(budget.ENV_VAR, raising=False)
    assert budget.current() == budget.Budget("book")
    assert budget.pick(smoke=1, book=2, full=3) == 2


@pytest.mark.parametrize(
    ("raw", "expected", "value"), [("smoke", "smoke", 1), (" FULL ", "full", 3), ("", "book", 2)]
)
def test_environment_variable_selects_budget(monkeypatch, raw, expected, value):
    monkeypatch.setenv(budget.ENV_VAR, raw)
    assert budget.current().name == expected
    assert budget.pick(smoke=1, book=2, full=3) == value


def test_unknown_budget_names_value_and_allowed(monkeypatch):
    monkeypatch.setenv(budget.ENV_VAR, "bogus")
    with pytest.raises(ValueError) as err:
        budget.current()
    message = str(err.value)
    assert "'bogus'" in message
    for name in ("smoke", "book", "full"):
        assert name in message


def test_unknown_budget_fails_from_command_line():
    # The acceptance command of the foundation issue, run as a user would.
    result = subprocess.run(
        [sys.executable, "-c", "import meta_rl_lessons.budget as b; b.current()"],
        env={"META_RL_BUDGET": "bogus", "PATH": ""},
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "smoke, book, full" in result.stderr


def test_use_overrides_and_restores(monkeypatch):
    monkeypatch.setenv(budget.ENV_VAR, "full")
    with budget.use("smoke") as chosen:
        assert chosen.is_smoke
        assert budget.current().name == "smoke"
        with budget.use("book"):
            assert budget.current().name == "book"
        assert budget.current().name == "smoke"
    assert budget.current().name == "full"


def test_use_rejects_unknown():
    with pytest.raises(ValueError, match="huge"), budget.use("huge"):
        pass


def test_pick_requires_all_three():
    with pytest.raises(TypeError):
        budget.pick(smoke=1, book=2)  # type: ignore[call-arg]
