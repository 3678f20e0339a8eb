"""``python -m pipeline.train``: kept for old commands; the code is :mod:`training.train`.

Not part of the runtime: nothing in :mod:`pipeline` imports this module.
"""
from training.train import main

if __name__ == "__main__":
    raise SystemExit(main())
