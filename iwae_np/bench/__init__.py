"""``python -m iwae_np bench``: speed side by side with PyTorch, in alternating worker processes
(see ``runner``)."""

from .runner import machine, markdown_table, run, torch_available

__all__ = ["machine", "markdown_table", "run", "torch_available"]
