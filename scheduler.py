"""One network for many cameras (watch.py): each camera's reader (stream.SnippetReader, a thread of its own)
queues its snippets, dropping its own oldest past its max_lag; the scheduler takes them into one batch for the
network in rounds over the cameras, each round one snippet, the oldest waiting, from every camera that has one,
each batch starting from the camera after the last one served. Under overload every camera gets an equal share of the
network: a camera's flood never starves another, and each camera drops only its own snippets.
"""
import time

import numpy as np

from stream import Snippet

IDLE_WAIT = 0.02  # seconds between looks at the queues while none holds anything


class Scheduler:
    """extract(frames) -> features: the network; batch: snippets it takes at a time. Each camera of step()'s
    has .reader (a SnippetReader, or None while its source is being opened), .take(item) for the Gap or End
    that comes next in its queue, and .add(snippets, rows) for its snippets' features."""

    def __init__(self, extract, batch):
        self.extract, self.batch = extract, batch
        self.turn = 0          # the camera the next batch starts from
        self.work = 0.0        # seconds of the network's work

    def step(self, cameras):
        """One batch, and the Gaps and Ends met on the way, or a short wait when nothing waits; True if there was
        work."""
        taken, count, handed, progress = {}, 0, False, True  # taken: camera index -> its snippets, oldest first
        order = [(self.turn + i) % len(cameras) for i in range(len(cameras))]
        while progress and count < self.batch:
            progress = False
            for i in order:
                if count == self.batch:
                    break
                # the camera's turn: its oldest snippet, past the Gaps before it (which cost it no turn)
                while cameras[i].reader is not None:
                    items = cameras[i].reader.get(1, timeout=0)
                    if not items:
                        break
                    if isinstance(items[0], Snippet):
                        taken.setdefault(i, []).extend(items)
                        count, progress = count + 1, True
                        self.turn = (i + 1) % len(cameras)  # the next batch starts after the last camera served
                        break
                    if i in taken:  # a Gap or the End: the camera's snippets before it are scored first
                        self.score(cameras, taken)
                        taken, count = {}, 0
                    cameras[i].take(items[0])
                    handed = True
        if taken:
            self.score(cameras, taken)
        elif not handed:
            time.sleep(IDLE_WAIT)
        return bool(taken) or handed

    def score(self, cameras, taken):
        """The network on every snippet taken, in one batch; each camera's features to it."""
        tick = time.monotonic()
        snippets = [snippet for i in taken for snippet in taken[i]]
        rows = self.extract(np.concatenate([snippet.frames for snippet in snippets]))
        seconds = time.monotonic() - tick
        at = 0
        for i, own in taken.items():
            cameras[i].add(own, rows[at:at + len(own)])
            cameras[i].reader.network_seconds = seconds
            at += len(own)
        self.work += time.monotonic() - tick
