"""The baselines study (see README.md beside this file)."""
