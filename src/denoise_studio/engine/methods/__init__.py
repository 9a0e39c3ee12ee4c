"""Ways of training: each method builds (input, target, loss mask) from patches and names its loss.

The trainer knows nothing about Noise2Void or any other method; adding a method adds a module here.
"""

from .n2v import BlindSpotMethod

__all__ = ["BlindSpotMethod"]
