"""The live page of watch.py's output folder, served over HTTP: every camera's state, today's timeline and events
with their clips, earlier days a click away; it follows the files as watch.py writes them, without a reload.

    server = PageServer(out_dir, bind, port, token, snapshot)   # snapshot(): {camera: state dict} (below)
    server.start()      # listening when it returns; DataError (one line) when it cannot
    ...
    server.close()

An aiohttp server in a thread of its own, with its own event loop. Read-only. It serves:
    /                   the page: live.html (its script and style inline; its Content-Security-Policy, sent as a
                        header, lets only that script run, by its hash)
    /state.json?day=D   what the page shows, read again on every request (the page asks every 2 s): D's UTC day
                        (default today), the days with files, and per camera its state from snapshot() (its age
                        computed now), its timeline of day D and its events of day D (below)
    /files/<path>       a file under out_dir (the clips, the segments' JSON and CSV); a path with '..', '.', an
                        empty or encoded-separator part, or that leads out of out_dir (a symlink), is a 404
snapshot() is called from the server's thread: it must be safe to call from there. Its state dicts are those of
alerts.Alerts.state: {'state': 'streaming'|'reconnecting'|'behind'|'stopped', 'utc': the last frame's utc_text or None,
'score': the last score or None, 'dropped_frames': int}.

Bound to a loopback address, no token is needed; any other address needs one (else DataError at construction).
A token, once set, is needed on every address and every path: 'Authorization: Bearer <token>', or a cookie the
server sets (HttpOnly, SameSite=Strict; it holds the token's SHA-256) when a request carries '?token=<token>'
once, answered by a redirect to the same URL without it (303; to a link from another site, a page that refreshes
to it, since browsers withhold a Strict cookie on the redirects of a cross-site navigation; the #fragment is lost).
Anything else gets 401 and no data. Tokens are compared in constant time.

A camera-day's timeline: the score rows of its segments (the day's folder, and the day before's last segment,
which may run past midnight), each row placed at its clock time (the segment's start_utc plus its frames since
the segment's first frame over fps), in DAY_BINS equal spans of the UTC day, each span's maximum (a one-score
spike still shows; a span with no row is a gap), as page.py's timelines are (page.page_value). Files are read
again only when they changed (modification time or size): a poll of today reads the segment being written and
events.jsonl. What does not read (a line still being written, a segment without its JSON) is left out.
"""
import asyncio
import base64
import concurrent.futures
import datetime
import hashlib
import hmac
import html
import ipaddress
import json
import math
import os
import re
import threading
import time
import urllib.parse

import numpy as np
from aiohttp import web

import page
from dataset import DataError
from results import read_score_rows, utc_seconds, utc_text

TEMPLATE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'live.html')
DAY_SECONDS = 24 * 3600
DAY_BINS = 2000                     # a day's timeline: at most this many spans, 43.2 s each
DAY_NAME = re.compile(r'\d{4}-\d{2}-\d{2}')
SEGMENT_NAME = re.compile(r'(\d{2}-\d{2}-\d{2})\.json')
CACHE_SECONDS = 600              # what was read is kept this long after the last request that asked for it
COOKIE = 'anomaly_token'
FILES = '/files/'


def is_loopback(host):
    """Whether an address to bind reaches only this machine."""
    if host == 'localhost':
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:              # a host name: it may be anything
        return False


def day_start(day):
    """Seconds since the epoch of a YYYY-MM-DD's UTC midnight."""
    return datetime.datetime.strptime(day, '%Y-%m-%d').replace(tzinfo=datetime.timezone.utc).timestamp()


def finite(x):
    return x if page.is_number(x) else None


def span_maxima(bins, scores):
    """(each span of the day that has a score, its maximum): bins, each score's span (int64); scores, NaN
    (unscored) counting only where all of a span's are NaN."""
    order = np.argsort(bins, kind='stable')
    bins, scores = bins[order], scores[order]
    if not len(bins):
        return bins, scores
    firsts = np.flatnonzero(np.r_[True, bins[1:] != bins[:-1]])
    return bins[firsts], np.fmax.reduceat(scores, firsts)


def segment_spans(report_path, rows_path, midnight):
    """A segment's (threshold, its rows' spans of the day from midnight, their maxima as the page shows them,
    page.page_value, NaN where unscored): each row placed at its clock time, the segment's start_utc plus its
    frames since the segment's first frame over fps."""
    first_utc, first_frame, fps, threshold = read_report(report_path)
    starts, _, scores = read_score_rows(rows_path)
    seconds = first_utc - midnight + (starts - first_frame) / fps
    keep = (seconds >= 0) & (seconds < DAY_SECONDS)
    bins, maxima = span_maxima((seconds[keep] * DAY_BINS // DAY_SECONDS).astype(np.int64), scores[keep])
    values = [math.nan if np.isnan(v) else page.page_value(v, np.float32(threshold)) for v in maxima]
    return threshold, bins, np.array(values, np.float64)


def read_report(path):
    """(start_utc in seconds, first_frame, fps, threshold) of a segment's report."""
    with open(path, 'rb') as f:
        report = json.load(f)
    if not all(page.is_number(report.get(key)) for key in ('first_frame', 'fps', 'threshold')) or report['fps'] <= 0:
        raise ValueError(f'{path}: not a segment report')
    return utc_seconds(report['start_utc']), report['first_frame'], report['fps'], report['threshold']


def read_events(path):
    """The events of an events.jsonl that read: id, start and end (seconds since the epoch), their utc, peak score,
    reason and the clip's URL relative to the page (or None). A line that does not read is left out."""
    events = []
    with open(path, 'rb') as f:
        for line in f:
            try:
                event = json.loads(line)
                clip = event.get('clip')
                events.append({'id': str(event['id']), 'start_utc': event['start_utc'], 'end_utc': event['end_utc'],
                               'start': utc_seconds(event['start_utc']), 'end': utc_seconds(event['end_utc']),
                               'peak_score': finite(event.get('peak_score')), 'reason': str(event.get('reason')),
                               'clip': FILES[1:] + page.url(clip) if isinstance(clip, str) and clip else None})
            except (ValueError, KeyError, TypeError, AttributeError):
                continue
    return events


class PageServer:
    def __init__(self, out_dir, bind, port, token, snapshot):
        if not token and not is_loopback(bind):
            raise DataError(f'http.bind {bind}: not a loopback address, so the page needs http.token (from the '
                            'environment); set one, or bind 127.0.0.1')
        self.out_dir, self.root = out_dir, os.path.realpath(out_dir)
        self.bind, self.port, self.token, self.snapshot = bind, port, token, snapshot
        # the cookie holds the token's SHA-256, not the token: any token is a valid cookie value, unquoted
        self.cookie = hashlib.sha256(token.encode()).hexdigest() if token else None
        with open(TEMPLATE, 'rb') as f:
            self.html = f.read()
        script = page.SCRIPT.search(self.html.decode())[1]
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        self.policy = (f"default-src 'none'; script-src 'sha256-{digest}'; style-src 'unsafe-inline'; "
                       "connect-src 'self'; media-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
                       "frame-ancestors 'none'")
        self.cache = {}             # (paths, args): (their (mtime_ns, size), what was read, when last asked for)
        self.loop = self.thread = None

    # ------------------------------------------------------------------------------------------ running
    def start(self):
        """Listen on bind:port (port 0: a free one, then self.port) in a thread of its own. DataError, one line,
        when it cannot."""
        ready = concurrent.futures.Future()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.run, args=(ready,), name='page-server', daemon=True)
        self.thread.start()
        try:
            ready.result()
        except Exception as e:
            self.thread.join()
            self.thread = None
            if not isinstance(e, OSError):
                raise
            raise DataError(f'http: cannot listen on {self.bind}:{self.port}: {e.strerror or e}') from None

    def run(self, ready):
        """The server's thread: listen, tell start() (ready), serve until close() stops the loop, end."""
        asyncio.set_event_loop(self.loop)
        app = web.Application(middlewares=[self.authorize])
        app.router.add_get('/', self.serve_page)
        app.router.add_get('/state.json', self.serve_state)
        app.router.add_get(FILES + '{path:.*}', self.serve_file)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=2)
        try:
            self.loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, self.bind, self.port)
            self.loop.run_until_complete(site.start())
            self.port = runner.addresses[0][1]
        except Exception as e:      # OSError: the address or port (start() says so in one line)
            self.loop.run_until_complete(runner.cleanup())
            self.loop.close()
            ready.set_exception(e)
            return
        ready.set_result(None)
        self.loop.run_forever()
        self.loop.run_until_complete(runner.cleanup())
        self.loop.close()

    def close(self):
        """Stop listening, end the connections and the thread. Safe to call twice."""
        if self.thread is not None:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join()
            self.thread = None

    # ------------------------------------------------------------------------------------------ the token
    @staticmethod
    def same(text, secret):
        return text is not None and hmac.compare_digest(text.encode(), secret.encode())

    @web.middleware
    async def authorize(self, request, handler):
        if not self.token:
            return await handler(request)
        header = request.headers.get('Authorization', '')
        if self.same(header[len('Bearer '):] if header.startswith('Bearer ') else None, self.token) \
                or self.same(request.cookies.get(COOKIE), self.cookie):
            return await handler(request)
        if self.same(request.query.get('token'), self.token):
            # the same URL without the token, relative (right behind a reverse proxy that moves the path)
            query = request.rel_url.without_query_params('token').raw_query_string
            target = (request.rel_url.raw_path.rsplit('/', 1)[1] or './') + (f'?{query}' if query else '')
            if request.headers.get('Sec-Fetch-Site') == 'cross-site':
                # a link from another site: the browser would withhold the SameSite=Strict cookie on a redirect
                # of that navigation (and on its reloads); a refresh from this page is a navigation of this site
                refresh = f'<!doctype html><meta http-equiv="refresh" content="0;url={html.escape(target)}">\n'
                response = web.Response(text=refresh, content_type='text/html', headers={
                    'Content-Security-Policy': "default-src 'none'", 'Cache-Control': 'no-store'})
            else:
                response = web.Response(status=303, headers={'Location': target})
            response.set_cookie(COOKIE, self.cookie, httponly=True, samesite='Strict', path='/')
            return response
        return web.Response(status=401, text='401: send the token (Authorization: Bearer, or ?token= once)\n',
                            headers={'WWW-Authenticate': 'Bearer'})

    # ------------------------------------------------------------------------------------------ the endpoints
    async def serve_page(self, request):
        return web.Response(body=self.html, content_type='text/html', charset='utf-8', headers={
            'Content-Security-Policy': self.policy, 'Cache-Control': 'no-store',
            'X-Content-Type-Options': 'nosniff', 'Referrer-Policy': 'no-referrer'})

    async def serve_state(self, request):
        now = time.time()
        today = utc_text(now)[:10]
        day = request.query.get('day', today)
        try:
            if not DAY_NAME.fullmatch(day):
                raise ValueError(day)
            day_start(day)
        except ValueError:          # not a date
            raise web.HTTPNotFound() from None
        data = {'now_utc': utc_text(now), 'today': today, 'day': day, 'days': self.days(today),
                'cameras': self.cameras(day, now)}
        self.forget()
        return web.Response(text=json.dumps(data, allow_nan=False), content_type='application/json',
                            headers={'Cache-Control': 'no-store', 'X-Content-Type-Options': 'nosniff'})

    async def serve_file(self, request):
        path = self.file_path(request.rel_url.raw_path[len(FILES):])
        if path is None:
            raise web.HTTPNotFound()
        # a file is data, never a page of this origin: an HTML file there runs, if at all, in an opaque origin
        return web.FileResponse(path, headers={'X-Content-Type-Options': 'nosniff',
                                               'Content-Security-Policy': 'sandbox allow-scripts'})

    def file_path(self, raw):
        """The real path of a file under out_dir from the percent-encoded path after /files/, or None."""
        try:
            names = [urllib.parse.unquote(part, errors='strict') for part in raw.split('/')]
        except UnicodeDecodeError:
            return None
        if any(name in ('', '.', '..') or re.search(r'[/\\\0]', name) for name in names):
            return None
        path = os.path.realpath(os.path.join(self.root, *names))
        if os.path.commonpath([path, self.root]) != self.root or not os.path.isfile(path):
            return None
        return path

    # ------------------------------------------------------------------------------------------ the files
    def read(self, paths, reader, *args):
        """reader(*paths, *args), or what it returned before if none of the files has changed since (modification
        time, size); None where a file is missing or does not read."""
        try:
            key = tuple((stat.st_mtime_ns, stat.st_size) for stat in map(os.stat, paths))
        except OSError:
            return None
        name = (paths, args)
        if name in self.cache and self.cache[name][0] == key:
            value = self.cache[name][1]
        else:
            try:
                value = reader(*paths, *args)
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                value = None
        self.cache[name] = (key, value, time.monotonic())
        return value

    def forget(self):
        """Drop what no request asked for in CACHE_SECONDS (days no longer viewed, files deleted)."""
        old = time.monotonic() - CACHE_SECONDS
        self.cache = {name: entry for name, entry in self.cache.items() if entry[2] >= old}

    def folders(self):
        """{camera: [its days, YYYY-MM-DD]} of the camera folders in out_dir."""
        cameras = {}
        try:
            entries = sorted(os.scandir(self.out_dir), key=lambda e: e.name)
        except OSError:
            return cameras
        for entry in entries:
            if entry.is_dir():
                try:
                    days = sorted(d.name for d in os.scandir(entry.path) if DAY_NAME.fullmatch(d.name) and d.is_dir())
                except OSError:
                    continue
                if days:
                    cameras[entry.name] = days
        return cameras

    def days(self, today):
        days = {today}.union(*self.folders().values())
        return sorted(days, reverse=True)

    def cameras(self, day, now):
        states = self.snapshot()
        folders = self.folders()
        names = list(states) + [name for name, days in folders.items() if day in days and name not in states]
        return [{'name': name, **self.camera_state(states.get(name), now), **self.camera_day(name, day)}
                for name in names]

    @staticmethod
    def camera_state(state, now):
        if state is None:           # a folder of a camera that this run does not watch
            return {'state': None, 'age': None, 'score': None, 'dropped_frames': None}
        try:
            age = now - utc_seconds(state['utc'])
        except (KeyError, TypeError, AttributeError, ValueError):   # no frame yet
            age = None
        name = state.get('state')
        return {'state': name if isinstance(name, str) else None, 'age': age, 'score': finite(state.get('score')),
                'dropped_frames': finite(state.get('dropped_frames'))}

    def camera_day(self, camera, day):
        """A camera's timeline, threshold and events of a day, from its files."""
        folder = os.path.join(self.out_dir, camera, day)
        start = day_start(day)
        before = os.path.join(self.out_dir, camera, utc_text(start - DAY_SECONDS)[:10])
        segments = [os.path.join(folder, stem) for stem in self.segment_stems(folder)]
        segments[:0] = [os.path.join(before, stem) for stem in self.segment_stems(before)[-1:]]
        spans = [self.read((stem + '.json', stem + '.csv'), segment_spans, start) for stem in segments]
        spans = [segment for segment in spans if segment is not None]
        threshold = spans[-1][0] if spans else None
        timeline = self.timeline(spans) if spans else None
        events = self.read((os.path.join(folder, 'events.jsonl'),), read_events) or []
        return {'threshold': threshold, 'timeline': timeline,
                'events': [{**event, 'start': round(event['start'] - start, 3), 'end': round(event['end'] - start, 3)}
                           for event in events]}  # seconds since midnight, to the millisecond as the utc

    @staticmethod
    def timeline(spans):
        """{'bin_seconds', 'bins': [span of the day], 'scores': [its maximum, None where unscored]} of the
        segments' spans (segment_spans), spans without a row left out. A span that two segments share has the
        higher of their values: on the side of the threshold of the higher score."""
        bins, maxima = span_maxima(np.concatenate([s[1] for s in spans]), np.concatenate([s[2] for s in spans]))
        return {'bin_seconds': DAY_SECONDS / DAY_BINS, 'bins': bins.tolist(),
                'scores': [None if math.isnan(v) else v for v in maxima.tolist()]}

    @staticmethod
    def segment_stems(folder):
        try:
            return sorted(m[1] for m in map(SEGMENT_NAME.fullmatch, os.listdir(folder)) if m)
        except OSError:
            return []
