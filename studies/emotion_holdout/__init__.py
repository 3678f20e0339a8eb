"""The emotion_holdout study (see README.md beside this file)."""
