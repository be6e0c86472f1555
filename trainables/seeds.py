"""A trial's named random streams: every source of randomness derives from the trial seed through
its own stream, so strategies that differ in one dimension share the others' randomness."""
from __future__ import annotations

import numpy as np

STREAMS = {"init": 0, "dropout": 1, "data": 2, "augment": 3, "vabal": 4, "tta": 5, "mixup": 6, "mixup_augment": 7,
           "crt": 8}


def stream_seed(seed: int, stream: str) -> int:
    """A 63-bit seed for one named random stream (``STREAMS``) of a trial seed
    (``np.random.SeedSequence([seed, stream])``)."""
    return int(np.random.SeedSequence([seed, STREAMS[stream]]).generate_state(2, np.uint64)[0] >> 1)
