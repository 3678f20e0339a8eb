"""The gender_robustness study (see README.md beside this file)."""
