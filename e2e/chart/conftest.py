"""pytest fixtures of e2e/chart; the helpers live in chartlib.py."""

from chartlib import contract, helm  # noqa: F401  (fixtures)
