"""Load a script from eval/ (not a package) as a module, for the tests of benchmarks and reproduction scripts."""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_script(relpath: str):
    """``load_script("eval/bench/bench_step.py")`` -> the module (registered under its file stem, since
    dataclasses look their module up in ``sys.modules``)."""
    path = ROOT / relpath
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = mod
    spec.loader.exec_module(mod)
    return mod
