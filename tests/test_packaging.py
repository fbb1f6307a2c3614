"""The distribution: sdist and wheel hold the licence, the metadata and the tests."""

import email.parser
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from filelock import FileLock

ROOT = Path(__file__).parents[1]

pytest.importorskip("build", reason="building the package needs the test extra")


def _metadata(text):
    return email.parser.Parser().parsestr(text)


def _run(args, cwd):
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def dists(tmp_path_factory):
    """Build the sdist, and the wheel from it, as ``python -m build`` does.

    The build writes into the repository (its release tree, its egg-info):
    under pytest-xdist the workers of one run build once, under a lock in
    the folder they share, and all take those files.
    """
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    out = shared / "dist"
    with FileLock(str(shared / "dist.lock")):
        if not (out / "built").exists():
            out.mkdir(exist_ok=True)
            done = _run(
                ["-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
                ROOT,
            )
            assert done.returncode == 0, done.stdout + done.stderr
            (out / "built").touch()
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return sdist, wheel


def _check_metadata(meta):
    assert meta["Name"] == "scikit-nw"
    assert meta["License-Expression"] == "BSD-3-Clause"
    assert meta["License-File"] == "LICENSE"
    assert meta["Author"] == "the sknw developers"
    assert "nadaraya-watson" in meta["Keywords"]
    classifiers = meta.get_all("Classifier")
    assert "Programming Language :: Python :: 3" in classifiers
    assert "Operating System :: OS Independent" in classifiers
    assert any(c.startswith("Topic :: Scientific/Engineering") for c in classifiers)
    assert any(r.startswith("torch") for r in meta.get_all("Requires-Dist"))
    assert "scikit-nw" in meta.get_payload()  # the README, as the long description


def test_wheel_holds_license_and_metadata(dists):
    _, wheel = dists
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        (license_name,) = [
            n for n in names if n.endswith(".dist-info/licenses/LICENSE")
        ]
        assert "BSD 3-Clause License" in zf.read(license_name).decode()
        (meta_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        _check_metadata(_metadata(zf.read(meta_name).decode()))
    assert "sknw/__init__.py" in names
    assert not [n for n in names if n.startswith("tests/")]


def test_sdist_holds_license_metadata_tests_and_examples(dists):
    sdist, _ = dists
    with tarfile.open(sdist) as tf:
        top = tf.getnames()[0].split("/")[0]
        names = {name[len(top) + 1 :] for name in tf.getnames()}
        assert (
            "BSD 3-Clause License" in tf.extractfile(f"{top}/LICENSE").read().decode()
        )
        _check_metadata(_metadata(tf.extractfile(f"{top}/PKG-INFO").read().decode()))
    for path in (
        "conftest.py",
        "setup.cfg",
        "tests/__init__.py",
        "tests/conftest.py",
        "tests/_reference.py",
        "tests/test_examples.py",
        "examples/README.txt",
        "examples/quickstart.py",
        ".ci/check_docs.py",
        "docs/_gallery_order.py",
    ):
        assert path in names, path
    here = {p.relative_to(ROOT).as_posix() for p in (ROOT / "tests").glob("*.py")}
    assert here <= names


def test_twine_check_passes(dists):
    pytest.importorskip("twine", reason="twine check needs the test extra")
    done = _run(["-m", "twine", "check", "--strict", *map(str, dists)], ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("PASSED") == 2


def test_sdist_test_suite_collects(dists, tmp_path):
    sdist, _ = dists
    with tarfile.open(sdist) as tf:
        tf.extractall(tmp_path, filter="data")
    (unpacked,) = tmp_path.iterdir()
    done = _run(
        ["-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"], unpacked
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "error" not in done.stdout.splitlines()[-1].lower()
    collected = done.stdout
    assert "tests/test_examples.py::test_example_runs[quickstart.py]" in collected
    assert "tests/test_common.py::" in collected
    # The sdist's own package is the one its tests import.
    where = _run(["-c", "import sknw; print(sknw.__file__)"], unpacked)
    assert Path(where.stdout.strip()).parent == unpacked / "sknw"
