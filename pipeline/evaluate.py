"""``python -m pipeline.evaluate``: kept for old commands; the code is :mod:`training.evaluate`.

Not part of the runtime: nothing in :mod:`pipeline` imports this module.
"""
from training.evaluate import main

if __name__ == "__main__":
    raise SystemExit(main())
