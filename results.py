"""The results of a scored video, one format for detect.py and live.py: the frame scores' CSV rows, the events
(maximal runs of frames scored >= a threshold, found as the scores arrive) and their JSON records."""
from dataset import spans

CSV_HEADER = 'frame,time,score\n'


def csv_rows(first_frame, scores, fps):
    """The CSV rows of frames first_frame, first_frame + 1, ... scored scores (float32; NaN: no score, an empty
    field): frame, time in seconds (frame / fps, 4 decimals), score (9 digits: every float32 exactly)."""
    return ''.join(f'{i},{i / fps:.4f},{"" if score != score else f"{score:.9g}"}\n'
                   for i, score in enumerate(scores.tolist(), first_frame))


def event_record(start, end, peak, fps):
    """An event's JSON record: frames start to end (exclusive), times in seconds, its peak score."""
    return {'start_frame': start, 'end_frame': end, 'start_time': round(start / fps, 4),
            'end_time': round(end / fps, 4), 'peak_score': peak}


class Events:
    """Events found block by block as frame scores arrive: each run of frames scored >= threshold, from its first
    frame to the first frame after it, with its highest score. A run that reaches the end of a block stays open
    until a later block (or end()) closes it, so the events of a video fed in any blocks are those of the whole."""

    def __init__(self, threshold):
        self.threshold = threshold
        self.open = None  # [first frame, peak score] of the run still open, if any

    def add(self, first_frame, scores):
        """Frames first_frame, first_frame + 1, ... scored scores (NaN: unscored, never part of an event).
        Returns what they change, in order: ('start', frame, score) when an event starts, ('end', start, end,
        peak) when one ends."""
        changes = []
        if self.open is not None and len(scores) and not scores[0] >= self.threshold:
            changes += self.end(first_frame)  # the open run ended with the last block
        for start, end in spans(scores >= self.threshold):
            peak = float(scores[start:end].max())
            if self.open is None:
                changes.append(('start', first_frame + start, float(scores[start])))
                self.open = [first_frame + start, peak]
            self.open[1] = max(self.open[1], peak)
            if end < len(scores):
                changes += self.end(first_frame + end)
        return changes

    def end(self, frame):
        """Close the open event, if any, at frame (the first frame after it): [('end', start, frame, peak)] or []."""
        if self.open is None:
            return []
        (start, peak), self.open = self.open, None
        return [('end', start, frame, peak)]


def find_events(scores, threshold):
    """The events of a whole video's frame scores: [(start, end, peak score)], end exclusive."""
    events = Events(threshold)
    changes = events.add(0, scores) + events.end(len(scores))
    return [tuple(change[1:]) for change in changes if change[0] == 'end']


def max_score(scores):
    """The highest score, NaN (unscored) aside; NaN when none is scored."""
    scored = scores[scores == scores]
    return float(scored.max()) if len(scored) else float('nan')
