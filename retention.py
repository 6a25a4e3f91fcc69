"""Retention of watch.py's recordings: the oldest whole segments are deleted by age and by size (enforce).

The recordings are the files of watch.py's layout:
    <out_dir>/<camera>/<YYYY-MM-DD>/<HH-MM-SS>.json, .csv, _i3d.npy, -<event time>.mp4 ...   a segment's files
    <out_dir>/<camera>/<YYYY-MM-DD>/events.jsonl                                            the day's events
A segment is every file of its day folder whose name starts with its stem (HH-MM-SS) followed by '.', '_' or
'-' (a file being written, .tmp or .part, included). Its age is its day folder's date and its stem's time (UTC):
never a file time, which a copy or a restore changes.
- Every segment that started more than keep_days ago is deleted; then, oldest first over every camera, segments
  are deleted while the recordings take more than keep_gb GB (10^9 bytes; None: no size limit).
- A segment in `active` (those being written) is never deleted, whatever its age or the size.
- A day's events.jsonl belongs to its day: it is deleted with the day's last segment (and the day folder with it
  when nothing else is left in it), never while a segment of its day remains. A day folder that holds no segment
  at all is left alone (its first segment may be about to start).
- Files that are not recordings (the review page, a camera or day folder whose name is not one, anything a
  person put there) are neither counted nor deleted: keep_gb bounds what watch.py records, and retention never
  touches what it did not write. Folders and links to folders are skipped; a link is deleted, not followed.
Each deletion is one line of the log; a file that cannot be deleted is one line too, and its segment is kept.
"""
import calendar
import datetime
import os
import re
from typing import NamedTuple

from config import CAMERA_NAME

SEGMENT_FILE = re.compile(r'(\d\d)-(\d\d)-(\d\d)[._-]')
EVENTS = 'events.jsonl'
DAY_SECONDS = 86400
GB = 1e9


class Segment(NamedTuple):
    start: float      # UTC seconds: its day's date and its stem's time
    path: str         # <out_dir>/<camera>/<YYYY-MM-DD>/<HH-MM-SS>
    files: dict       # {path: bytes} of its files
    size: int         # bytes


def enforce(out_dir, keep_days, keep_gb, active, now, log):
    """Delete the segments under out_dir that the rules (the module's docstring) say go, oldest first.

    keep_days: a positive number of days; keep_gb: a positive number of GB, or None; active: the paths
    <out_dir>/<camera>/<YYYY-MM-DD>/<HH-MM-SS> of the segments being written; now: UTC seconds (time.time());
    log(line): the human log. Returns the paths (as active's) of the segments deleted, oldest first."""
    segments, events = recordings(out_dir)
    active = {os.path.abspath(path) for path in active}
    left = {}  # day folder -> its segments not deleted
    for segment in segments:
        left[os.path.dirname(segment.path)] = left.get(os.path.dirname(segment.path), 0) + 1
    total = sum(segment.size for segment in segments) + sum(events.values())
    deleted = []
    for segment in segments:
        if os.path.abspath(segment.path) in active:
            continue
        if segment.start < now - keep_days * DAY_SECONDS:
            why = f'older than {keep_days:g} days'
        elif keep_gb is not None and total > keep_gb * GB:
            why = f'the recordings took {total / GB:.3g} GB, over keep_gb {keep_gb:g}'
        else:
            break  # the rest are younger, and the size is within bounds
        failed = delete(segment.files, log)
        total -= segment.size - sum(segment.files[path] for path in failed)
        if failed:
            continue
        day = os.path.dirname(segment.path)
        left[day] -= 1
        also = []
        if not left[day]:
            if day in events and not delete([os.path.join(day, EVENTS)], log):
                total -= events[day]
                also.append(EVENTS)
            try:
                os.rmdir(day)
                also.append('the folder')
            except OSError:  # files that are not recordings stay, and their folder with them
                pass
        with_day = f"; the day's last segment: {' and '.join(also)} too" if also else ''
        log(f'retention: deleted {os.path.relpath(segment.path, out_dir)} ({len(segment.files)} files, '
            f'{segment.size / 1e6:.1f} MB{with_day}): {why}')
        deleted.append(segment.path)
    return deleted


def recordings(out_dir):
    """(the segments under out_dir, oldest first; {day folder: its events.jsonl's size})."""
    segments, events = [], {}
    if not os.path.isdir(out_dir):  # nothing recorded yet
        return segments, events
    for camera in folders(out_dir, CAMERA_NAME.fullmatch):
        for day in folders(camera, lambda name: day_start(name) is not None):
            stems = {}
            for entry in os.scandir(day):
                if entry.is_dir():
                    continue
                size = entry.stat(follow_symlinks=False).st_size
                if entry.name == EVENTS:
                    events[day] = size
                elif SEGMENT_FILE.match(entry.name):
                    files = stems.setdefault(entry.name[:8], [])
                    files.append((entry.path, size))
            start = day_start(os.path.basename(day))
            for stem, files in stems.items():
                hours, minutes, seconds = map(int, stem.split('-'))
                segments.append(Segment(start + hours * 3600 + minutes * 60 + seconds, os.path.join(day, stem),
                                        dict(files), sum(size for _, size in files)))
    return sorted(segments, key=lambda segment: (segment.start, segment.path)), events


def folders(parent, named):
    """The folders in parent (not links to folders) whose names `named` accepts."""
    return sorted(entry.path for entry in os.scandir(parent)
                  if entry.is_dir(follow_symlinks=False) and named(entry.name))


def day_start(name):
    """A day folder's name, YYYY-MM-DD, as the UTC seconds of its midnight; None for any other name."""
    try:
        day = datetime.date.fromisoformat(name) if re.fullmatch(r'\d{4}-\d\d-\d\d', name) else None
    except ValueError:  # 2026-02-30
        return None
    return None if day is None else calendar.timegm(day.timetuple())


def delete(paths, log):
    """Remove the files at paths (those already gone count as removed); the paths of those that stay, each said
    in the log."""
    failed = []
    for path in paths:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
        except OSError as e:
            log(f'retention: cannot delete {path} ({e.strerror}); its segment is kept')
            failed.append(path)
    return failed
