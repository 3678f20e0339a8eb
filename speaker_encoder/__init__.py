"""The GE2E speaker-encoder weights (``ge2e.safetensors``) and the scripts that made them and the golden file.

The runtime code is :mod:`training.speaker_encoder`; see ``README.md`` beside this file.
"""
