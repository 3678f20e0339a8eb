"""``python -m pipeline.bench``: kept for old commands; the code is :mod:`training.bench`.

Not part of the runtime: nothing in :mod:`pipeline` imports this module.
"""
from training.bench import main

if __name__ == "__main__":
    raise SystemExit(main())
