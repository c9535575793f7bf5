"""torchvision is optional (the `vision` extra): only the mnist, fashion_mnist and imagenet
datasets and the torchvision_resnet model use it. A job that needs it and lacks it stops
with this message instead of a bare ModuleNotFoundError.

Why optional: installing studyspec into an environment that has torch but no torchvision
would make pip pick the newest torchvision, and with it the newest torch in place of the
environment's own (tests/test_install.py)."""
from __future__ import annotations

import sys


def require(what: str) -> None:
    try:
        import torchvision  # noqa: F401
    except ImportError as e:
        raise ImportError(f"{what} needs torchvision, which this job's Python ({sys.executable}) does not "
                          "have: install the torchvision built for its torch (pip install torchvision==..., "
                          "or pip install -e '.[vision]' in a fresh environment)") from e
