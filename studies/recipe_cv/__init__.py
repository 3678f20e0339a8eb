"""The recipe_cv study (see README.md beside this file)."""
