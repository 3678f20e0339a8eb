"""The corpus_pitch study (see README.md beside this file)."""
