"""The results of a scored video, one format for detect.py, live.py and watch.py: the frame scores' CSV rows (a
row per frame), watch.py's score rows (a row per score, with clock times), the events (maximal runs of frames
scored >= a threshold, found as the scores arrive), their JSON records, and clock time as every output
writes it (ISO 8601 UTC with milliseconds)."""
import datetime
import io

import numpy as np

from dataset import spans

CSV_HEADER = 'frame,time,score\n'
SCORE_ROWS_HEADER = 'start_frame,end_frame,start_time,end_time,start_utc,end_utc,score\n'


def csv_rows(first_frame, scores, fps):
    """The CSV rows of frames first_frame, first_frame + 1, ... scored scores (float32; NaN: no score, an empty
    field): frame, time in seconds (frame / fps, 4 decimals), score (9 digits: every float32 exactly)."""
    return ''.join(f'{i},{i / fps:.4f},{"" if score != score else f"{score:.9g}"}\n'
                   for i, score in enumerate(scores.tolist(), first_frame))


def utc_text(seconds):
    """A time (seconds since the epoch, as time.time()) as every output writes it: '2026-12-05T17:02:28.123Z'."""
    moment = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    return moment.strftime('%Y-%m-%dT%H:%M:%S.') + f'{moment.microsecond // 1000:03d}Z'


def utc_seconds(text):
    """utc_text's inverse: seconds since the epoch. ValueError for a text of another form."""
    if not text.endswith('Z'):
        raise ValueError(f'{text!r}: not a UTC time ending in Z')
    moment = datetime.datetime.fromisoformat(text[:-1]).replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


def score_row(start, end, fps, start_utc, end_utc, score):
    """watch.py's CSV row of one score on frames start .. end - 1 (stream-relative, end exclusive), decoded from
    start_utc to end_utc (utc_text); score NaN (frames dropped or lost): an empty field."""
    return (f'{start},{end},{start / fps:.4f},{end / fps:.4f},{start_utc},{end_utc},'
            f'{"" if score != score else f"{float(score):.9g}"}\n')


def read_columns(path, header, columns, dtype):
    """Columns of a CSV of results that starts with header, as dtype [rows, len(columns)]: an empty field is NaN, a
    last line still being written is left out. ValueError for a file of another form."""
    with open(path, 'rb') as f:
        data = f.read()
    if not data.startswith(header.encode()):
        raise ValueError(f'{path}: not a {header.strip()} CSV')
    rows = data[len(header):data.rfind(b'\n') + 1].replace(b',\n', b',nan\n')
    if not rows:
        return np.empty((0, len(columns)), dtype)
    return np.loadtxt(io.BytesIO(rows), delimiter=',', usecols=columns, dtype=dtype, ndmin=2)


def read_score_rows(path):
    """A score-rows CSV (SCORE_ROWS_HEADER) as (start_frame int64 [n], end_frame int64 [n], score float32 [n],
    NaN where empty); a last line still being written is left out. ValueError for a file of another form."""
    table = read_columns(path, SCORE_ROWS_HEADER, (0, 1, 6), np.float64)
    return table[:, 0].astype(np.int64), table[:, 1].astype(np.int64), table[:, 2].astype(np.float32)


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
