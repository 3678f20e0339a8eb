"""The noise_study study (see README.md beside this file)."""
