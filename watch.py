"""Watch cameras for weeks: every camera of a YAML configuration in one process, on one network.

    python watch.py cameras.yaml

The configuration (config.py checks every key before anything starts; a mistake is one line and exit status 2)
names the model, the detection defaults, the recording and the cameras (README, "Watching cameras"). Each camera
has its own reader (stream.py: decode, resize, snippets, its own max_lag dropping), opened in a thread of its
own: a source that does not answer yet waits and is tried again, as its `reconnect` says (default: forever,
backing off up to 30 s). One scheduler (scheduler.py) takes the waiting snippets of every camera in turn into
one batch for the network; each camera's features go to its windows, events and clips (camera.py, as live.py's
one camera), written in segments (segments.py) to

    <out_dir>/<camera>/<YYYY-MM-DD>/<HH-MM-SS>.json, .csv, _i3d.npy, -<event HH-MM-SS.mmm>.mp4, events.jsonl
    <out_dir>/index.html   the review page (page.py), rewritten when a segment starts or ends and after an event
Retention (retention.py) deletes the oldest segments by keep_days and keep_gb, at the start and every minute.
With `mqtt`, `webhooks` or `frigate`, each camera's events and states go there (alerts.py); with `http`, the live
page of out_dir is served (serve.py), each camera's state read from its camera.State (a port that cannot be
listened on is one line and exit status 2, before any camera starts).

Standard output: live.py's JSON Lines, each with a "camera" field after its "type"; a camera's last is
{"type": "end", "camera", "frames", "start_utc", "end_utc", "snippets", "dropped_frames", "reason"}. The log
(standard error) names the camera on each line, and never a password of a URL.
At the start, what a hard stop (SIGKILL, power loss) left is repaired first (repair.py).
A file that ends ends its camera; when every camera has ended, watch.py exits 0. SIGINT or SIGTERM: every
camera stops reading, scores what is complete, closes its segment and open event, and the process exits 0
within STOP_SECONDS (a second signal: the snippets still waiting are dropped).
"""
import argparse
import math
import os
import signal
import sys
import threading
import time

import config
import retention
from alerts import Alerts
from backend import load_network
from camera import Camera, State
from cli import pick_device
from clips import ClipRecorder
from dataset import FRAMES_PER_SNIPPET, DataError
from i3d import FEATURE_SIZE as I3D_FEATURE_SIZE
from model import load_checkpoint
from page import write_page
from repair import repair
from scheduler import Scheduler
from segments import SegmentFiles
from serve import PageServer
from stream import LIVE_MAX_LAG, End, SnippetReader, frame_rate, open_retrying, reopenable
from video import Extractor, live_batch_size, small_picture_warning
from windows import Windows

STOP_SECONDS = 8.0  # after a signal, the most the cameras' readers are waited for
RETENTION_EVERY = 60.0  # seconds between retention checks
EXIT_CONFIG = 2     # exit status of a configuration mistake


class Feed:
    """One camera: its source opened in a thread of its own (tried again while its `reconnect` allows), its
    reader, its State (alerts' and the served page's) and its Camera from the first snippet or gap on (a camera
    that never delivers writes nothing)."""

    def __init__(self, name, settings, shared):
        self.name, self.settings, self.shared = name, settings, shared
        self.source = config.redact(settings['source'])
        self.state = State(name, shared['alerts'])
        self.reader = self.camera = None
        self.ended = False
        self.stopping = threading.Event()
        threading.Thread(target=self.connect, daemon=True).start()

    def log(self, text):
        print(f'watch.py: {self.name}: {text}', file=sys.stderr)

    def connect(self):
        settings, shared = self.settings, self.shared
        source, input_format = settings['source'], settings['format']
        reconnect = math.inf if settings['reconnect'] is None else settings['reconnect']
        try:
            container, stream = open_retrying(source, input_format, reconnect if reopenable(source, input_format)
                                              else 0, self.stopping, self.retrying)
            fps = settings['fps'] or frame_rate(stream)
            if not fps > 0:
                container.close()
                raise DataError(f'{self.source}: the stream does not state its frame rate: give the camera an fps')
        except DataError as e:
            self.log(f'{config.redact(str(e))}; the camera ends')
            self.state.update(state='stopped')
            self.ended = True
            return
        live = settings['realtime'] or reopenable(source, input_format)
        max_lag = settings['max_lag'] if live else None
        recorder = None
        if shared['record']['clips']:
            window = settings['test_split_size'] * FRAMES_PER_SNIPPET / fps
            pre_roll = shared['record']['pre_roll']
            recorder = ClipRecorder(stream, fps, pre_roll, pre_roll + (max_lag or LIVE_MAX_LAG) + window + 10,
                                    fragmented=True)
        self.fps = fps
        width, height = stream.codec_context.width, stream.codec_context.height
        self.log(f'{self.source}: {width} x {height} at {fps:g} fps')
        warning = small_picture_warning(self.source, width, height)
        if warning:
            self.log(f'warning: {warning}')
        self.reader = SnippetReader(source, input_format, container, stream, fps, live, settings['realtime'],
                                    max_lag, reconnect, recorder, shared['batch'],
                                    lambda: self.state.update(state='reconnecting'))
        if self.stopping.is_set():
            self.reader.stop()

    def retrying(self, line):
        """open_retrying's log: the source does not answer yet, and is tried again."""
        self.log(config.redact(line))
        self.state.update(state='reconnecting')

    def stop(self, drop=False):
        self.stopping.set()
        if self.reader is not None:
            if drop:
                self.reader.drop_waiting('stopped')
            self.reader.stop()

    def open_camera(self):
        if self.camera is None:
            settings, shared = self.settings, self.shared
            record = shared['record']
            report = {'video': self.source, 'fps': self.fps, 'crops': shared['crops'],
                      'checkpoint': shared['checkpoint'], 'test_split_size': settings['test_split_size'],
                      'threshold': settings['threshold'], 'hop': settings['hop'], 'live': True}
            files = SegmentFiles(record['out_dir'], self.name, report, record['segment_minutes'] * 60,
                                 record['features'], self.log, lambda: write_page(record['out_dir']))
            self.camera = Camera(self.name, self.fps, Windows(shared['model'], settings['test_split_size'],
                                                              settings['hop']),
                                 settings['threshold'], files, self.reader.recorder, f'watch.py: {self.name}: ',
                                 shared['device'], self.state)
        return self.camera

    # ---------------------------------------------------------------------------------- the scheduler's calls
    def add(self, snippets, rows):
        self.open_camera().add(snippets, rows)

    def take(self, item):
        """A Gap, or the End."""
        if isinstance(item, End):
            self.finish(item.frames, item.reason if not item.failed else 'broke', item.reason)
        else:
            camera = self.open_camera()
            camera.gap(item)
            camera.recorder = self.reader.recorder  # after a reconnection, the new stream's

    def finish(self, frames, reason, why):
        """The camera ends at frames for reason ('end of stream', 'stopped', 'broke'; why: the reader's words)."""
        self.ended = True
        camera = self.camera
        if camera is None:
            self.log(f'{config.redact(why)}: ended before its first snippet; nothing written')
            self.state.update(state='stopped')
            return
        camera.finish(max(frames, camera.written), reason)
        report = camera.files.segment.report if camera.files.segment else {}
        camera.line({'type': 'end', 'frames': camera.written, 'start_utc': report.get('start_utc'),
                     'end_utc': report.get('end_utc'), 'snippets': camera.snippets, 'dropped_frames': camera.dropped,
                     'reason': reason})
        self.log(f'{config.redact(why)}: {camera.written} frames, {camera.snippets} snippets')


def enforce_retention(record, feeds):
    """retention.enforce(out_dir, keep_days, keep_gb, active, now, log): the oldest whole segments deleted while
    older than keep_days or while out_dir holds more than keep_gb; never those of active, the stems of the
    segments being written."""
    active = set().union(*(feed.camera.files.active() for feed in feeds if feed.camera is not None))
    retention.enforce(record['out_dir'], record['keep_days'], record['keep_gb'], active, time.time(),
                      lambda line: print(f'watch.py: {line}', file=sys.stderr))


def start_alerts(settings, names):
    """alerts.Alerts when the configuration asks for MQTT, webhooks or Frigate."""
    if not (settings['mqtt'] or settings['webhooks'] or settings['frigate']):
        return None
    return Alerts(settings, names, lambda line: print(f'watch.py: {line}', file=sys.stderr))


def start_server(settings, out_dir, feeds):
    """serve.PageServer of out_dir when the configuration has `http`, listening; its snapshot: each feed's state
    (State.current, a dict replaced on each change, so read whole from the server's thread). DataError (one
    line) when it cannot listen."""
    if settings is None:
        return None
    server = PageServer(out_dir, settings['bind'], settings['port'], settings['token'],
                        lambda: {feed.name: feed.state.current for feed in list(feeds)})
    server.start()
    print(f'watch.py: the live page: http://{settings["bind"]}:{server.port}/', file=sys.stderr)
    return server


def main(args):
    settings = config.load_config(args.config)
    model_settings, record = settings['model'], settings['record']
    device = pick_device(model_settings['device'])
    model = load_checkpoint(model_settings['ckpt']).to(device).eval()
    if model.self_anttention[0].in_features != I3D_FEATURE_SIZE:
        raise DataError(f'{args.config}: model.ckpt: {model_settings["ckpt"]} takes features of size '
                        f'{model.self_anttention[0].in_features}, and I3D\'s are {I3D_FEATURE_SIZE}')
    crops = model_settings['crops']
    network = load_network(model_settings['weights'], device, model_settings['backend'])
    extract = Extractor(network, crops, device)
    batch = model_settings['batch_size'] or live_batch_size(network, crops)
    feeds = []  # filled once the server and the alerts are up
    server = start_server(settings['http'], record['out_dir'], feeds)  # refused: nothing written
    os.makedirs(record['out_dir'], exist_ok=True)
    names = list(settings['cameras'])
    for name in names:  # what a hard stop left, before anything new is written
        repair(record['out_dir'], name, I3D_FEATURE_SIZE, lambda line: print(f'watch.py: {line}', file=sys.stderr))
    shared = {'record': record, 'crops': crops, 'checkpoint': model_settings['ckpt'], 'model': model,
              'device': device, 'batch': batch, 'alerts': start_alerts(settings, names)}
    feeds.extend(Feed(name, settings['cameras'][name], shared) for name in names)
    scheduler = Scheduler(extract, batch)
    signals = []

    def on_signal(signum, _):
        print(f'watch.py: {signal.Signals(signum).name}: finishing what is read', file=sys.stderr)
        for feed in feeds:
            feed.stop(drop=bool(signals))
        signals.append(time.monotonic())

    handlers = {number: signal.signal(number, on_signal) for number in (signal.SIGINT, signal.SIGTERM)}
    retained = -math.inf  # time.monotonic() of the latest retention check
    try:
        while not all(feed.ended for feed in feeds):
            if signals and time.monotonic() - signals[0] > STOP_SECONDS:
                break  # a reader still waiting on its source: its camera ends with what is scored
            if time.monotonic() - retained >= RETENTION_EVERY:
                retained = time.monotonic()
                enforce_retention(record, feeds)
            scheduler.step(feeds)
    finally:
        for feed in feeds:
            if not feed.ended:
                feed.finish(feed.camera.written if feed.camera else 0, 'stopped', 'stopped')
        if shared['alerts'] is not None:
            shared['alerts'].close()
        if server is not None:
            server.close()
        for number, handler in handlers.items():
            signal.signal(number, handler)


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', metavar='CONFIG', help='the YAML configuration: model, detect, record, cameras')
    return parser


if __name__ == '__main__':
    try:
        main(build_parser().parse_args())
    except DataError as e:  # config.ConfigError among them, said before anything starts
        print(f'watch.py: error: {e}', file=sys.stderr)
        sys.exit(EXIT_CONFIG)
