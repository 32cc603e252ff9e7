"""Search space: sampling in bounds, log-uniform is uniform in log space, conditions, errors, perturbation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from meta_rl_lessons.adaptive.space import Categorical, Float, Integer, SearchSpace


def _space() -> SearchSpace:
    return SearchSpace([
        Integer("n_layers", 1, 3),
        Integer("width_0", 16, 256, log=True),
        Integer("width_1", 16, 256, log=True, when={"n_layers": (2, 3)}),
        Integer("width_2", 16, 256, log=True, when={"n_layers": (3,)}),
        Float("learning_rate", 1e-5, 1e-2, log=True),
        Float("clip_coef", 0.1, 0.4),
        Categorical("gamma", (0.9, 0.95, 0.99, 0.999)),
        Categorical("activation", ("tanh", "relu")),
    ])


def _ks_uniform(u: np.ndarray) -> tuple[float, float]:
    """Kolmogorov-Smirnov statistic of ``u`` against U[0, 1] and its asymptotic p-value (no scipy needed)."""
    u = np.sort(u)
    n = len(u)
    i = np.arange(1, n + 1)
    d = float(max(np.max(i / n - u), np.max(u - (i - 1) / n)))
    lam = (math.sqrt(n) + 0.12 + 0.11 / math.sqrt(n)) * d
    p = 2 * sum((-1) ** (k - 1) * math.exp(-2 * k * k * lam * lam) for k in range(1, 101))
    return d, float(min(max(p, 0.0), 1.0))


def test_samples_stay_in_bounds_and_respect_conditions():
    space, rng = _space(), np.random.default_rng(0)
    layers_seen = set()
    for _ in range(2000):
        c = space.sample(rng)
        assert space.validate(c) == c
        layers_seen.add(c["n_layers"])
        assert all(16 <= c[f"width_{i}"] <= 256 for i in range(c["n_layers"]))
        assert all(f"width_{i}" not in c for i in range(c["n_layers"], 3))  # inactive ones absent
        assert 1e-5 <= c["learning_rate"] <= 1e-2 and 0.1 <= c["clip_coef"] <= 0.4
        assert c["gamma"] in (0.9, 0.95, 0.99, 0.999) and c["activation"] in ("tanh", "relu")
    assert layers_seen == {1, 2, 3}


def test_log_uniform_is_uniform_in_log_space():
    rng = np.random.default_rng(123)
    dim = Float("lr", 1e-5, 1e-1, log=True)
    x = np.array([dim.sample(rng) for _ in range(4000)])
    u = (np.log(x) - math.log(1e-5)) / (math.log(1e-1) - math.log(1e-5))
    _, p_log = _ks_uniform(u)
    assert p_log > 0.01, p_log
    # and the same test rejects the linear scale, so it can fail: the values are far from uniform in x
    _, p_lin = _ks_uniform((x - 1e-5) / (1e-1 - 1e-5))
    assert p_lin < 1e-6, p_lin
    # a linear Float is uniform in x (and not in log x)
    lin = Float("c", 1e-5, 1e-1)
    y = np.array([lin.sample(rng) for _ in range(4000)])
    assert _ks_uniform((y - 1e-5) / (1e-1 - 1e-5))[1] > 0.01


def test_log_integer_reaches_every_value_and_favours_small_ones():
    rng = np.random.default_rng(1)
    dim = Integer("w", 1, 8, log=True)
    counts = np.bincount([dim.sample(rng) for _ in range(8000)], minlength=9)[1:]
    assert (counts > 0).all()
    assert counts[0] > counts[-1]


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({"n_layers": 4}, "'n_layers' must be an integer in [1, 3], got 4"),
        ({"width_0": 8}, "'width_0' must be an integer in [16, 256], got 8"),
        ({"learning_rate": 0.5}, "'learning_rate' must lie in [1e-05, 0.01] (log scale), got 0.5"),
        ({"learning_rate": float("nan")}, "'learning_rate' must lie in"),
        ({"clip_coef": "big"}, "'clip_coef' needs a number"),
        ({"gamma": 0.5}, "'gamma' must be one of [0.9, 0.95, 0.99, 0.999], got 0.5"),
        ({"activation": "gelu"}, "'activation' must be one of ['tanh', 'relu']"),
        ({"n_layers": 1, "width_1": 32}, "'width_1' is set to 32 but inactive"),
        ({"momentum": 0.9}, "unknown dimension(s) ['momentum']"),
        ({"n_layers": 2.5}, "'n_layers' needs an integer"),
    ],
)
def test_invalid_configs_raise_errors_naming_the_dimension(config, fragment):
    good = {"n_layers": 2, "width_0": 64, "width_1": 32, "learning_rate": 1e-3, "clip_coef": 0.2,
            "gamma": 0.99, "activation": "tanh"}
    space = _space()
    assert space.validate(good) == good
    bad = {**good, **config}
    if bad["n_layers"] == 1 and "width_1" not in config:
        bad.pop("width_1")
    with pytest.raises(ValueError) as err:
        space.validate(bad)
    assert fragment in str(err.value)


def test_missing_active_dimension_is_named():
    with pytest.raises(ValueError, match="'width_2' is active"):
        _space().validate({"n_layers": 3, "width_0": 64, "width_1": 32, "learning_rate": 1e-3,
                           "clip_coef": 0.2, "gamma": 0.99, "activation": "tanh"})


def test_bad_space_definitions_are_rejected():
    with pytest.raises(ValueError, match="'lr': a log-scale dimension needs low > 0"):
        Float("lr", 0.0, 1.0, log=True)
    with pytest.raises(ValueError, match="'x': need finite low <= high"):
        Float("x", 2.0, 1.0)
    with pytest.raises(ValueError, match="'c': a categorical dimension needs at least one choice"):
        Categorical("c", ())
    with pytest.raises(ValueError, match="'b' is conditional on 'a', which must be declared before it"):
        SearchSpace([Integer("b", 0, 1, when={"a": (1,)}), Integer("a", 0, 1)])
    with pytest.raises(ValueError, match="'a' appears twice"):
        SearchSpace([Integer("a", 0, 1), Integer("a", 0, 2)])


def test_perturbation_multiplies_clips_moves_and_resamples():
    space, rng = _space(), np.random.default_rng(5)
    base = {"n_layers": 1, "width_0": 250, "learning_rate": 1e-3, "clip_coef": 0.39, "gamma": 0.999,
            "activation": "tanh"}
    lrs, clips, gammas, widths = set(), set(), set(), set()
    for _ in range(300):
        c = space.perturb(base, rng, keys=["learning_rate", "clip_coef", "gamma", "width_0"],
                          resample_probability=0.0)
        assert space.validate(c) == c and c["n_layers"] == 1 and c["activation"] == "tanh"
        lrs.add(round(c["learning_rate"], 12))
        clips.add(round(c["clip_coef"], 12))
        gammas.add(c["gamma"])
        widths.add(c["width_0"])
    assert lrs == {0.0008, 0.0012}
    assert clips == {0.312, 0.4}  # 0.39 * 1.2 clipped to the upper bound
    assert gammas == {0.99, 0.999}  # neighbour or (clipped at the end) itself
    assert widths == {200, 256}
    # resample_probability=1 draws from the prior: values other than the two perturbed ones appear
    resampled = {space.perturb(base, rng, keys=["learning_rate"], resample_probability=1.0)["learning_rate"]
                 for _ in range(50)}
    assert len(resampled) == 50
    # a perturbation of a parent activates/deactivates children consistently
    for _ in range(100):
        c = space.perturb(base, rng, keys=["n_layers"], resample_probability=0.5)
        assert space.validate(c) == c
    with pytest.raises(KeyError, match="no dimension 'lr'"):
        space.perturb(base, rng, keys=["lr"])


def test_sampling_is_reproducible_from_the_seed():
    a = [_space().sample(np.random.default_rng(7)) for _ in range(2)]
    assert a[0] == a[1]
    assert _space().sample(np.random.default_rng(8)) != a[0]
