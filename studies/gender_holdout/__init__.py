"""The gender_holdout study (see README.md beside this file)."""
