"""Measurements and peers (may import every room but :mod:`bench.commands`).

* :mod:`.perf` -- oracle speed as ratios to the same run's sgemm rate;
* :mod:`.conditioning` -- condition numbers against the band limit (Toader et al.);
* :mod:`.relion`, :mod:`.relion_speed` -- RELION 3.1 as a peer: its map, its speed;
* :mod:`.reproduce` -- one command per figure of Punjani & Brubaker 2015.
"""
