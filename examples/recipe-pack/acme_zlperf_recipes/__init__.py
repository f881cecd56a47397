"""ACME's zlperf recipe pack: the recipes are the YAML files in ``acme_zlperf_recipes/recipes``.

Declared to zlperf by the ``zlperf.recipes`` entry point in pyproject.toml; nothing here runs.
"""
