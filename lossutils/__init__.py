"""lossutils: loss functions from first principles.

The reference library of the course: pure numpy, one calling convention (prediction first,
target second; ``reduction="mean" | "sum" | "none"``; class axis last), numerically stable,
strict about bad input. Every loss ``f`` has ``f_grad`` with the same signature.

The course machinery (:mod:`lossutils.checks`, :mod:`lossutils.grading`, :mod:`lossutils.cli`)
is not imported here, so ``import lossutils`` costs little more than ``import numpy``.
"""

from .classification import *  # noqa: F403
from .gradcheck import *  # noqa: F403
from .information import *  # noqa: F403
from .likelihood import *  # noqa: F403
from .margin import *  # noqa: F403
from .optim import *  # noqa: F403
from .regression import *  # noqa: F403

__version__ = "0.1.0"
