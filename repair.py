"""The repair, at watch.py's start, of what a hard stop (SIGKILL, power loss) left of a camera's segments
(segments.py's layout), before anything new is written:

- a segment whose report says "ended": false gets its report rebuilt from the scores on disk (frames, snippets,
  max_score, dropped_frames, end_utc; a last line cut short is left out), "ended": true, "end_reason":
  "interrupted"; its growing feature file is given the rows that are whole and renamed into place;
- an event left open (a report's "open_event") is ended at the last scored frame of the camera's latest
  segment, "reason": "interrupted", its peak the highest score from its start; its clip (a fragmented MP4,
  still named '.<name>.part', its clip_offset kept) is renamed into place, playable up to the kill; the record
  goes to its segment's report and to that day's events.jsonl.
The scores (CSV) and events.jsonl are never rewritten: every byte flushed before the kill stays.
"""
import glob
import json
import os

import numpy as np

from dataset import FEATURE_SUFFIX, FRAMES_PER_SNIPPET, write_atomic
from feature_file import NPY_HEADER, npy_header
from results import SCORE_ROWS_HEADER, event_record, read_score_rows


def camera_reports(out_dir, camera):
    """[(stem, report)] of the camera's segments, oldest first (day folders and stems sort as times)."""
    found = []
    for path in sorted(glob.glob(os.path.join(glob.escape(out_dir), glob.escape(camera), '*', '*.json'))):
        try:
            with open(path) as f:
                found.append((path[:-len('.json')], json.load(f)))
        except (OSError, ValueError):  # a report cut short cannot be: they are written atomically
            continue
    return found


def last_utc(stem):
    """The end_utc of the last whole row of a segment's scores, or None."""
    with open(stem + '.csv', 'rb') as f:
        data = f.read()
    lines = data[len(SCORE_ROWS_HEADER):data.rfind(b'\n') + 1].splitlines()
    return lines[-1].decode().split(',')[5] if lines else None


def whole_features(stem, crops, feature_size):
    """A growing '<stem>_i3d.npy.part' given its whole rows, its header rewritten, renamed into place; the path,
    or None when there is none (or no whole row)."""
    part = stem + FEATURE_SUFFIX + '.part'
    if not os.path.exists(part):
        return None
    row = crops * feature_size * np.dtype(np.float32).itemsize
    rows = max(0, os.path.getsize(part) - NPY_HEADER) // row
    if not rows:
        os.remove(part)
        return None
    with open(part, 'r+b') as f:
        f.write(npy_header((rows, crops, feature_size)))
        f.truncate(NPY_HEADER + rows * row)
    os.replace(part, stem + FEATURE_SUFFIX)
    return stem + FEATURE_SUFFIX


def rebuilt(stem, report, feature_size):
    """The report of a segment cut short, from its scores on disk."""
    starts, ends, scores = read_score_rows(stem + '.csv')
    scored = scores == scores
    report = {**report, 'ended': True, 'end_reason': 'interrupted'}
    if len(ends):
        report.update(frames=int(ends[-1]) - report['first_frame'], end_utc=last_utc(stem),
                      snippets=int(((ends - starts)[scored] // FRAMES_PER_SNIPPET).sum()),
                      max_score=float(scores[scored].max()) if scored.any() else None,
                      dropped_frames=int((ends - starts)[~scored].sum()))
    if report['features']:
        report['features'] = whole_features(stem, report['crops'], feature_size)
    return report


def ended_event(out_dir, start, segments):
    """The record of an event left open at start (its start record), ended at the last scored frame of the
    segments from its own on ([(stem, report)]), its peak the highest score since its start."""
    end, end_utc, peak = start['start_frame'], start['start_utc'], start['score']
    for stem, _ in segments:
        starts, ends, scores = read_score_rows(stem + '.csv')
        keep = (starts >= start['start_frame']) & (scores == scores)
        if keep.any():
            end, end_utc, peak = int(ends[keep][-1]), last_utc(stem), max(peak, float(scores[keep].max()))
    fps = segments[0][1]['fps']
    clips = glob.glob(os.path.join(glob.escape(os.path.dirname(segments[0][0])),
                                   f'.{glob.escape(os.path.basename(segments[0][0]))}-*.mp4.part'))
    clip = None
    if clips:
        clip = os.path.join(os.path.dirname(clips[0]), os.path.basename(clips[0])[1:-len('.part')])
        os.replace(clips[0], clip)
        clip = os.path.relpath(clip, out_dir)
    offset = {'clip_offset': start['clip_offset']} if clip and 'clip_offset' in start else {}
    return {'id': start['id'], 'camera': start['camera'],
            **event_record(start['start_frame'], end, peak, fps), 'start_utc': start['start_utc'],
            'end_utc': end_utc, 'clip': clip, **offset, 'reason': 'interrupted'}


def repair(out_dir, camera, feature_size, log):
    """Repair the camera's segments left by a hard stop (the module's docstring); log(line) names each."""
    segments = camera_reports(out_dir, camera)
    for i, (stem, report) in enumerate(segments):
        if report['ended'] and not report.get('open_event'):
            continue
        if not report['ended']:
            report = rebuilt(stem, report, feature_size)
            log(f'{os.path.relpath(stem, out_dir)}: cut short by a hard stop, repaired')
        if report.get('open_event'):
            event = ended_event(out_dir, report['open_event'], segments[i:])
            with open(os.path.join(os.path.dirname(stem), 'events.jsonl'), 'a') as f:
                f.write(json.dumps(event) + '\n')
            report = {**report, 'events': report['events'] + [event], 'open_event': None}
            log(f'{os.path.relpath(stem, out_dir)}: its open event ended "interrupted" at frame {event["end_frame"]}')
        write_atomic(stem + '.json', lambda f: f.write(json.dumps(report, indent=2).encode() + b'\n'))
