"""Every module under iwae_np imports on an install without PyTorch (the benchmark's torch side
is optional), so ``--doctest-modules`` can collect the whole package on any machine."""

import subprocess
import sys

import pytest

CODE = """
import importlib, pkgutil, sys
sys.modules["torch"] = None  # `import torch` now raises ImportError, as on a torch-free install
import iwae_np
names = [m.name for m in pkgutil.walk_packages(iwae_np.__path__, "iwae_np.")]
for name in names:
    if not name.endswith("__main__"):
        importlib.import_module(name)
print(len(names))
"""


@pytest.mark.slow  # ~3 s: imports matplotlib, scipy, sklearn, nbformat in a fresh process
def test_every_module_imports_without_torch():
    result = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) >= 20
