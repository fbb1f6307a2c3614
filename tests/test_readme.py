"""The README's commands and code run, and say what they do."""

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

README = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")


def _blocks(language):
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def test_readme_opens_with_what_sknw_is_then_the_two_commands():
    lines = README.splitlines()
    assert len(lines) < 150
    first_block = README.index("```bash")
    assert "Nadaraya-Watson" in README[:first_block]
    setup_run, setup_test = _blocks("bash")[:2]
    for command in (setup_run, setup_test):
        torch_first = command.index("pip install torch==2.13.0")
        assert command.count("pip install") == 2
        assert "pip install" in command[torch_first + len("pip install torch") :]
    assert setup_run.strip().endswith("python examples/quickstart.py")
    assert setup_test.strip().endswith("python -m pytest -n auto")
    assert 'pip install -e ".[test]"' in setup_test


def test_readme_names_the_distribution():
    assert "pip install scikit-nw" in README
    assert "sknw[" not in README  # no hint that would install the unrelated package


def test_readme_tour_runs_and_its_comments_hold():
    namespace = {}
    for block in _blocks("python"):
        exec(compile(block, "README.md", "exec"), namespace)
    plt.close("all")
    model, search, learned = (namespace[k] for k in ("model", "search", "learned"))
    weights = model.attention_weights(namespace["X_new"])
    assert weights.shape == (5, 50)
    assert (weights >= 0).all() and abs(weights.sum(axis=1) - 1).max() < 1e-12
    assert str(search.best_params_) in README
    assert f"({learned.bandwidth_:.3f}, {learned.n_iter_})" in README
    assert len(learned.loss_curve_) == learned.n_iter_ + 1
