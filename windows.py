"""The test protocol's windows over a stream of snippet features, as live.py, watch.py and calibrate.py score a
stream: every `hop` new snippets, the score of the last `window` snippets (protocol.chunk_score); with hop =
window, the protocol's own chunks, so that a finished stream's scores are detect.py's. No future snippet is
ever used and no score is ever revised."""
from collections import deque

import numpy as np
import torch

from model import eval_mode
from protocol import chunk_score


class Windows:
    """The causal windows of the test protocol over a stream of snippet features [crops, F] (tensors on the
    model's device): every hop new snippets, the score of the last `window` (hop = window: the protocol's
    chunks, a shorter last one by flush)."""

    def __init__(self, model, window, hop):
        self.model, self.window, self.hop = model, window, hop
        self.recent = deque(maxlen=window)
        self.new = 0  # snippets not scored yet

    def add(self, feature):
        """Add a snippet's features; True when hop snippets wait for a score."""
        self.recent.append(feature)
        self.new += 1
        return self.new == self.hop

    @torch.no_grad()
    def score(self):
        """(float32 score, the number of snippets it goes to) of the snippets waiting: hop = window, their own
        chunk; else the last `window` snippets."""
        n, self.new = self.new, 0
        chunk = list(self.recent)[-n:] if self.hop == self.window else list(self.recent)
        with eval_mode(self.model):
            return np.float32(chunk_score(self.model, torch.stack(chunk)).item()), n

    def restart(self):
        """After a gap: the windows start afresh."""
        self.recent.clear()
        self.new = 0
