"""The review page of a results folder: one self-contained index.html over every <video>.json with its <video>.csv
that detect.py and live.py wrote there, with each video's score over time, its events, and a player that plays the
moment an event (or a point of a timeline) is clicked.

    python page.py results/videos        # (re)write results/videos/index.html from the folder's files

The page is page.html with the data embedded as JSON: per video its JSON's fields, what to play (the scored MP4
beside it, else the video by its path relative to the folder) and its timeline: the CSV's scores in at most BINS
equal spans of frames, each span's maximum (a one-frame spike still shows), kept as steps where the value changes.
A timeline is read again only when its CSV changed (its modification time or size); else it is taken from the
page written before. Paths to videos and clips are relative to the working folder, as detect.py and live.py
write them: write the page from the folder they ran in. Files in the folder that are not such results (other
JSON files, a JSON without its CSV, or with a CSV that does not read) are left out.
"""
import argparse
import base64
import hashlib
import io
import json
import math
import os
import re
import time
import urllib.parse

import numpy as np

from cli import run
from dataset import DataError, write_atomic
from results import CSV_HEADER
from video import VIDEO_EXTENSIONS

BINS = 2000  # the most steps of a timeline: about a screen's width in pixels, twice over
TEMPLATE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'page.html')
DATA = re.compile(r'<script type="application/json" id="data">(.*?)</script>', re.S)
SCRIPT = re.compile(r'<script>(.*?)</script>', re.S)
FIELDS = ('video', 'fps', 'frames', 'checkpoint', 'threshold', 'max_score', 'events', 'live', 'ended', 'hop',
          'dropped_frames')  # the fields of a result that the page shows
EVENT_FIELDS = ('start_frame', 'end_frame', 'start_time', 'end_time', 'peak_score')


# ---------------------------------------------------------------------------------------------- the files
def is_number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def is_result(report):
    """Whether a JSON document is detect.py's or live.py's report (max_score None or NaN: nothing scored yet)."""
    return (isinstance(report, dict) and isinstance(report.get('video'), str)
            and all(is_number(report.get(key)) for key in ('fps', 'frames', 'threshold')) and report['fps'] > 0
            and (report.get('max_score') is None or isinstance(report['max_score'], (int, float)))
            and isinstance(report.get('events'), list)
            and all(isinstance(e, dict) and all(is_number(e.get(key)) for key in EVENT_FIELDS)
                    and isinstance(e.get('clip'), (str, type(None))) for e in report['events']))


def read_scores(path):
    """The score column of a frame,time,score CSV, float32, one per row: an empty score (a frame live.py dropped)
    is NaN; a last line still being written is left out. Raises ValueError for a file of another form."""
    with open(path, 'rb') as f:
        data = f.read()
    if not data.startswith(CSV_HEADER.encode()):
        raise ValueError(f'{path}: not a frame,time,score CSV')
    rows = data[len(CSV_HEADER):data.rfind(b'\n') + 1].replace(b',\n', b',nan\n')
    if not rows:
        return np.empty(0, np.float32)
    return np.loadtxt(io.BytesIO(rows), delimiter=',', usecols=2, dtype=np.float32, ndmin=1)


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


def timeline(csv_path, threshold):
    """What the page draws of a CSV: {'frames': rows, 'starts': [first frame of each step], 'scores': [its
    value, page_value, or null where unscored]}: the span maxima, a step only where the value changes."""
    scores = read_scores(csv_path)
    starts, maxima = span_maxima(scores)
    distinct, index = np.unique(maxima, return_inverse=True)  # each value converted once
    distinct = [None if np.isnan(v) else page_value(v, np.float32(threshold)) for v in distinct]
    steps = [(int(start), distinct[i]) for start, i in zip(starts, index)]
    steps = [step for j, step in enumerate(steps) if j == 0 or step[1] != steps[j - 1][1]]
    return {'frames': len(scores), 'starts': [start for start, _ in steps], 'scores': [value for _, value in steps]}


def url(path):
    """A relative path as a URL: '/'-separated, every other character that is not plain escaped."""
    return urllib.parse.quote(path.replace(os.sep, '/'))


def player_source(out_dir, name, video):
    """(URL relative to out_dir of what the page plays, None) or (None, why there is nothing to play): the scored
    MP4 beside the results, else the video itself (its path relative to the working folder)."""
    if os.path.isfile(os.path.join(out_dir, name + '-scored.mp4')):
        return url(name + '-scored.mp4'), None
    if not video.lower().endswith(VIDEO_EXTENSIONS):
        return None, f'nothing to play: {video} is not a video file (a feature file or a stream)'
    if not os.path.isfile(video):
        return None, f'nothing to play: {video} was not found from the folder the page was written in'
    return url(os.path.relpath(video, out_dir)), None


def read_entry(out_dir, name, cached):
    """The page's data of the result <name>.json in out_dir, or None where it is not a result with its CSV.
    cached: the entry of the page written before, whose timeline is kept if the CSV has not changed since."""
    stem = os.path.join(out_dir, name)
    try:
        with open(stem + '.json', 'rb') as f:
            report = json.load(f)
        csv = os.stat(stem + '.csv')
    except (OSError, ValueError):
        return None
    if not is_result(report):
        return None
    key = [csv.st_mtime_ns, csv.st_size, BINS, report['threshold']]
    if cached and cached.get('key') == key:
        points = cached['timeline']
    else:
        try:
            points = timeline(stem + '.csv', report['threshold'])
        except ValueError:
            return None
    report = {field: report[field] for field in FIELDS if field in report}
    if report.get('max_score') is not None and math.isnan(report['max_score']):
        report['max_score'] = None
    play, why_not = player_source(out_dir, name, report['video'])
    return {'name': name, 'json': url(name + '.json'), 'csv': url(name + '.csv'),
            'png': url(name + '.png') if os.path.isfile(stem + '.png') else None, 'play': play, 'why_not': why_not,
            'result': report, 'timeline': points, 'key': key}


def previous_entries(page_path):
    """{name: entry} of the page written before, if there is one this module wrote."""
    try:
        with open(page_path, encoding='utf-8') as f:
            return {entry['name']: entry for entry in json.loads(DATA.search(f.read())[1])['videos']}
    except (OSError, ValueError, TypeError, KeyError):
        return {}


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


def write_page(out_dir):
    """(Re)write <out_dir>/index.html over every result in out_dir, atomically. Returns the number of results."""
    if not os.path.isdir(out_dir):
        raise DataError(f'{out_dir}: no such folder')
    page_path = os.path.join(out_dir, 'index.html')
    previous = previous_entries(page_path)
    names = sorted(f[:-len('.json')] for f in os.listdir(out_dir) if f.endswith('.json'))
    entries = [e for e in (read_entry(out_dir, name, previous.get(name)) for name in names) if e is not None]
    data = {'title': os.path.basename(os.path.abspath(out_dir)), 'written': time.strftime('%Y-%m-%d %H:%M:%S'),
            # the working folder seen from out_dir, and out_dir from it: where the clips of live events are
            'to_cwd': url(os.path.relpath('.', out_dir)), 'from_cwd': url(os.path.relpath(out_dir)),
            'videos': entries}
    html = render(data)
    write_atomic(page_path, lambda f: f.write(html.encode()))
    return len(entries)


def main(args):
    count = write_page(args.out_dir)
    print(f'written: {os.path.join(args.out_dir, "index.html")}, {count} video{"" if count == 1 else "s"}'
          + ('' if count else ' (no <video>.json with its <video>.csv in the folder)'))


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('out_dir', metavar='OUT_DIR', help="a folder of detect.py's or live.py's results")
    run(main, parser.parse_args(), 'page.py')
