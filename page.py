"""The review page of a results folder: one self-contained index.html over the results that detect.py, live.py or
watch.py wrote there, with each result's score over time, its events, and a player that plays the moment an event
(or a point of a timeline) is clicked, or an event's clip.

    python page.py results/videos        # (re)write results/videos/index.html from the folder's files
    python page.py results/watch         # watch.py's folder: index.html (the latest day), <YYYY-MM-DD>.html

Two layouts. detect.py's and live.py's: every <name>.json with its <name>.csv (frame,time,score) in the folder.
watch.py's (segments.py): <camera>/<YYYY-MM-DD>/<HH-MM-SS>.json with its .csv of score rows, one segment each;
index.html covers every camera's segments of the latest day, with clock times (UTC), and links to one page per
earlier day, <YYYY-MM-DD>.html, written the same way (again only when a file of that day changed after it).

The page is page.html with the data embedded as JSON: per result its JSON's fields, what it scored (a video, a
feature file or a stream), what to play (the scored MP4 beside it, else the video) and its timeline: the scores
in at most BINS equal spans of frames, each span's maximum (a one-frame spike still shows), kept as steps where
the value changes. A timeline is read again only when its CSV changed (its modification time or size); else it
is taken from the page written before. A report's relative paths (its video, its events' clips) are relative to
the folder it records as `cwd` (detect.py and live.py record their working folder), else to the working folder
of page.py (reports written before `cwd` was recorded); a watch.py event's clip is relative to the watch folder.
The page links every file by its path relative to the page, so that a copied or served folder plays its files;
a file outside the folder plays from a file:// page only. Files in the folder that are not such results (other
JSON files, a JSON without its CSV, or with a CSV that does not read) are left out.
"""
import argparse
import base64
import hashlib
import json
import math
import os
import re
import time
import urllib.parse

import numpy as np

from cli import run
from dataset import DataError, write_atomic
from results import CSV_HEADER, read_columns, read_score_rows, utc_text

BINS = 2000  # the most steps of a timeline: about a screen's width in pixels, twice over
TEMPLATE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'page.html')
DATA = re.compile(r'<script type="application/json" id="data">(.*?)</script>', re.S)
SCRIPT = re.compile(r'<script>(.*?)</script>', re.S)
FIELDS = ('video', 'fps', 'frames', 'checkpoint', 'threshold', 'max_score', 'events', 'live', 'ended', 'hop',
          'dropped_frames', 'camera', 'start_utc', 'end_utc', 'first_frame', 'end_reason')  # what the page shows
EVENT_FIELDS = ('start_frame', 'end_frame', 'start_time', 'end_time', 'peak_score')
STREAM_EXTENSIONS = ('.ts', '.m2ts', '.mts')  # MPEG transport streams: recorded streams, which browsers do not play
CAMERA = re.compile(r'[a-z0-9_-]+$')
DAY = re.compile(r'\d{4}-\d{2}-\d{2}$')
SEGMENT = re.compile(r'(\d{2}-\d{2}-\d{2})\.json$')


# ---------------------------------------------------------------------------------------------- the files
def is_number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def is_result(report):
    """Whether a JSON document is detect.py's, live.py's or watch.py's report (max_score None or NaN: nothing
    scored yet)."""
    return (isinstance(report, dict) and isinstance(report.get('video'), str)
            and all(is_number(report.get(key)) for key in ('fps', 'frames', 'threshold')) and report['fps'] > 0
            and (report.get('max_score') is None or isinstance(report['max_score'], (int, float)))
            and isinstance(report.get('events'), list)
            and all(isinstance(e, dict) and all(is_number(e.get(key)) for key in EVENT_FIELDS)
                    and isinstance(e.get('clip'), (str, type(None))) for e in report['events']))


def is_segment(report):
    """Whether a result is a watch.py segment's: with its camera, its first frame and its clock time."""
    return (is_result(report) and isinstance(report.get('camera'), str) and is_number(report.get('first_frame'))
            and isinstance(report.get('start_utc'), str))


def read_scores(path):
    """The score column of a frame,time,score CSV, float32, one per row: an empty score (a frame live.py dropped)
    is NaN; a last line still being written is left out. Raises ValueError for a file of another form."""
    return read_columns(path, CSV_HEADER, (2,), np.float32)[:, 0]


def read_row_scores(path, first_frame):
    """A score-rows CSV (watch.py's) as one score per frame from first_frame: each row's score on its frames,
    NaN on frames no row covers. Raises ValueError for a file of another form."""
    starts, ends, scores = read_score_rows(path)
    lengths = np.maximum(ends - starts, 0)
    frames = np.full(max(int(ends.max()) - first_frame, 0) if len(ends) else 0, np.nan, np.float32)
    within = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)  # each frame in its row
    positions = np.repeat(starts - first_frame, lengths) + within
    keep = (positions >= 0) & (positions < len(frames))
    frames[positions[keep]] = np.repeat(scores, lengths)[keep]
    return frames


def span_maxima(scores, spans=BINS):
    """The maximum of each of min(spans, frames) equal spans of frames (an unscored frame, NaN, counts only where
    the whole span is unscored): (each span's first frame, its maximum)."""
    n = min(spans, len(scores))
    starts = np.arange(n) * len(scores) // max(n, 1)
    return starts, np.fmax.reduceat(scores, starts) if n else scores


def page_value(score, threshold):
    """A float32 score for the page: to 4 decimals, or its exact (shortest) digits where rounding would carry it
    across the threshold, which the page compares in float32, as the events were found."""
    short = round(float(score), 4)
    return short if (np.float32(short) >= threshold) == (score >= threshold) else float(str(score))


def timeline(scores, threshold):
    """What the page draws of frame scores: {'frames': frames, 'starts': [first frame of each step], 'scores':
    [its value, page_value, or null where unscored]}: the span maxima, a step only where the value changes."""
    starts, maxima = span_maxima(scores)
    distinct, index = np.unique(maxima, return_inverse=True)  # each value converted once
    distinct = [None if np.isnan(v) else page_value(v, np.float32(threshold)) for v in distinct]
    steps = [(int(start), distinct[i]) for start, i in zip(starts, index)]
    steps = [step for j, step in enumerate(steps) if j == 0 or step[1] != steps[j - 1][1]]
    return {'frames': len(scores), 'starts': [start for start, _ in steps], 'scores': [value for _, value in steps]}


def url(path):
    """A relative path as a URL: '/'-separated, every other character that is not plain escaped."""
    return urllib.parse.quote(path.replace(os.sep, '/'))


def source_kind(video):
    """What a result scored: 'stream' (standard input, a URL, a device, an MPEG transport stream), 'feature file'
    or 'video'."""
    if video == '-' or '://' in video or video.startswith('/dev/') or video.lower().endswith(STREAM_EXTENSIONS):
        return 'stream'
    return 'feature file' if video.lower().endswith('.npy') else 'video'


def player_source(out_dir, name, report, base):
    """(URL relative to out_dir of what the page plays, None) or (None, why there is nothing to play): the scored
    MP4 beside the results, else the video itself (a relative path: relative to base)."""
    if os.path.isfile(os.path.join(out_dir, name + '-scored.mp4')):
        return url(name + '-scored.mp4'), None
    video, kind = report['video'], source_kind(report['video'])
    if kind == 'stream':
        what = 'standard input' if video == '-' else video
        hint = '' if report.get('live') else '; detect.py --video-out writes an MP4 that plays'
        return None, f'nothing to play: {what} is a stream, which browsers do not play{hint}'
    if kind == 'feature file':
        return None, f'nothing to play: {video} is a feature file'
    path = os.path.realpath(os.path.join(base, video))
    if not os.path.isfile(path):
        return None, f'cannot reach {video}: there is no such file ({path})'
    return url(os.path.relpath(path, os.path.realpath(out_dir))), None


def cached_timeline(cached, key, threshold, scores):
    """The timeline of the page written before where its key (the CSV's time and size, ...) is unchanged, else
    timeline(scores()); None where the CSV does not read."""
    if cached and cached.get('key') == key:
        return cached['timeline']
    try:
        return timeline(scores(), threshold)
    except ValueError:
        return None


def entry(out_dir, name, report, points, key, base, files):
    """The page's data of one result: files: the URLs of its JSON, CSV and figure (or None)."""
    report = {field: report[field] for field in FIELDS if field in report}
    if report.get('max_score') is not None and math.isnan(report['max_score']):
        report['max_score'] = None
    for event in report['events']:  # a clip the page cannot reach is named so, not tried
        if event.get('clip') and not os.path.isfile(os.path.join(base, event['clip'])):
            event['clip_missing'] = True
    kind = 'segment' if 'camera' in report else source_kind(report['video'])
    play, why_not = ((None, 'nothing to play but the clips of its events: a camera is a stream')
                     if kind == 'segment' else player_source(out_dir, name, report, base))
    return {'name': name, **files, 'kind': kind, 'base': base, 'play': play, 'why_not': why_not,
            'result': report, 'timeline': points, 'key': key}


def read_report(stem, is_kind):
    """(the report <stem>.json, its timeline's cache key) where it is a report of is_kind with its <stem>.csv;
    else None."""
    try:
        with open(stem + '.json', 'rb') as f:
            report = json.load(f)
        csv = os.stat(stem + '.csv')
    except (OSError, ValueError):
        return None
    if not is_kind(report):
        return None
    return report, [csv.st_mtime_ns, csv.st_size, BINS, report['threshold']]


def read_entry(out_dir, name, cached):
    """The page's data of the result <name>.json in out_dir, or None where it is not a result with its CSV.
    cached: the entry of the page written before, whose timeline is kept if the CSV has not changed since."""
    stem = os.path.join(out_dir, name)
    found = read_report(stem, is_result)
    if found is None:
        return None
    report, key = found
    points = cached_timeline(cached, key, report['threshold'], lambda: read_scores(stem + '.csv'))
    if points is None:
        return None
    cwd = report.get('cwd')
    base = os.path.realpath(cwd if isinstance(cwd, str) and os.path.isabs(cwd) else '.')
    files = {'json': url(name + '.json'), 'csv': url(name + '.csv'),
             'png': url(name + '.png') if os.path.isfile(stem + '.png') else None}
    return entry(out_dir, name, report, points, key, base, files)


def read_segment(out_dir, name, cached):
    """The page's data of the watch.py segment <name>.json (name: <camera>/<day>/<HH-MM-SS>, relative to
    out_dir), or None where it is not a segment with its score rows."""
    stem = os.path.join(out_dir, name)
    found = read_report(stem, is_segment)
    if found is None:
        return None
    report, key = found
    points = cached_timeline(cached, key, report['threshold'],
                             lambda: read_row_scores(stem + '.csv', int(report['first_frame'])))
    if points is None:
        return None
    files = {'json': url(name + '.json'), 'csv': url(name + '.csv'), 'png': None}
    return entry(out_dir, name, report, points, key, os.path.realpath(out_dir), files)


def previous_entries(page_path):
    """{name: entry} of the page written before, if there is one this module wrote."""
    try:
        with open(page_path, encoding='utf-8') as f:
            return {entry['name']: entry for entry in json.loads(DATA.search(f.read())[1])['videos']}
    except (OSError, ValueError, TypeError, KeyError):
        return {}


def watch_days(out_dir):
    """{day: [segment names '<camera>/<day>/<HH-MM-SS>', in order]} of watch.py's layout in out_dir."""
    days = {}
    for camera in sorted(os.listdir(out_dir)):
        if not CAMERA.match(camera) or not os.path.isdir(os.path.join(out_dir, camera)):
            continue
        for day in sorted(os.listdir(os.path.join(out_dir, camera))):
            folder = os.path.join(out_dir, camera, day)
            if DAY.match(day) and os.path.isdir(folder):
                stems = sorted(m[1] for m in map(SEGMENT.match, os.listdir(folder)) if m)
                days.setdefault(day, []).extend(f'{camera}/{day}/{stem}' for stem in stems)
    return {day: names for day, names in days.items() if names}


# ---------------------------------------------------------------------------------------------- the page
def embed(data):
    """JSON for a <script type="application/json"> element: no '<', '>' or '&' in it, so that no '</script>'
    or '<!--' inside a string can end the element."""
    text = json.dumps(data, ensure_ascii=False, separators=(',', ':'), allow_nan=False)
    return text.replace('<', '\\u003c').replace('>', '\\u003e').replace('&', '\\u0026')


def render(data):
    """page.html with data embedded; its Content-Security-Policy lets only its own script run (by its hash)."""
    with open(TEMPLATE, encoding='utf-8') as f:
        template = f.read()
    script = SCRIPT.search(template)[1]
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    return template.replace('{{script_hash}}', digest).replace('{{data}}', embed(data))


def write_html(page_path, out_dir, entries, **fields):
    """Write the page of entries atomically."""
    data = {'folder': os.path.realpath(out_dir), 'written': utc_text(time.time()), **fields, 'videos': entries}
    html = render(data)
    write_atomic(page_path, lambda f: f.write(html.encode()))


def write_watch_page(out_dir):
    """(Re)write the pages of watch.py's folder out_dir: index.html over every camera's segments of the latest
    day, and <day>.html of each earlier day where it is missing or a file of that day changed after it (the page
    of a day whose segments are all gone is removed). Returns the segments of the latest day's page; 0 where
    the latest day holds no segment that reads, and then its page is not written."""
    days = watch_days(out_dir)
    if not days:
        return 0
    latest = max(days)
    pages = {day: 'index.html' if day == latest else f'{day}.html' for day in sorted(days, reverse=True)}
    links = [{'day': day, 'href': href} for day, href in pages.items()]
    for name in os.listdir(out_dir):  # the page of a day that retention removed
        if name.endswith('.html') and DAY.match(name[:-len('.html')]) and name[:-len('.html')] not in days:
            os.remove(os.path.join(out_dir, name))
    for day, href in pages.items():
        page_path = os.path.join(out_dir, href)
        if day != latest and os.path.isfile(page_path) and day_changed(out_dir, day) < os.path.getmtime(page_path):
            continue
        previous = previous_entries(page_path)
        entries = [e for e in (read_segment(out_dir, name, previous.get(name)) for name in days[day])
                   if e is not None]
        if entries:
            write_html(page_path, out_dir, entries, day=day, days=links if day == latest else links[:1])
        if day == latest:
            count = len(entries)
    return count


def day_changed(out_dir, day):
    """The latest modification time of the files of day in every camera's folder."""
    times = [0.0]
    for camera in os.listdir(out_dir):
        folder = os.path.join(out_dir, camera, day)
        if CAMERA.match(camera) and os.path.isdir(folder):
            times += [os.path.getmtime(folder)] + [e.stat().st_mtime for e in os.scandir(folder)]
    return max(times)


def write_page(out_dir):
    """(Re)write <out_dir>/index.html over every result in out_dir, atomically (watch.py's folder:
    write_watch_page). Returns the number of results; with none, nothing is written."""
    if not os.path.isdir(out_dir):
        raise DataError(f'{out_dir}: no such folder')
    if watch_days(out_dir):
        return write_watch_page(out_dir)
    page_path = os.path.join(out_dir, 'index.html')
    previous = previous_entries(page_path)
    names = sorted(f[:-len('.json')] for f in os.listdir(out_dir) if f.endswith('.json'))
    entries = [e for e in (read_entry(out_dir, name, previous.get(name)) for name in names) if e is not None]
    if entries:
        write_html(page_path, out_dir, entries)
    return len(entries)


def main(args):
    count = write_page(args.out_dir)
    if not count:
        raise DataError(f'{args.out_dir}: nothing to show: no result of detect.py or live.py (<name>.json with its '
                        f'<name>.csv) and no segment of watch.py (<camera>/<YYYY-MM-DD>/<HH-MM-SS>.json); '
                        f'nothing written')
    print(f'written: {os.path.join(args.out_dir, "index.html")}, {count} result{"" if count == 1 else "s"}')


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('out_dir', metavar='OUT_DIR', help="a folder of detect.py's, live.py's or watch.py's results")
    run(main, parser.parse_args(), 'page.py')
