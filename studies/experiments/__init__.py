"""The experiments study (see README.md beside this file)."""
