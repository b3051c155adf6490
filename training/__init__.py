"""Training and export: the only package that imports torch and ultralytics (the ``[train]`` extra)."""
