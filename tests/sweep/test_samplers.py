from __future__ import annotations

import itertools

from mlpcli.sweep.samplers import Outcome, make_sampler
from mlpcli.sweep.spec import load_spec

SPACE = ["optim.lr=loguniform(1e-3,1)", "model.hidden=[8],[16,8]", "train.batch_size=range(8,65,8)", "reg=uniform(0,0.01)",
         "model.init_std=int(1,3)"]


def drawn(method: str, seed: int, trials: int = 12, round_size: int = 4) -> list[dict]:
    """Every configuration a sampler gives, told a score that depends on the values (as a real sweep)."""
    spec = load_spec(None, SPACE, {"method": method, "trials": trials, "round": round_size})
    spec.sweep.seed = seed
    sampler, out = make_sampler(spec.sweep), []
    while configs := sampler.ask():
        out += configs
        sampler.tell([Outcome("completed", [(3, 1 / (1 + abs(p["optim.lr"] - 0.05)))]) for p in configs])
    return out


def test_grid_is_the_product_in_key_order():
    spec = load_spec(None, ["optim.lr=0.1,0.2,0.3", "model.hidden=[8],[16,8]"])
    sampler = make_sampler(spec.sweep)
    assert sampler.total == 6
    assert sampler.ask() == [{"optim.lr": lr, "model.hidden": h} for lr, h in itertools.product([0.1, 0.2, 0.3], [[8], [16, 8]])]
    assert sampler.ask() == []


def test_random_and_tpe_give_the_same_trials_for_the_same_seed():
    for method in ("random", "tpe"):
        first = drawn(method, seed=5)
        assert len(first) == 12
        assert drawn(method, seed=5) == first
        assert drawn(method, seed=6) != first


def test_draws_stay_in_the_space():
    for params in drawn("tpe", seed=1, trials=16):
        assert 1e-3 <= params["optim.lr"] <= 1
        assert params["model.hidden"] in ([8], [16, 8])
        assert params["train.batch_size"] in range(8, 65, 8)
        assert 0 <= params["reg"] <= 0.01 and isinstance(params["reg"], float)
        assert params["model.init_std"] in (1, 2, 3) and isinstance(params["model.init_std"], int)


def test_tpe_rounds_use_the_results():
    """Round 1 is random; later rounds follow the told scores, so different results give different draws."""
    spec = load_spec(None, SPACE, {"method": "tpe", "trials": 16, "round": 4})
    spec.sweep.seed = 0

    def run(score):
        sampler, out = make_sampler(spec.sweep), []
        while configs := sampler.ask():
            out += configs
            sampler.tell([Outcome("completed", [(3, score(p))]) for p in configs])
        return out

    near, far = run(lambda p: -abs(p["optim.lr"] - 0.002)), run(lambda p: -abs(p["optim.lr"] - 0.9))
    assert near[:10] == far[:10]           # Optuna's TPE starts with 10 random draws
    assert near[10:] != far[10:]


def test_failed_and_pruned_outcomes_are_told():
    spec = load_spec(None, SPACE, {"method": "tpe", "trials": 8, "round": 4})
    sampler = make_sampler(spec.sweep)
    sampler.ask()
    sampler.tell([Outcome("failed"), Outcome("pruned", [(1, 0.3)]), Outcome("completed", [(1, 0.2), (3, 0.5)]),
                  Outcome("completed", [])])
    states = [t.state.name for t in sampler.study.trials]
    assert states == ["FAIL", "PRUNED", "COMPLETE", "FAIL"]
    assert sampler.study.best_value == 0.5
