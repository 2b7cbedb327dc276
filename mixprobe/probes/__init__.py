"""See the package docstrings of the modules inside."""
