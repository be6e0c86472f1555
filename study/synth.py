"""``study data synth``: write the synthetic data set as an image folder plus COVIDx metadata."""
from __future__ import annotations

from pathlib import Path

from PIL import Image

from trainables.data import synthetic
from trainables.progress import progress_bar

METADATA_FILE = "metadata.txt"


def write_synthetic(out: str | Path, n: int, seed: int, size: int = 256,
                    difficulty: float = 1.0) -> Path:
    """Render ``n`` images and write ``out/<class>/<file>.png`` and ``out/metadata.txt``
    (``patient_id filename label source`` per line, the COVIDx format). Returns ``out``."""
    out = Path(out)
    arrays = synthetic.generate(n, size, seed, difficulty, progress=True)
    lines = []
    for c in arrays.class_names:
        (out / c).mkdir(parents=True, exist_ok=True)
    rows = zip(arrays.images, arrays.labels, arrays.patient_ids)
    for i, (img, label, patient) in enumerate(progress_bar(rows, "writing PNGs", "img", total=n)):
        name = arrays.class_names[label]
        filename = f"{patient}-{i:06d}.png"
        Image.fromarray(img[0]).save(out / name / filename, compress_level=1)
        lines.append(f"{patient} {filename} {name} synthetic")
    (out / METADATA_FILE).write_text("\n".join(lines) + "\n")
    return out
