"""Ways of training: each method builds (input, target, loss mask) from patches and names its loss.

The trainer knows nothing about Noise2Void or any other method; adding a method adds a module here.
"""

from ..config import DenoiseConfig
from ..registry import METHODS
from .n2v import BlindSpotMethod
from .simulated import SimulatedNoiseMethod
from .supervised import SupervisedMethod


def make_method(config: DenoiseConfig, groups: int = 1) -> BlindSpotMethod | SupervisedMethod:
    """The method object for a config's ``method``; ``groups`` image channels trained jointly."""
    if config.is_blind_spot:
        return BlindSpotMethod(config, groups)
    if METHODS[config.method].simulated:
        return SimulatedNoiseMethod(config, groups)
    return SupervisedMethod(config, groups)


__all__ = ["BlindSpotMethod", "SimulatedNoiseMethod", "SupervisedMethod", "make_method"]
