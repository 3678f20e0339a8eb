"""The GE2E speaker-encoder weights (``ge2e.safetensors``) and the scripts that made them and the golden file.

The network that loads them is :mod:`pipeline.speaker_encoder` (in the runtime since
:mod:`pipeline.voices` groups a recording's speech by voice with it); see ``README.md`` beside this file.
"""
