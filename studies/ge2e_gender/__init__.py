"""The ge2e_gender study: does a logistic regression on GE2E speaker embeddings hold gender on corpora it never saw?

See ``plan.md`` (written before the run) and ``README.md`` beside this file.
"""
