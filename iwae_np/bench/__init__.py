"""``python -m iwae_np bench``: speed side by side with PyTorch, in alternating worker processes
(see ``runner``)."""

from .runner import run, torch_available

__all__ = ["run", "torch_available"]
