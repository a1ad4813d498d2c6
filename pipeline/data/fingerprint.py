"""What a result was computed from: one digest of a dataset directory's contents.

Checkpoints are only valid for the data they were trained on: regenerating or
re-importing a dataset at the same path (other folds, other rows) must not let
`--resume`, `predict` or `report --merge` silently reuse encoders trained on rows that
are now test rows. The digest covers manifest.json, features.parquet (so the fold
assignment and every feature value) and the kept frame sequences, byte for byte.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pipeline.data.schema import FEATURES, MANIFEST
from pipeline.data.sequences import SEQ_DIR

BLOCK = 1 << 22  # bytes hashed per read


def dataset_fingerprint(root: str | Path) -> str:
    """blake2b-128 hex digest of the dataset directory's files, in a fixed order."""
    root = Path(root)
    digest = hashlib.blake2b(digest_size=16)
    files = [root / MANIFEST, root / FEATURES, *sorted((root / SEQ_DIR).glob("*.npy"))]
    for path in files:
        if not path.is_file():
            continue
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        with path.open("rb") as fh:
            while block := fh.read(BLOCK):
                digest.update(block)
    return digest.hexdigest()
