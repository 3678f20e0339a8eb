"""The GE2E speaker-encoder weights (``ge2e.safetensors``) and the scripts that made them and the golden file.

The network that loads them is :mod:`training.speaker_encoder` (it moves into the runtime once the
product uses it); see ``README.md`` beside this file.
"""
