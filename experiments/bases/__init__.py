"""Pieces shared by experiment files (imported as ``bases``: ``config.load_experiment`` puts
``experiments/`` on ``sys.path`` while an experiment loads)."""
