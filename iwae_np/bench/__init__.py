"""``python -m iwae_np bench``: speed side by side with PyTorch, in alternating worker processes
(see ``runner``). ``python -m iwae_np.bench render`` writes the README's speed table from the
committed run, docs/bench.json."""

from .runner import (
    README_BEGIN,
    README_END,
    loaded,
    machine,
    markdown_table,
    readme_section,
    readme_table,
    render_readme,
    run,
    targets,
    torch_available,
)

__all__ = [
    "README_BEGIN",
    "README_END",
    "loaded",
    "machine",
    "markdown_table",
    "readme_section",
    "readme_table",
    "render_readme",
    "run",
    "targets",
    "torch_available",
]
