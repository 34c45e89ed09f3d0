"""`podium tune`'s logic below the command: the search space (space.py) and the Optuna study (study.py)."""
