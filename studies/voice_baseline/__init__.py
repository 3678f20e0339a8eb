"""The voice-baseline study (see README.md beside this file)."""
