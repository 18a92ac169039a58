"""The derivations of the notebooks, one module per notebook topic; importing registers them.

Each module defines :class:`~lossutils.checks._derivation.Derivation` objects: the symbols the
notebook gives, how random data and parameters are drawn, and per step the expected
expression and the catalogue of mistakes. The expected expressions are built here only, in
functions, so that they never appear in a notebook's release (a test checks this).
"""

from . import classification, information, likelihood, margin, optim, regression  # noqa: F401
