"""Collection settings for the doctests of the sknw package."""

# Authors: the sknw developers
# License: BSD 3 clause

import importlib.util

# sknw.dask needs the optional "dask" extra: without it, its doctests are not
# collected (importing the module raises an ImportError saying how to install).
collect_ignore = []
if not all(importlib.util.find_spec(name) for name in ("dask", "distributed")):
    collect_ignore.append("sknw/dask.py")
