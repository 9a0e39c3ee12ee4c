"""Ways of training: each method builds (input, target, loss mask) from patches and names its loss.

The trainer knows nothing about Noise2Void or any other method; adding a method adds a module here.
"""

from ..config import DenoiseConfig
from .n2v import BlindSpotMethod
from .supervised import SupervisedMethod


def make_method(config: DenoiseConfig) -> BlindSpotMethod | SupervisedMethod:
    """The method object for a config's ``method``."""
    return BlindSpotMethod(config) if config.is_blind_spot else SupervisedMethod(config)


__all__ = ["BlindSpotMethod", "SupervisedMethod", "make_method"]
