"""watch.py's files of one camera, in segments (camera.py's `files`), in this layout:

    <out_dir>/<camera>/<YYYY-MM-DD>/<HH-MM-SS>.json      the segment's report (UTC date and start time)
    <out_dir>/<camera>/<YYYY-MM-DD>/<HH-MM-SS>.csv       its scores: a row per score (results.score_row)
    <out_dir>/<camera>/<YYYY-MM-DD>/<HH-MM-SS>_i3d.npy   its features (record.features), growing as .part
    <out_dir>/<camera>/<YYYY-MM-DD>/<HH-MM-SS>-<event HH-MM-SS.mmm>.mp4   the clip of an event started in it
    <out_dir>/<camera>/<YYYY-MM-DD>/events.jsonl         append-only: a line per ended event

A segment starts with the first score whose first frame's clock time is segment_seconds or more after the
segment's own first frame, so that its scores, features and frames go together (a gap, or the frames after the
last snippet, stay in the segment before them); its stem is the UTC time of its
first frame (the next free second when that name is taken: a restart within the same second). Frames and times
count from the camera's first frame of the run, continuous across segments. An event belongs to the segment in
which it started: its record goes to that segment's report and to that day's events.jsonl when it ends. While
a segment is written its report says "ended": false and names the open event ("open_event", its start record),
which is what repair (repair.py) needs after a hard stop.
"""
import datetime
import json
import os
import time

from dataset import FEATURE_SUFFIX, write_atomic
from feature_file import FeatureFile
from i3d import FEATURE_SIZE as I3D_FEATURE_SIZE
from results import SCORE_ROWS_HEADER, score_row, utc_text

JSON_EVERY = 5.0  # seconds between rewrites of a segment's report while nothing happens


def segment_stem(folder, clock):
    """The stem (HH-MM-SS, UTC) of a segment whose first frame has clock time `clock` in folder: the next free
    second when a file of that stem exists."""
    moment = datetime.datetime.fromtimestamp(int(clock), datetime.timezone.utc)
    taken = os.listdir(folder) if os.path.isdir(folder) else []
    while True:
        stem = moment.strftime('%H-%M-%S')
        if not any(name.startswith(stem) and name[len(stem):len(stem) + 1] in '._-' for name in taken):
            return stem
        moment += datetime.timedelta(seconds=1)


def day_folder(out_dir, camera, clock):
    return os.path.join(out_dir, camera, utc_text(clock)[:10])


class Segment:
    """One segment's files: its CSV (appended and flushed row by row), features, report."""

    def __init__(self, out_dir, camera, clock, first_frame, report, features):
        self.folder = day_folder(out_dir, camera, clock)
        os.makedirs(self.folder, exist_ok=True)
        self.stem = os.path.join(self.folder, segment_stem(self.folder, clock))
        self.clock = clock  # the clock time of its first frame
        self.report = {**report, 'features': self.stem + FEATURE_SUFFIX if features else None, 'frames': 0,
                       'snippets': 0, 'max_score': None, 'events': [], 'camera': camera,
                       'start_utc': utc_text(clock), 'end_utc': utc_text(clock), 'first_frame': first_frame,
                       'dropped_frames': 0, 'ended': False, 'end_reason': None, 'open_event': None}
        self.features = FeatureFile(self.stem + FEATURE_SUFFIX, report['crops'], I3D_FEATURE_SIZE) \
            if features else None
        self.csv = open(self.stem + '.csv', 'w')
        self.csv.write(SCORE_ROWS_HEADER)
        self.csv.flush()
        self.json_written = 0.0
        self.write_json()

    def rows(self, first, end, score, start_clock, end_clock, features):
        """A score's row (the features of its snippets first: a hard stop leaves no row without them)."""
        report = self.report
        if features is not None:
            if self.features is not None:
                self.features.append(features)
            report['snippets'] += len(features)
        self.csv.write(score_row(first, end, self.report['fps'], utc_text(start_clock), utc_text(end_clock), score))
        self.csv.flush()
        if score == score:
            report['max_score'] = float(score) if report['max_score'] is None else max(report['max_score'],
                                                                                        float(score))
        report.update(frames=end - report['first_frame'], end_utc=utc_text(end_clock))
        if time.monotonic() - self.json_written > JSON_EVERY:
            self.write_json()

    def close(self, reason):
        """The segment ends for reason (a new segment, or the stream's end): its files closed, the report
        written (an event still open is named in it until it ends)."""
        self.csv.close()
        if self.features is not None:
            self.report['features'] = self.features.close()
        self.report.update(ended=True, end_reason=reason)
        self.write_json()

    def write_json(self):
        write_atomic(self.stem + '.json', lambda f: f.write(json.dumps(self.report, indent=2).encode() + b'\n'))
        self.json_written = time.monotonic()


class SegmentFiles:
    """A camera's files (camera.py's `files` interface), in segments of segment_seconds. report: the fields
    every segment's report shares (video, fps, crops, checkpoint, test_split_size, threshold, hop, live);
    log(line): the camera's log; changed(): called when a segment starts or ends and after an event (the review
    page)."""

    def __init__(self, out_dir, camera, report, segment_seconds, features, log, changed):
        self.out_dir, self.camera, self.report, self.log, self.changed = out_dir, camera, report, log, changed
        self.segment_seconds, self.keep_features = segment_seconds, features
        self.segment = None        # the segment being written
        self.event_segment = None  # the segment in which the open event started
        self.dropping = 0          # frames of the gap whose rows come next

    def active(self):
        """The stems of the segments being written (retention never deletes them)."""
        return {segment.stem for segment in (self.segment, self.event_segment) if segment is not None}

    def gap(self, gap):
        self.dropping = gap.end_frame - gap.start_frame

    def rows(self, first, end, score, start_clock, end_clock, features):
        due = self.segment is not None and start_clock >= self.segment.clock + self.segment_seconds
        if self.segment is None or (due and features is not None):  # a score starts a segment, not a gap
            self.next_segment(first, start_clock)
        self.segment.report['dropped_frames'] += self.dropping
        self.dropping = 0
        self.segment.rows(first, end, score, start_clock, end_clock, features)

    def next_segment(self, first, clock):
        if self.segment is not None:
            self.segment.close('segment')
        self.segment = Segment(self.out_dir, self.camera, clock, first, self.report, self.keep_features)
        self.log(f'segment {os.path.relpath(self.segment.stem, self.out_dir)}')
        self.changed()

    def clip_path(self, frame, clock):
        moment = utc_text(clock)
        path = f'{self.segment.stem}-{moment[11:19].replace(":", "-")}{moment[19:23]}.mp4'
        return path, os.path.relpath(path, self.out_dir)

    def event_start(self, start):
        self.event_segment = self.segment
        self.segment.report['open_event'] = start
        self.segment.write_json()

    def event_end(self, record):
        """The event's record in the report of the segment it started in, and a line in that day's events.jsonl
        (flushed to the disk before the report says so)."""
        segment, self.event_segment = self.event_segment, None
        with open(os.path.join(segment.folder, 'events.jsonl'), 'a') as f:
            f.write(json.dumps(record) + '\n')
            f.flush()
            os.fsync(f.fileno())
        segment.report['events'].append(record)
        segment.report['open_event'] = None
        segment.write_json()
        self.changed()

    def finish(self, reason, snippets):
        if self.segment is not None:
            self.segment.close(reason)
            self.changed()
