"""Torch code that runs inside a studyspec job (datasets, models, masks, pruning
schedule, training regimes, path queries). Entry point: ``runners.job.run``.

Only this package imports torch; the engine (``studyspec/``) stays torch-free.
"""
