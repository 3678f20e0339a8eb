"""How the shipped models are built and measured: corpus reading, feature tables, the gender and
emotion recipes, evaluation, model cards and reports.

The runtime package :mod:`pipeline` never imports this package; this package imports the runtime
(the models it trains are the runtime's models).
"""
