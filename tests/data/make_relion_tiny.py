"""Regenerate tests/data/relion_tiny/: a small particle stack in RELION 3.1 format.

220 images of 24 px (14.93 Å/px) simulated from the 6ZU5 ribosome by
:func:`problems.catalog.realistic.generate_realistic` (shifts, astigmatic CTFs,
white noise, SNR 0.1), then stored as int16 counts ``rint(40 * img + 100)``
(MRC mode 1) so the file stays small and the loader's noise normalisation has
a gain and an offset to undo.  Run from the repository root:

    python tests/data/make_relion_tiny.py
"""
import shutil
import tempfile
from pathlib import Path

import mrcfile
import numpy as np

from problems.catalog.realistic import generate_realistic, realistic_spec

OUT = Path(__file__).parent / "relion_tiny"

if __name__ == "__main__":
    spec = realistic_spec("tiny", box_size=24, shift_extent=1.0, snr=0.1)
    with tempfile.TemporaryDirectory() as tmp:
        generate_realistic(spec, seed=0, directory=Path(tmp), progress=False, n_images=220)
        images = mrcfile.read(Path(tmp) / "particles.mrcs")
        OUT.mkdir(exist_ok=True)
        shutil.copy(Path(tmp) / "particles.star", OUT / "particles.star")
        with mrcfile.new(OUT / "particles.mrcs", overwrite=True) as mrc:
            mrc.set_data(np.rint(40.0 * images + 100.0).astype(np.int16))
            mrc.set_image_stack()
            mrc.voxel_size = spec.pixel_size
    print(f"wrote {OUT}")
