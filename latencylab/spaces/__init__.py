"""Built-in NAS search spaces and the local latency-table predictor.

Light imports only (standard library): this package ships in the SDK.

>>> from latencylab.spaces import get_space
>>> space = get_space("ofa-proxyless")
>>> arch = space.sample()
>>> [b.key for b in space.blocks_for(arch, 224)][:1]  # doctest: +ELLIPSIS
['stem-in:224x224x3-out:112x112x32-...']
"""

from __future__ import annotations

from .base import Block, LutPlan, SearchSpace, make_divisible
from .fbnet import PRIMITIVES as FBNET_PRIMITIVES
from .fbnet import FBNetSpace
from .lut import LocalPredictor, lut_sum_ofa_style, ofa_entries, to_ofa_yaml
from .ofa_mbv3 import OFAMobileNetV3Space
from .ofa_proxyless import OFA_RESOLUTIONS, OFAElasticSpace, OFAProxylessSpace

SPACES: dict[str, SearchSpace] = {
    space.name: space for space in (OFAProxylessSpace(), OFAMobileNetV3Space(), FBNetSpace())
}
"""The built-in spaces by name: ``ofa-proxyless``, ``ofa-mbv3``, ``fbnet``."""


class UnknownSpaceError(KeyError, ValueError):
    """No built-in space has that name (both a KeyError and a ValueError)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def get_space(name: str) -> SearchSpace:
    """The built-in space called ``name``; :class:`UnknownSpaceError` listing valid names."""
    space = SPACES.get(name) if isinstance(name, str) else None
    if space is None:
        valid = ", ".join(sorted(SPACES))
        raise UnknownSpaceError(f"unknown search space {name!r}; valid names: {valid}")
    return space


__all__ = [
    "FBNET_PRIMITIVES",
    "OFA_RESOLUTIONS",
    "SPACES",
    "Block",
    "FBNetSpace",
    "LocalPredictor",
    "LutPlan",
    "OFAElasticSpace",
    "OFAMobileNetV3Space",
    "OFAProxylessSpace",
    "SearchSpace",
    "UnknownSpaceError",
    "get_space",
    "lut_sum_ofa_style",
    "make_divisible",
    "ofa_entries",
    "to_ofa_yaml",
]
