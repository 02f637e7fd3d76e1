"""What a user runs around the core: the command line (``cli``), the demo's experiments
(``experiments``), result tables (``tables``) and figures (``plots``). Imports only go down:
app uses the core, ``data``, ``classroom`` and ``bench``; nothing imports app.

The modules load on first use (``iwae_np.app.experiments``), so importing one does not pull in
matplotlib or the others.
"""

import importlib

_MODULES = ("cli", "experiments", "plots", "tables")


def __getattr__(name):
    if name in _MODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
