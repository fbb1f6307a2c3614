"""Mutation testing of sknw: plausible one-line bugs the test suite must catch.

Each mutant is one textual change to the package (a snippet and its
replacement) and the test files that should fail because of it. For each
mutant, a scratch copy of the repository is changed (never the working
tree), the test files run there with pytest, and the mutant counts as
killed when they fail. A snippet that is no longer in the code is reported
as such and not counted: update the mutant to the code that replaced it.

Run from the repository root::

    python tools/mutants.py                  # every mutant
    python tools/mutants.py --list           # their names
    python tools/mutants.py tree-radius-margin loo-sum-outputs  # some

The mutants' test files first run once on the unchanged code
(``--no-baseline`` skips this), so that a failing test cannot pass for a
killed mutant. It exits with status 1 when a mutant survives or a snippet
is missing, 2 when the tests fail without a mutant.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent

# What a mutant's tests need from the repository.
COPIED = ["sknw", "tests", "conftest.py", "setup.cfg", "pyproject.toml"]

# A mutant whose tests run longer than this (an endless loop, say) counts as
# killed by the timeout.
TIMEOUT_S = 900


class Mutant(NamedTuple):
    name: str
    path: str
    original: str
    replacement: str
    tests: tuple


E, T = "sknw/_engine.py", "sknw/_neighbors.py"
LOO, OBJ = "sknw/_loo.py", "sknw/_loo_objective.py"
R, B = "sknw/_bandwidth.py", "sknw/_base.py"
REG, CLF = "sknw/_regression.py", "sknw/_classification.py"
# Cases built so that a slip changes the answer; quick, so run first.
EXACT = "tests/test_exact_cases.py"

MUTANTS = [
    # The engine.
    Mutant(
        "float32-product-expansion",
        E,
        "if squared and dtype == torch.float64 and n_features >= 2:",
        "if squared and n_features >= 2:",
        (EXACT, "tests/test_engine.py"),
    ),
    Mutant(
        "dense-chunk-budget-factor",
        E,
        'budget = get_config()["working_memory"] * 2**20 '
        "// (blocks_per_row * n_threads)",
        'budget = get_config()["working_memory"] * 2**20 // n_threads',
        (EXACT, "tests/test_engine.py"),
    ),
    Mutant(
        "dense-key-width-power",
        E,
        "            sq.mul_(inverse.square())",
        "            sq.mul_(inverse)",
        (EXACT, "tests/test_engine.py"),
    ),
    Mutant(
        "dense-query-width-power",
        E,
        "factor = factor / np.asarray(query_widths, dtype=np.float64) ** power",
        "factor = factor / np.asarray(query_widths, dtype=np.float64) ** 2",
        (EXACT, "tests/test_engine.py"),
    ),
    Mutant(
        "dense-nearest-1d-off-by-one",
        E,
        "left = (right - 1).clamp_(min=0)",
        "left = right",
        (EXACT, "tests/test_engine.py"),
    ),
    Mutant(
        "fused-shift-always",
        E,
        "if largest > _FUSED_SHIFT_BOUND:",
        "if False:",
        (EXACT, "tests/test_engine.py"),
    ),
    Mutant(
        "dense-sample-weight-dropped",
        E,
        "        weighted *= np.asarray(sample_weight, dtype=np.float64)[:, None]",
        "        pass",
        (EXACT, "tests/test_engine.py"),
    ),
    Mutant(
        "merge-smallest-shift",
        E,
        "top = log_shift.max(axis=0)",
        "top = log_shift.min(axis=0)",
        (EXACT, "tests/test_engine.py"),
    ),
    Mutant(
        "product-radius-too-large",
        E,
        "_PRODUCT_MAX_RADIUS = 1e3",
        "_PRODUCT_MAX_RADIUS = 1e9",
        (EXACT, "tests/test_engine.py"),
    ),
    Mutant(
        "weight-scale-dropped",
        E,
        "partial.log_shift[:] += np.log(self.weight_scale)",
        "partial.log_shift[:] += 0.0",
        (EXACT, "tests/test_engine.py", "tests/test_neighbors.py"),
    ),
    # The tree.
    Mutant(
        "tree-radius-margin",
        T,
        "* (1 + _RADIUS_MARGIN + 64 * eps)",
        "* (1 - _RADIUS_MARGIN)",
        (EXACT, "tests/test_neighbors.py"),
    ),
    Mutant(
        "tree-compact-radius-without-rounding-slack",
        T,
        "(1 + _RADIUS_MARGIN + 64 * eps)\n"
        "        return scaled, widths, radius + absolute",
        "(1 + _RADIUS_MARGIN)\n        return scaled, widths, radius",
        (EXACT, "tests/test_neighbors.py"),
    ),
    Mutant(
        "tree-gaussian-radius-ignores-nearest",
        T,
        "return np.hypot(nearest_distance, fall)",
        "return fall",
        (EXACT, "tests/test_neighbors.py"),
    ),
    Mutant(
        "tree-exponential-radius-ignores-nearest",
        T,
        "return nearest_distance + fall",
        "return fall",
        (EXACT, "tests/test_neighbors.py"),
    ),
    Mutant(
        "tree-key-width-power",
        T,
        "sq = sq * (1.0 / self.key_widths[cols]) ** 2",
        "sq = sq * (1.0 / self.key_widths[cols])",
        (EXACT, "tests/test_neighbors.py"),
    ),
    Mutant(
        "tree-query-width-reach",
        T,
        "reach = reach * (1.0 if widths is None else widths)",
        "reach = reach * np.ones(len(scaled))",
        (EXACT, "tests/test_neighbors.py"),
    ),
    Mutant(
        "tree-nearest-width-ratio",
        T,
        "radius = distance[:, 0] * largest_key_width / smallest_key_width",
        "radius = distance[:, 0]",
        (EXACT, "tests/test_neighbors.py"),
    ),
    Mutant(
        "tree-width-ratio-dropped",
        T,
        "nearest_distance[:, 0] * self.width_ratio,",
        "nearest_distance[:, 0],",
        (EXACT, "tests/test_neighbors.py"),
    ),
    # The learner.
    Mutant(
        "loo-sum-outputs",
        OBJ,
        "return (predictions - self.values[chunk_t]).square().mean(dim=-1)",
        "return (predictions - self.values[chunk_t]).square().sum(dim=-1)",
        (EXACT, "tests/test_loo.py"),
    ),
    Mutant(
        "loo-slope-sum-outputs",
        OBJ,
        "slope = 2 * residuals / residuals.shape[1]",
        "slope = 2 * residuals",
        (EXACT, "tests/test_loo.py"),
    ),
    Mutant(
        "loo-curvature-sum-outputs",
        OBJ,
        "quadratic = 2 * derivative.square().mean(dim=1)",
        "quadratic = 2 * derivative.square().sum(dim=1)",
        (EXACT, "tests/test_loo.py"),
    ),
    Mutant(
        "loo-chunk-budget-factor",
        OBJ,
        "budget /= self.blocks_per_row + self.blocks_per_feature * self.n_features",
        "budget /= 1 + self.blocks_per_feature * self.n_features",
        (EXACT, "tests/test_loo.py"),
    ),
    Mutant(
        "loo-kept-weight",
        OBJ,
        "self.kept_weight_numpy = sample_weight - np.minimum(sample_weight, 1)",
        "self.kept_weight_numpy = np.zeros(self.n_samples)",
        (EXACT, "tests/test_loo.py"),
    ),
    Mutant(
        "loo-gradient-sample-weight-dropped",
        OBJ,
        "gradient = float(((derivative * slope).sum(dim=1)) @ row_weight)",
        "gradient = float(((derivative * slope).sum(dim=1)).sum())",
        (EXACT, "tests/test_loo.py"),
    ),
    Mutant(
        "loo-query-width-power",
        OBJ,
        "self.row_factor = self._tensor(1.0 / np.asarray(query_widths) ** 2)",
        "self.row_factor = self._tensor(1.0 / np.asarray(query_widths))",
        (EXACT, "tests/test_loo.py"),
    ),
    Mutant(
        "loo-mean-ignores-sample-weight",
        OBJ,
        "total_weight = row_weight.sum()",
        "total_weight = len(rows)",
        (EXACT, "tests/test_loo.py"),
    ),
    Mutant(
        "learning-start-unscaled",
        LOO,
        "start = np.clip(np.log(initial_bandwidth / x_scale), lower, upper)",
        "start = np.clip(np.log(initial_bandwidth * x_scale), lower, upper)",
        (EXACT, "tests/test_loo.py"),
    ),
    Mutant(
        "adam-no-first-bias-correction",
        LOO,
        "mean = first_moment / (1 - beta1**n_steps)",
        "mean = first_moment",
        (EXACT, "tests/test_loo.py"),
    ),
    Mutant(
        "adam-no-second-bias-correction",
        LOO,
        "spread = np.sqrt(second_moment / (1 - beta2**n_steps))",
        "spread = np.sqrt(second_moment)",
        (EXACT, "tests/test_loo.py"),
    ),
    # The rules.
    Mutant(
        "scott-wrong-power",
        R,
        "return np.exp(-log_n / (n_features + 4))",
        "return np.exp(-log_n / (n_features + 2))",
        (EXACT, "tests/test_bandwidth.py"),
    ),
    Mutant(
        "silverman-wrong-constant",
        R,
        "return np.exp((np.log(4.0 / (n_features + 2)) - log_n) / (n_features + 4))",
        "return np.exp((np.log(4.0 / (n_features + 4)) - log_n) / (n_features + 4))",
        (EXACT, "tests/test_bandwidth.py"),
    ),
    Mutant(
        "spread-ddof-1",
        R,
        "variance = relative @ (X - mean) ** 2 / total",
        "variance = relative @ (X - mean) ** 2 / (total - 1)",
        (EXACT, "tests/test_bandwidth.py"),
    ),
    Mutant(
        "rule-count-ignores-weights",
        R,
        "return spread_from_variance(variance), np.log(total) + np.log(largest)",
        "return spread_from_variance(variance), np.log(len(relative))",
        (EXACT, "tests/test_bandwidth.py"),
    ),
    Mutant(
        "neighbor-distance-leaves-out-all-weight",
        R,
        "cumulative -= np.minimum(weight[pending], 1)[:, None]",
        "cumulative -= weight[pending][:, None]",
        (EXACT, "tests/test_bandwidth.py"),
    ),
    Mutant(
        "neighbor-distance-off-by-one",
        R,
        "target = n_neighbors * (1 - 1e-12)",
        "target = (n_neighbors - 1) * (1 - 1e-12)",
        (EXACT, "tests/test_bandwidth.py"),
    ),
    # The estimators.
    Mutant(
        "adaptive-query-no-floor",
        B,
        "np.maximum(distances, self._local_width_floor) / self._local_width_scale",
        "distances / self._local_width_scale",
        (EXACT, "tests/test_regression.py"),
    ),
    Mutant(
        "adaptive-sample-no-floor",
        B,
        "        distances = np.maximum(distances, floor)\n",
        "",
        (EXACT, "tests/test_regression.py"),
    ),
    Mutant(
        "adaptive-scale-sample-weight-dropped",
        B,
        "np.average(np.log(distances[used]), weights=weight[used])",
        "np.mean(np.log(distances[used]))",
        (EXACT, "tests/test_regression.py"),
    ),
    Mutant(
        "cv-needs-one-sample",
        B,
        "if n_used < 2:",
        "if n_used < 1:",
        (EXACT, "tests/test_loo.py"),
    ),
    Mutant(
        "regression-2d-target-raveled",
        REG,
        "        if self._fit_y_ndim == 1:\n            y_pred = y_pred.ravel()",
        "        if self._fit_y_ndim <= 2:\n            y_pred = y_pred.ravel()",
        (EXACT, "tests/test_regression.py"),
    ),
    Mutant(
        "classifier-label-order",
        CLF,
        "one_hot[rows, codes[rows] - start] = 1.0",
        "one_hot[rows, stop - 1 - codes[rows]] = 1.0",
        (EXACT, "tests/test_classification.py"),
    ),
    Mutant(
        "classifier-tie-to-the-last-class",
        CLF,
        "top = np.argmax(proba, axis=1)",
        "top = proba.shape[1] - 1 - np.argmax(proba[:, ::-1], axis=1)",
        (EXACT, "tests/test_classification.py"),
    ),
    Mutant(
        "classifier-loo-loss-squared",
        CLF,
        '    _loss = "log_loss"',
        '    _loss = "squared_error"',
        (EXACT, "tests/test_classification.py", "tests/test_loo.py"),
    ),
]


def _copy_repository(destination):
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(
                source,
                destination / name,
                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
            )
        elif source.exists():
            shutil.copy2(source, destination / name)


def run_tests(tests, scratch):
    """Run pytest on ``tests`` in ``scratch``; the completed process."""
    # No bytecode cache: a mutant of the same length as its snippet, written
    # within the second, could otherwise run from the previous file's cache.
    environment = dict(
        os.environ,
        CI="true",
        OMP_NUM_THREADS="1",
        PYTHONPATH=str(scratch),
        PYTHONDONTWRITEBYTECODE="1",
    )
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"]
    return subprocess.run(
        command + list(tests),
        cwd=scratch,
        env=environment,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )


def run_mutant(mutant, scratch):
    """Apply ``mutant`` in ``scratch`` (a copy of the repository), run its
    tests, restore the file; returns (status, seconds)."""
    target = scratch / mutant.path
    original_text = target.read_text()
    count = original_text.count(mutant.original)
    if count != 1:
        return ("not found" if count == 0 else f"ambiguous ({count} matches)"), 0.0
    target.write_text(original_text.replace(mutant.original, mutant.replacement))
    start = time.perf_counter()
    try:
        result = run_tests(mutant.tests, scratch)
        status = "survived" if result.returncode == 0 else "killed"
        if result.returncode not in (0, 1):
            # Collection errors and the like (2-5) also fail the suite.
            status = f"killed (pytest exit {result.returncode})"
        failed = [
            line.split()[1]
            for line in result.stdout.splitlines()
            if line.startswith(("FAILED ", "ERROR "))
        ]
        if failed:
            status = f"killed by {failed[0]}"
    except subprocess.TimeoutExpired:
        status = "killed (timeout)"
    finally:
        target.write_text(original_text)
    return status, time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="mutants to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutants")
    parser.add_argument(
        "--no-baseline",
        action="store_true",
        help="skip the first run of the tests on the unchanged code",
    )
    args = parser.parse_args(argv)
    mutants = MUTANTS
    if args.names:
        unknown = set(args.names) - {mutant.name for mutant in MUTANTS}
        if unknown:
            parser.error(f"unknown mutants: {sorted(unknown)}")
        mutants = [mutant for mutant in MUTANTS if mutant.name in args.names]
    if args.list:
        for mutant in mutants:
            print(f"{mutant.name:42s} {mutant.path:26s} {' '.join(mutant.tests)}")
        return 0
    counts = {"killed": 0, "survived": 0, "missing": 0}
    with tempfile.TemporaryDirectory(prefix="sknw-mutants-") as directory:
        scratch = Path(directory)
        _copy_repository(scratch)
        if not args.no_baseline:
            # A test that fails without any mutant would count every
            # mutant as killed.
            tests = sorted({test for mutant in mutants for test in mutant.tests})
            result = run_tests(tests, scratch)
            if result.returncode != 0:
                print(result.stdout[-3000:] + result.stderr[-3000:])
                print("The tests fail on the unchanged code: no mutant run.")
                return 2
            print(f"baseline: {len(tests)} test files pass on the unchanged code")
        for mutant in mutants:
            status, seconds = run_mutant(mutant, scratch)
            if status.startswith("killed"):
                counts["killed"] += 1
            elif status == "survived":
                counts["survived"] += 1
            else:
                counts["missing"] += 1
            print(f"{mutant.name:40s} {seconds:6.1f} s  {status}", flush=True)
    # A mutant whose line is not found (the code moved) counts as not
    # killed: its pattern needs updating.
    total = sum(counts.values())
    rate = counts["killed"] / total if total else 0.0
    print(
        f"\n{counts['killed']} killed, {counts['survived']} survived, "
        f"{counts['missing']} not found: kill rate {rate:.0%} "
        f"({counts['killed']}/{total})"
    )
    return 0 if counts["survived"] == counts["missing"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
