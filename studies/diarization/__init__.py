"""The diarization study: do silero-vad segments + GE2E clustering find who speaks when, and at which threshold?

See ``plan.md`` (written before the run) and ``README.md`` beside this file.
"""
