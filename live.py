"""Live detection: score a camera, a network stream, a pipe or a file as its frames arrive.

    python live.py rtsp://192.0.2.7/stream1 --ckpt ckpt/mine.pth --weights i3d_r50_kinetics.pth --reconnect 10
    ffmpeg -i rtsp://192.0.2.7/stream1 -c copy -f mpegts - | python live.py - --ckpt ckpt/mine.pth --weights W
    python live.py /dev/video0 --format v4l2 --ckpt ckpt/mine.pth --weights W --crops 1 --hop 1 --clips
    python live.py clip.mp4 --realtime --ckpt ckpt/mine.pth --weights W --hop 4

The features are extract_features.py's (video.py), computed snippet by snippet as the frames arrive, batched
when several snippets wait on PyTorch (on OpenVINO one snippet at a time: video.live_batch_size). The scores
are the test protocol's on windows of --test-split-size snippets (protocol.chunk_score: the model on each crop
of the window, the mean over crops): every --hop new snippets, the window of the last --test-split-size
snippets is scored and its score goes to the hop new snippets. With
hop = window (the default) the windows are the protocol's chunks, the last shorter one scored as the protocol
scores it, so a finished stream's scores and events are detect.py's on the same video. No future frame is ever
used and no score is ever revised. A gap (frames dropped to keep up, or lost to a reconnection) ends the
window: the snippets before it are scored as at the end of a stream, and the windows after it start afresh.

Standard output: JSON Lines, one object per line, flushed at once (the log goes to standard error):
    {"type": "score", "start_frame", "end_frame", "start_time", "end_time", "start_utc", "end_utc", "score",
     "latency"}
    {"type": "event_start", "frame", "time", "utc", "score"}
    {"type": "event_end", "start_frame", "end_frame", "start_time", "end_time", "peak_score", "start_utc",
     "end_utc", "clip", "clip_offset" (with a clip: seconds from its first frame to the event's)}
    {"type": "gap", "start_frame", "end_frame", "start_utc", "end_utc", "reason"}
    {"type": "end", "frames", "start_utc", "end_utc", "snippets", "dropped_frames", "realtime_factor", "reason"}
Frames are counted from the stream's first, end frames are exclusive, times are frame / fps seconds. Clock
times (utc, start_utc, end_utc: ISO 8601 UTC with milliseconds, '2026-12-05T17:02:28.123Z') are those of the
frames (stream.py): for a file played with --realtime, the start of the run plus the frame's time; else the
wall clock when the frame was decoded; an end_utc is its last frame's, plus a frame. latency:
seconds from the decoding of the newest snippet's last frame to the line. realtime_factor: how many times real
time the slower of the two threads goes (the reader's video over its busy time, the network's snippets over its
busy time); above 1, nothing needs dropping for want of speed.

Written to --out-dir as the stream goes (named after --name: the file's stem, else 'stream'):
    <name>.csv        frame,time,score, appended and flushed as scores come (a dropped frame: an empty score)
    <name>.json       detect.py's report, plus hop, dropped_frames, live, ended, start_utc, end_utc and each
                      event's clip, start_utc and end_utc;
                      rewritten atomically after each event, every few seconds, and at the end
    <name>_i3d.npy    the features of the snippets scored, [T, crops, 2048], written at the end (a growing
                      <name>_i3d.npy.part until then)
    clips/<name>-<start time>s.mp4   with --clips: each event, from --pre-roll seconds before it
    index.html        the review page of every result in the folder (page.py), after each event and at the end
With --mqtt HOST[:PORT] (topics under --mqtt-prefix), the events, the stream's state and Home Assistant discovery
go to that MQTT broker as watch.py's do (alerts.py), the camera named as the outputs are.
A name whose CSV, JSON or features are in --out-dir already (an earlier run's) is refused before any work:
give another --name, or --overwrite to replace them.
SIGINT or SIGTERM stops reading, scores what is complete, ends the open event and writes everything; a second
one drops the snippets still waiting for the network. Exit status: 0, or 1 when the source broke (a URL or a
device that ended or failed, after --reconnect tries), with one line saying why. A source that ends or fails
before its first snippet writes nothing (a video shorter than a snippet is refused, as detect.py refuses it).
"""
import argparse
import json
import math
import os
import signal
import sys
import threading
import time

import numpy as np

import alerts
from backend import load_network
from camera import Camera, State
from cli import check_out_dir, check_window, run
from dataset import FEATURE_SUFFIX, FRAMES_PER_SNIPPET, DataError, write_atomic
from feature_file import FeatureFile
from i3d import FEATURE_SIZE as I3D_FEATURE_SIZE
from model import load_checkpoint
from page import write_page
from results import CSV_HEADER, csv_rows, utc_text
from stream import (BACKLOG, LIVE_MAX_LAG, End, Gap, SnippetReader, check_input_format, frame_rate, open_retrying,
                    reopenable)
from video import (Extractor, add_extraction_arguments, extraction_device, live_batch_size, small_picture_warning,
                   too_short)
from windows import Windows

JSON_EVERY = 5.0          # seconds between rewrites of the JSON while nothing happens
STATUS_EVERY = 30.0       # seconds between the log's status lines


# ---------------------------------------------------------------------------------------------- files
class RunFiles:
    """What the run writes as scores come (camera.py's files): the CSV, the JSON report, the features, the
    clips' paths."""

    def __init__(self, args, name, fps, crops):
        self.args, self.fps = args, fps
        self.stem = os.path.join(args.out_dir, name)
        self.clips = os.path.join(args.out_dir, 'clips', name)
        self.report = {'video': args.source, 'features': self.stem + FEATURE_SUFFIX, 'fps': fps, 'frames': 0,
                       'snippets': 0, 'crops': crops, 'checkpoint': args.ckpt, 'test_split_size': args.test_split_size,
                       'threshold': args.threshold, 'max_score': None, 'events': [], 'hop': args.hop,
                       'dropped_frames': 0, 'live': True, 'ended': False, 'start_utc': None, 'end_utc': None,
                       'cwd': os.getcwd()}
        self.json_written = 0.0    # time.monotonic() of the last JSON
        os.makedirs(args.out_dir, exist_ok=True)
        self.features = FeatureFile(self.stem + FEATURE_SUFFIX, crops, I3D_FEATURE_SIZE)
        self.csv = open(self.stem + '.csv', 'w')
        self.csv.write(CSV_HEADER)
        self.csv.flush()
        self.write_json()

    def rows(self, first, end, score, start_clock, end_clock, features):
        """The CSV's rows of frames first .. end - 1 (score NaN: an empty field), the features."""
        self.csv.write(csv_rows(first, np.full(end - first, score, np.float32), self.fps))
        self.csv.flush()
        if features is not None:
            self.features.append(features)
        report = self.report
        if score == score:
            best = report['max_score']
            report['max_score'] = float(score) if best is None else max(best, float(score))
        report.update(frames=end, start_utc=report['start_utc'] or utc_text(start_clock), end_utc=utc_text(end_clock))
        if time.monotonic() - self.json_written > JSON_EVERY:
            self.write_json()

    def gap(self, gap):
        self.report['dropped_frames'] += gap.end_frame - gap.start_frame

    def clip_path(self, frame, clock):
        path = f'{self.clips}-{frame / self.fps:.2f}s.mp4'
        return path, path

    def event_start(self, start):
        self.write_json(page=True)

    def event_end(self, record):
        self.report['events'].append({k: v for k, v in record.items() if k != 'reason'})
        self.write_json(page=True)

    def finish(self, reason, snippets):
        self.csv.close()
        self.report.update(snippets=snippets, ended=True, features=self.features.close())
        self.write_json(page=True)

    def write_json(self, page=False):
        """The JSON report; with page, the folder's review page too (after an event and at the end)."""
        write_atomic(self.stem + '.json', lambda f: f.write(json.dumps(self.report, indent=2).encode() + b'\n'))
        self.json_written = time.monotonic()
        if page and not self.args.no_page:
            write_page(self.args.out_dir)


# ---------------------------------------------------------------------------------------------- the run
class Scorer:
    """The main thread's work: the network on the snippets as they come, each batch's features to the camera
    (camera.py: the windows' scores, the events, the clips, the files).

    The camera and its files are made by open_camera() at the first snippet or gap: a source that ends or fails
    before its first snippet leaves nothing written."""

    def __init__(self, extract, open_camera, fps, max_lag, state):
        self.extract, self.open_camera, self.fps, self.max_lag, self.state = extract, open_camera, fps, max_lag, state
        self.camera = None
        self.work = 0.0  # seconds of the network's work
        self.network_seconds = 0.0  # the latest batch's

    def run(self, reader, batch, stopping):
        """Take what reader queues until its End (or a stop while it waits on a silent source); the End."""
        status_at = time.monotonic()
        while True:
            items = reader.get(batch, timeout=1.0)
            if not items and stopping.is_set():
                return End(self.camera.written if self.camera else 0, 'stopped', False)
            if items and isinstance(items[0], End):
                return items[0]
            if items and self.camera is None:
                self.camera = self.open_camera()
            if items and isinstance(items[0], Gap):
                self.gap(items[0])
                self.camera.recorder = reader.recorder  # after a reconnection, the new stream's
            elif items:
                self.score(items)
                reader.network_seconds = self.network_seconds
            if time.monotonic() - status_at > STATUS_EVERY and self.camera is not None:
                status_at = time.monotonic()
                self.status(reader)

    def status(self, reader):
        """The log's status line: the frames written so far are those scored and those dropped (or lost)."""
        camera = self.camera
        scored = camera.written - camera.dropped
        print(f'live.py: {camera.written / self.fps:.0f} s written: {scored / self.fps:.0f} s scored '
              f'({scored // FRAMES_PER_SNIPPET} snippets), {camera.dropped / self.fps:.0f} s dropped; '
              f'{len(camera.files.report["events"])} events'
              f'{f"; decoding {max(0.0, reader.behind):.0f} s behind real time" if reader.live else ""}',
              file=sys.stderr)

    def score(self, snippets):
        """Extract a batch of snippets, and score each window they complete."""
        tick = time.monotonic()
        rows = self.extract(np.concatenate([snippet.frames for snippet in snippets]))
        self.network_seconds = time.monotonic() - tick
        self.camera.add(snippets, rows)
        self.work += time.monotonic() - tick

    def gap(self, gap):
        """Frames never scored: the snippets before are scored as at an end, the windows start afresh."""
        self.camera.gap(gap)
        if gap.reason == 'behind':
            print(f'live.py: {(gap.end_frame - gap.start_frame) / self.fps:.1f} s of video dropped (frames '
                  f'{gap.start_frame} - {gap.end_frame}): the network is more than {self.max_lag:g} s behind real '
                  f'time', file=sys.stderr)

    def realtime_factor(self, reader):
        """How many times real time the run goes: the slower of its two threads, which run side by side (the
        reader: the video it decoded over its busy time; the network: the snippets it scored over its busy
        time). Above 1: nothing needs dropping for want of speed. None before any work."""
        snippets = self.camera.snippets if self.camera else 0
        speeds = [seconds / busy for seconds, busy in
                  ((reader.decoded / self.fps, reader.busy_seconds),
                   (snippets * FRAMES_PER_SNIPPET / self.fps, self.work)) if busy > 0]
        return round(min(speeds), 3) if speeds else None

    def finish(self, end, reader):
        """Score what waits, write the features, the CSV's last rows, the JSON and the end line. A run that wrote
        nothing (no snippet came) raises DataError when the source failed or was shorter than a snippet."""
        camera = self.camera
        if camera is None:
            self.state.update(state='stopped')
            if end.failed:
                raise DataError(f'{end.reason}; nothing written')
            if end.reason != 'stopped':
                raise DataError(f'{too_short(reader.source, end.frames)}; nothing written')
            print('live.py: stopped before the first snippet; nothing written', file=sys.stderr)
            return
        camera.finish(max(end.frames, camera.written), 'stopped' if end.reason == 'stopped' else 'end of stream')
        report = camera.files.report
        camera.line({'type': 'end', 'frames': camera.written, 'start_utc': report['start_utc'],
                     'end_utc': report['end_utc'], 'snippets': camera.snippets, 'dropped_frames': camera.dropped,
                     'realtime_factor': self.realtime_factor(reader), 'reason': end.reason})
        stem = camera.files.stem
        written = [stem + '.csv', stem + '.json', report['features']]
        print(f'live.py: {end.reason}: {camera.written} frames ({camera.written / self.fps:.1f} s), '
              f'{camera.snippets} snippets, {len(report["events"])} events; written '
              f'{", ".join(filter(None, written))}', file=sys.stderr)


# ---------------------------------------------------------------------------------------------- the script
def check_flags(args):
    check_window(args)
    if not 0 <= args.threshold <= 1:
        raise DataError(f'--threshold must be between 0 and 1, as the scores are, got {args.threshold}')
    if args.max_lag is not None and not 0 < args.max_lag < math.inf:
        raise DataError(f'--max-lag must be a positive number of seconds, got {args.max_lag}')
    if not 0 <= args.pre_roll < math.inf:
        raise DataError(f'--pre-roll must be a number of seconds, 0 or more, got {args.pre_roll}')
    if args.reconnect < 0:
        raise DataError(f'--reconnect must be 0 or more, got {args.reconnect}')
    if args.fps is not None and not 0 < args.fps < math.inf:
        raise DataError(f'--fps must be a positive number of frames per second, got {args.fps}')
    check_input_format(args.format)
    check_out_dir(args.out_dir, '--out-dir')


def output_name(args):
    """The outputs' name; DataError when an earlier run's outputs have it (unless --overwrite)."""
    if args.name:
        if os.path.basename(args.name) != args.name or args.name in ('.', '..'):
            raise DataError(f'--name {args.name}: a file name, without a folder')
        name = args.name
    else:
        name = os.path.splitext(os.path.basename(args.source))[0] if os.path.isfile(args.source) else 'stream'
    stem = os.path.join(args.out_dir, name)
    taken = [path for path in (stem + '.csv', stem + '.json', stem + FEATURE_SUFFIX, stem + FEATURE_SUFFIX + '.part')
             if os.path.exists(path)]
    if taken and not args.overwrite:
        raise DataError(f'{taken[0]} exists, an earlier run\'s: give another --name, or --overwrite to replace '
                        f'that run\'s outputs')
    return name


def main(args):
    check_flags(args)
    device = extraction_device(args)
    name = output_name(args)
    model = load_checkpoint(args.ckpt).to(device).eval()
    feature_size = model.self_anttention[0].in_features
    if feature_size != I3D_FEATURE_SIZE:
        raise DataError(f'{args.ckpt}: the checkpoint takes features of size {feature_size}, and I3D\'s are '
                        f'{I3D_FEATURE_SIZE}: it cannot score video')
    stopping, readers = threading.Event(), []  # readers: the run's reader, once there is one

    def on_signal(signum, _):
        for reader in readers:
            if stopping.is_set():
                reader.drop_waiting('stopped')  # the second signal: stop at once
            reader.stop()
        stopping.set()
        print(f'live.py: {signal.Signals(signum).name}: finishing what is read', file=sys.stderr)

    handlers = {number: signal.signal(number, on_signal) for number in (signal.SIGINT, signal.SIGTERM)}
    publisher = None  # --mqtt's alerts
    if args.mqtt:
        publisher = alerts.Alerts(alerts.config_from_mqtt_flags(args), [name],
                                  lambda line: print(f'live.py: {line}', file=sys.stderr))
    try:
        score_source(args, device, name, model, stopping, readers, State(name, publisher))
    finally:
        if publisher is not None:
            publisher.close()
        for number, handler in handlers.items():
            signal.signal(number, handler)


def score_source(args, device, name, model, stopping, readers, state):
    """Open the source (with --reconnect, a URL or a device that does not answer yet is tried again), read it
    in a thread of its own (appended to readers) and score it until it ends or stopping is set; state: the
    camera's State (its alerts')."""
    def retrying(line):
        print(f'live.py: {line}', file=sys.stderr)
        state.update(state='reconnecting')

    retries = args.reconnect if reopenable(args.source, args.format) else 0
    # before the weights: a wrong source is said at once
    container, stream = open_retrying(args.source, args.format, retries, stopping, retrying)
    network = load_network(args.weights, device, args.backend)
    extract = Extractor(network, args.crops, device, args.half)
    fps = args.fps or frame_rate(stream)
    if not fps > 0:
        raise DataError(f'{args.source}: the stream does not state its frame rate: give it with --fps')
    live = args.realtime or reopenable(args.source, args.format)
    max_lag = args.max_lag or (LIVE_MAX_LAG if live else None)
    batch = args.batch_size or live_batch_size(network, args.crops)
    window_seconds = args.test_split_size * FRAMES_PER_SNIPPET / fps
    recorder = None
    if args.clips:
        from clips import ClipRecorder
        queued = max_lag or BACKLOG * batch * FRAMES_PER_SNIPPET / fps  # the most video waiting for the network
        recorder = ClipRecorder(stream, fps, args.pre_roll, horizon=args.pre_roll + queued + window_seconds + 10)
    print(f'live.py: {args.source}: {stream.codec_context.width} x {stream.codec_context.height} at {fps:g} fps; '
          f'{args.crops}-crop features, windows of {args.test_split_size} snippets every {args.hop} '
          f'({args.hop * FRAMES_PER_SNIPPET / fps:.2f} s); {"live" if live else "finite"}'
          f'{f", dropping past {max_lag:g} s behind" if max_lag else ""}', file=sys.stderr)
    warning = small_picture_warning(args.source, stream.codec_context.width, stream.codec_context.height)
    if warning:
        print(f'live.py: warning: {warning}', file=sys.stderr)

    def open_camera():
        return Camera(None, fps, Windows(model, args.test_split_size, args.hop), args.threshold,
                      RunFiles(args, name, fps, args.crops), reader.recorder, 'live.py: ', device, state)

    reader = SnippetReader(args.source, args.format, container, stream, fps, live, args.realtime, max_lag,
                           args.reconnect, recorder, batch, lambda: state.update(state='reconnecting'))
    readers.append(reader)
    if stopping.is_set():  # a signal while the source was opened
        reader.stop()
    scorer = Scorer(extract, open_camera, fps, max_lag, state)
    end = End(0, 'failed', True)  # until the loop ends: what an error leaves is written all the same
    try:
        end = scorer.run(reader, batch, stopping)
    finally:
        scorer.finish(end, reader)
    if end.failed:
        raise DataError(f'{end.reason}; everything scored is written')


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('source', metavar='SOURCE',
                        help="a video file; '-' for standard input (any stream FFmpeg demuxes, e.g. MPEG-TS); a URL "
                             'FFmpeg opens (rtsp://, rtmp://, http(s)://, udp://, tcp://, srt://); a capture device '
                             '(/dev/video0 with --format v4l2)')
    parser.add_argument('--ckpt', required=True, help="a checkpoint of train.py or the authors' released ones")
    parser.add_argument('--weights', required=True,
                        help='I3D ResNet-50 weights (i3d_r50_kinetics.pth, or the Caffe2 .pkl as it is)')
    parser.add_argument('--test-split-size', type=int, default=32,
                        help='the window: snippets scored together, the protocol\'s chunk (default: %(default)s)')
    parser.add_argument('--hop', type=int,
                        help='new snippets each score waits for, 1 to the window (default: the window: the '
                             'protocol\'s chunks)')
    parser.add_argument('--threshold', type=float, default=0.5,
                        help='an event is a run of frames scored >= this (default: %(default)s)')
    parser.add_argument('--out-dir', default='results/live', help='where the outputs go (default: %(default)s)')
    parser.add_argument('--name', help="the outputs' name (default: the file's stem, else 'stream')")
    parser.add_argument('--overwrite', action='store_true',
                        help="replace an earlier run's outputs of the same name (without it, such a name is refused)")
    parser.add_argument('--format', help="FFmpeg's input format for the source, e.g. v4l2, mpegts (default: probed)")
    parser.add_argument('--fps', type=float, help="frames per second of the time axis (default: the stream's own)")
    parser.add_argument('--realtime', action='store_true',
                        help='play the source at its frame rate, as a camera delivers it (for trying and benchmarks)')
    parser.add_argument('--max-lag', type=float,
                        help='seconds of video waiting for the network before the oldest snippets are dropped '
                             f'(default: {LIVE_MAX_LAG:g} for a URL, a device or --realtime; never for a file or '
                             'a pipe)')
    parser.add_argument('--reconnect', type=int, default=0,
                        help='tries to reopen a URL or a device that ends or breaks, or to open one that does not '
                             'answer at the start, backing off 1, 2, 4 ... 30 s '
                             '(default: %(default)s)')
    parser.add_argument('--clips', action='store_true', help='save each event as <out-dir>/clips/<name>-<time>s.mp4')
    parser.add_argument('--pre-roll', type=float, default=5.0,
                        help='seconds of video kept before each event in its clip (default: %(default)s)')
    parser.add_argument('--no-page', action='store_true',
                        help="do not rewrite <out-dir>/index.html, the review page, after each event and at the end")
    add_extraction_arguments(parser, live=True)
    alerts.add_mqtt_arguments(parser)
    return parser


if __name__ == '__main__':
    run(main, build_parser().parse_args(), 'live.py')
