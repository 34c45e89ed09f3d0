"""The competition's data: tables and sources, images and the decode cache, folds, checks and leakage, data sets."""
