"""compatbuild's library: one module per pipeline step; ``tasks.cli`` holds the invoke tasks.

When invoke loads the top-level ``tasks.py`` it stands in for this package (see its
docstring), so importing ``tasks.<module>`` works from invoke, pytest and mypy alike.
"""
