"""Measurements of a cylindrical cell in CT, in millimetres where the pixel size is known: what a
quality engineer signs off against the cell design's tolerances (a recipe).

- `segmentation`: intensity classes without hand-set thresholds (8- or 16-bit, any display window);
- `can`: the can's diameters, wall thickness, a robust ellipse and the dents against it;
- `roll`: the jelly roll's core, its offset and gap, the turns and their deviation from a spiral;
- `ends`: at a cell end (volumes), cathode and anode end heights per angle sector and the overhang.

Pure functions of arrays: no I/O. Values and names are `schemas.measurements`.
"""
