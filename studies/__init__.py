"""One-off studies: each is a folder with its code (``study.py``), its plan (written before the
run), its report, the command that reproduces it and its verdict. ``studies/README.md`` lists them.

Studies may import :mod:`training` and :mod:`pipeline`; neither ever imports a study.
"""
