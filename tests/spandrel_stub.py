"""`import spandrel` for the tests, without torchvision.

spandrel 0.4.2 imports every architecture it knows when imported; two of them (LaMa and
RestoreFormer, neither used here) import `torchvision.transforms.functional`, and torchvision
breaks beside torch 2.13.0, so it is never installed. Those three module names are stubbed with
the attributes the two imports take (InterpolationMode, rotate, normalize); calling them fails.
"""

import sys
import types

import pytest


def _unavailable(*args, **kwargs):
    raise RuntimeError("torchvision is stubbed in the tests (it breaks beside torch 2.13.0)")


def import_spandrel():
    """The spandrel module (skips the test when it is not installed)."""
    if "torchvision" not in sys.modules:
        functional = types.ModuleType("torchvision.transforms.functional")
        functional.InterpolationMode = type("InterpolationMode", (), {})
        functional.rotate = functional.normalize = _unavailable
        transforms = types.ModuleType("torchvision.transforms")
        transforms.functional = functional
        torchvision = types.ModuleType("torchvision")
        torchvision.transforms = transforms
        sys.modules.update({
            "torchvision": torchvision,
            "torchvision.transforms": transforms,
            "torchvision.transforms.functional": functional,
        })
    return pytest.importorskip("spandrel")
