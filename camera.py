"""One camera's scoring after the network, shared by live.py (one stream, one run) and watch.py (many cameras,
in segments): each snippet's features go to the causal windows (windows.py); each score goes to the frames of
its snippets and to the events it starts or ends (results.Events), each event with its clip (clips.py); all of
it to the JSON Lines on standard output, to the human log and to a `files` object, which writes it:

    files.rows(first, end, score, start_clock, end_clock, features)
        frames first .. end - 1 (stream-relative) got score (NaN: dropped or lost), their clock times
        start_clock .. end_clock (seconds since the epoch); features: the scored snippets' rows, or None
    files.gap(gap)                 frames that will never be scored (stream.Gap), before their rows
    files.clip_path(frame, clock) -> (where the clip of an event starting at frame is written, its path as
        the records give it)
    files.event_start(start)       an event started (start: its frame, time, utc and score, and its clip_offset
                                   when it has a clip)
    files.event_end(record)        it ended (the event record below)
    files.finish(reason, snippets) the stream ended, for reason

An event record: {"id" and "camera" (watch.py only), "start_frame", "end_frame", "start_time", "end_time",
"peak_score", "start_utc", "end_utc", "clip", "clip_offset" (with a clip: seconds from its first frame to the
event's), "reason"}, reason: "ended" (its frames fell below the threshold),
"gap" (frames dropped or lost), or the stream's end: "end of stream", "stopped", "interrupted", ...
A camera's state (State: streaming, reconnecting, behind or stopped, with its last scored frame's clock time, its
last score and its dropped frames) is kept in one place, which alerts.py publishes and serve.py's page shows.
A gap ends the windows: the snippets before it are scored as at the end of a stream, the windows after it start
afresh. Scores are constant over their frames, so that events start and end where scores do, at frames whose
clock times the latest rows give.
"""
import json
import sys
import threading
import time

import numpy as np
import torch

from dataset import FRAMES_PER_SNIPPET, DataError
from results import Events, event_record, utc_text


BEHIND_SECONDS = 10.0  # a camera that dropped snippets is 'behind' until this much video is scored without a drop


class State:
    """A camera's state, as alerts.Alerts.state publishes it and serve.py's snapshot shows it: current is
    {'state': None (nothing yet) | 'streaming' (frames flow) | 'reconnecting' (its source is being (re)opened) |
    'behind' (dropping snippets for want of speed) | 'stopped' (its source ended, or the process stops),
    'utc': the last scored frame's clock time (utc_text) or None, 'score': the last score or None,
    'dropped_frames': frames dropped or lost so far}. The reader's thread and the main thread change it, the page
    server's thread reads it: each change replaces the dict, never changes it in place. Each change of 'state'
    goes to alerts (an alerts.Alerts or None) under the camera's name there."""

    def __init__(self, name, alerts=None):
        self.name, self.alerts = name, alerts
        self.lock = threading.Lock()
        self.current = {'state': None, 'utc': None, 'score': None, 'dropped_frames': 0}

    def update(self, **changes):
        with self.lock:
            self.change(changes)

    def flowing(self, state):
        """Snippets came: state ('streaming' or 'behind'), except while the source is reopened (from the reader's
        reconnecting() to the reconnection's Gap, the snippets read before it may still come)."""
        with self.lock:
            if self.current['state'] != 'reconnecting':
                self.change({'state': state})

    def change(self, changes):
        """Under the lock."""
        before, self.current = self.current, {**self.current, **changes}
        if self.alerts is not None and self.current['state'] != before['state']:
            self.alerts.state(self.name, self.current)


class Camera:
    """name: the camera's name (watch.py; its JSON Lines and events carry it), or None (live.py); windows: a
    windows.Windows; recorder: a clips.ClipRecorder or None (a reconnection replaces it: set .recorder);
    prefix: the log lines' start ('live.py: ', 'watch.py: garage: '); state: its State, whose alerts get its
    events and scores."""

    def __init__(self, name, fps, windows, threshold, files, recorder, prefix, device, state):
        self.name, self.fps, self.windows, self.files, self.recorder = name, fps, windows, files, recorder
        self.prefix, self.device, self.state = prefix, device, state
        self.behind_until = None   # the clock time until which the camera stays 'behind' after a drop
        self.events = Events(threshold)
        self.pending = []          # (snippet without its frames, features) waiting for a window's score
        self.snippets = 0          # snippets taken
        self.written = 0           # frames given to files.rows
        self.dropped = 0           # of them, frames dropped or lost
        self.last = None           # (frame after the last scored snippet, its score)
        self.clock = {}            # the clock times of the latest rows' first frame and of the frame after them
        self.start = None          # the open event's start record
        self.event_id = None       # its id: <camera's name in the alerts>-<its start_utc's digits>
        self.clip = None           # its clip: (the path written, the path recorded)
        self.clip_offset = None    # seconds from the clip's first frame to the event's (clips.ClipRecorder's)

    # ------------------------------------------------------------------------------------ output
    def line(self, record):
        """A JSON Lines record, flushed at once; watch.py's carry the camera's name after their type."""
        if self.name is not None:
            record = {'type': record['type'], 'camera': self.name, **record}
        print(json.dumps(record), flush=True)

    def log(self, text):
        print(f'{self.prefix}{text}', file=sys.stderr)

    def utc(self, frame):
        return utc_text(self.clock[frame])

    def alert(self, method, *args):
        """alerts.Alerts.<method>(the camera's name there, *args), when there are alerts."""
        if self.state.alerts is not None:
            getattr(self.state.alerts, method)(self.state.name, *args)

    # ------------------------------------------------------------------------------------ input
    def add(self, snippets, rows):
        """A batch of this camera's snippets (stream.Snippet, consecutive) and their features [n, crops, F]
        (numpy float32): score each window they complete."""
        behind = self.behind_until is not None and snippets[-1].end_clock < self.behind_until
        self.state.flowing('behind' if behind else 'streaming')
        for snippet, row, feature in zip(snippets, rows, torch.from_numpy(rows).to(self.device)):
            self.snippets += 1
            self.pending.append((snippet._replace(frames=None), row))  # its pictures are not needed any more
            if self.windows.add(feature):
                self.flush()

    def flush(self):
        """Score the snippets waiting for a window (the newest last), as at the end of a stream."""
        if not self.windows.new:
            return
        score, n = self.windows.score()
        taken, self.pending = self.pending, []
        first, newest = taken[0][0], taken[-1][0]
        assert n == len(taken)
        start, end = FRAMES_PER_SNIPPET * first.index, FRAMES_PER_SNIPPET * (newest.index + 1)
        self.line({'type': 'score', 'start_frame': start, 'end_frame': end, 'start_time': round(start / self.fps, 4),
                   'end_time': round(end / self.fps, 4), 'start_utc': utc_text(first.start_clock),
                   'end_utc': utc_text(newest.end_clock), 'score': float(score),
                   'latency': round(time.monotonic() - newest.decoded_at, 4)})
        self.alert('score', utc_text(newest.end_clock), float(score))
        self.state.update(utc=utc_text(newest.end_clock), score=float(score))
        self.last = (end, score)
        self.rows(start, end, score, first.start_clock, newest.end_clock, np.stack([row for _, row in taken]))

    def gap(self, gap):
        """Frames that will never be scored (stream.Gap): what waits is scored, the windows start afresh, an open
        event ends at the gap."""
        self.flush()
        self.windows.restart()
        self.changes(self.events.end(gap.start_frame), 'gap')
        self.line({'type': 'gap', 'start_frame': gap.start_frame, 'end_frame': gap.end_frame,
                   'start_utc': utc_text(gap.start_clock), 'end_utc': utc_text(gap.end_clock), 'reason': gap.reason})
        self.dropped += gap.end_frame - gap.start_frame
        if gap.reason == 'behind':
            self.behind_until = gap.end_clock + BEHIND_SECONDS
            self.state.update(state='behind', dropped_frames=self.dropped)
        elif gap.reason == 'stopped':  # the second signal's: the camera stops
            self.state.update(dropped_frames=self.dropped)
        else:  # a reconnection's: the frames flow again
            self.state.update(state='streaming', dropped_frames=self.dropped)
        self.files.gap(gap)
        self.rows(gap.start_frame, gap.end_frame, np.nan, gap.start_clock, gap.end_clock, None)

    def finish(self, frames, reason):
        """The end of the stream at frames (counted by its reader), for reason: what waits is scored, the frames
        after the last scored snippet carry its score (none after a gap), the open event ends, files finish."""
        self.flush()
        if frames > self.written and self.clock:
            score = self.last[1] if self.last is not None and self.last[0] == self.written else np.nan
            start_clock = self.clock[self.written]
            self.rows(self.written, frames, score, start_clock, start_clock + (frames - self.written) / self.fps,
                      None)
        self.changes(self.events.end(self.written), reason)
        self.files.finish(reason, self.snippets)
        self.state.update(state='stopped')

    # ------------------------------------------------------------------------------------ scores and events
    def rows(self, first, end, score, start_clock, end_clock, features):
        self.clock = {first: start_clock, end: end_clock}
        self.written = end
        self.files.rows(first, end, score, start_clock, end_clock, features)
        self.changes(self.events.add(first, np.full(end - first, score, np.float32)), 'ended')
        if self.clip is not None:
            self.recorder.advance(self.written)

    def changes(self, changes, reason):
        """The event lines, log lines, clips and files of changes (Events.add's); an event ends for reason."""
        for change in changes:
            if change[0] == 'start':
                self.event_start(*change[1:])
            else:
                self.event_end(*change[1:], reason)

    def event_start(self, frame, score):
        utc = self.utc(frame)
        self.start = {'start_frame': frame, 'start_time': round(frame / self.fps, 4), 'start_utc': utc,
                      'score': score}
        self.event_id = f'{self.state.name}-{"".join(filter(str.isdigit, utc))}'
        if self.name is not None:
            self.start = {'id': self.event_id, 'camera': self.name, **self.start}
        self.line({'type': 'event_start', 'frame': frame, 'time': self.start['start_time'], 'utc': utc,
                   'score': score})
        self.log(f'event at {frame / self.fps:.1f} s, {utc} (score {score:.2f})')
        if self.recorder is not None:
            self.clip = self.files.clip_path(frame, self.clock[frame])
            self.recorder.start(frame, self.clip[0])
            self.clip_offset = round(self.recorder.clip_offset, 4)
        self.files.event_start({**self.start, **({'clip_offset': self.clip_offset} if self.clip else {})})
        self.alert('event_start', {'id': self.event_id, 'camera': self.state.name, **self.start})

    def event_end(self, start, end, peak, reason):
        clip, self.clip = self.clip, None
        if clip is not None:
            try:
                self.recorder.stop(end)
            except DataError as e:  # a clip that cannot be written (a full disk) costs the clip only
                self.log(f'warning: {e}')
                clip = None
        record = {**event_record(start, end, peak, self.fps), 'start_utc': self.start['start_utc'],
                  'end_utc': self.utc(end), 'clip': clip and clip[1],
                  **({'clip_offset': self.clip_offset} if clip else {}), 'reason': reason}
        if self.name is not None:
            record = {'id': self.start['id'], 'camera': self.name, **record}
        self.start = None
        self.line({'type': 'event_end', **record})
        self.log(f'event {start / self.fps:.1f} s - {end / self.fps:.1f} s, {record["start_utc"]} - '
                 f'{record["end_utc"]}, peak {peak:.2f}' + (f', clip {record["clip"]}' if clip else ''))
        self.files.event_end(record)
        self.alert('event_end', {'id': self.event_id, 'camera': self.state.name, **record})
