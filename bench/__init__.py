"""Benchmarks of the imaging engine against other ways of making the same thumbnails.

``python -m bench.engine`` compares ``chalicelib.imaging.render`` with a plain Pillow
recipe and with pyvips (when it is installed) on the photo corpus; see bench/README.md.
"""
