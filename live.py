"""Live detection: score a camera, a network stream, a pipe or a file as its frames arrive.

    python live.py rtsp://192.0.2.7/stream1 --ckpt ckpt/mine.pth --weights i3d_r50_kinetics.pth --reconnect 10
    ffmpeg -i rtsp://192.0.2.7/stream1 -c copy -f mpegts - | python live.py - --ckpt ckpt/mine.pth --weights W
    python live.py /dev/video0 --format v4l2 --ckpt ckpt/mine.pth --weights W --crops 1 --hop 1 --clips
    python live.py clip.mp4 --realtime --ckpt ckpt/mine.pth --weights W --hop 4

The features are extract_features.py's (video.py), computed snippet by snippet as the frames arrive, batched
when several snippets wait. The scores are the test protocol's on windows of --test-split-size snippets
(protocol.chunk_score: the model on each crop of the window, the mean over crops): every --hop new snippets,
the window of the last --test-split-size snippets is scored and its score goes to the hop new snippets. With
hop = window (the default) the windows are the protocol's chunks, the last shorter one scored as the protocol
scores it, so a finished stream's scores and events are detect.py's on the same video. No future frame is ever
used and no score is ever revised. A gap (frames dropped to keep up, or lost to a reconnection) ends the
window: the snippets before it are scored as at the end of a stream, and the windows after it start afresh.

Standard output: JSON Lines, one object per line, flushed at once (the log goes to standard error):
    {"type": "score", "start_frame", "end_frame", "start_time", "end_time", "score", "latency"}
    {"type": "event_start", "frame", "time", "score"}
    {"type": "event_end", "start_frame", "end_frame", "start_time", "end_time", "peak_score", "clip"}
    {"type": "gap", "start_frame", "end_frame", "reason"}
    {"type": "end", "frames", "snippets", "dropped_frames", "realtime_factor", "reason"}
Frames are counted from the stream's first, end frames are exclusive, times are frame / fps seconds. latency:
seconds from the decoding of the newest snippet's last frame to the line. realtime_factor: the stream's
duration over the time spent decoding, extracting and scoring it (above 1 keeps up).

Written to --out-dir as the stream goes (named after --name: the file's stem, else 'stream'):
    <name>.csv        frame,time,score, appended and flushed as scores come (a dropped frame: an empty score)
    <name>.json       detect.py's report, plus hop, dropped_frames, live, ended and each event's clip;
                      rewritten atomically after each event, every few seconds, and at the end
    <name>_i3d.npy    the features of the snippets scored, [T, crops, 2048], written at the end (a growing
                      <name>_i3d.npy.part until then)
    clips/<name>-<start time>s.mp4   with --clips: each event, from --pre-roll seconds before it
    index.html        the review page of every result in the folder (page.py), after each event and at the end
SIGINT or SIGTERM stops reading, scores what is complete, ends the open event and writes everything; a second
one drops the snippets still waiting for the network. Exit status: 0, or 1 when the source broke (a URL or a
device that ended or failed, after --reconnect tries), with one line saying why.
"""
import argparse
import json
import math
import os
import signal
import struct
import sys
import threading
import time

import numpy as np
import torch

from backend import load_network
from cli import check_positive, run
from dataset import FEATURE_SUFFIX, FRAMES_PER_SNIPPET, DataError, write_atomic
from i3d import FEATURE_SIZE as I3D_FEATURE_SIZE
from model import load_checkpoint
from page import write_page
from results import CSV_HEADER, Events, csv_rows, event_record
from stream import BACKLOG, LIVE_MAX_LAG, End, Gap, SnippetReader, frame_rate, open_source, reopenable
from video import CLIPS_PER_BATCH, Extractor, add_extraction_arguments, extraction_device
from windows import Windows

JSON_EVERY = 5.0          # seconds between rewrites of the JSON while nothing happens
STATUS_EVERY = 30.0       # seconds between the log's status lines
NPY_HEADER = 128          # bytes of the growing feature file's header: room for any shape


# ---------------------------------------------------------------------------------------------- files
def npy_header(shape):
    """A .npy (version 1.0) header of float32 [shape], padded to NPY_HEADER bytes."""
    text = repr({'descr': '<f4', 'fortran_order': False, 'shape': tuple(shape)})
    return b'\x93NUMPY\x01\x00' + struct.pack('<H', NPY_HEADER - 10) + text.ljust(NPY_HEADER - 11).encode() + b'\n'


class FeatureFile:
    """<path> written row by row without holding the rows: <path>.part grows, its header is rewritten with the
    final shape at close(), and it is renamed into place."""

    def __init__(self, path, crops, feature_size):
        self.path, self.tail, self.rows = path, (crops, feature_size), 0
        os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
        self.file = open(path + '.part', 'wb')
        self.file.write(npy_header((0, *self.tail)))

    def append(self, rows):
        self.file.write(np.ascontiguousarray(rows, np.float32).tobytes())
        self.rows += len(rows)

    def close(self):
        """The file in place (when it holds a row); its path, or None."""
        self.file.seek(0)
        self.file.write(npy_header((self.rows, *self.tail)))
        self.file.close()
        if not self.rows:
            os.remove(self.path + '.part')
            return None
        os.replace(self.path + '.part', self.path)
        return self.path


class Outputs:
    """What the run writes as scores come: the JSON Lines, the CSV, the JSON report, the event clips."""

    def __init__(self, args, name, fps, crops, recorder):
        self.args, self.fps, self.recorder = args, fps, recorder
        self.stem = os.path.join(args.out_dir, name)
        self.feature_file = self.stem + FEATURE_SUFFIX
        self.report = {'video': args.source, 'features': self.feature_file, 'fps': fps, 'frames': 0, 'snippets': 0,
                       'crops': crops, 'checkpoint': args.ckpt, 'test_split_size': args.test_split_size,
                       'threshold': args.threshold, 'max_score': None, 'events': [], 'hop': args.hop,
                       'dropped_frames': 0, 'live': True, 'ended': False}
        self.events = Events(args.threshold)
        self.clip = None           # the open event's clip
        self.last = None           # (frame after the last scored snippet, its score)
        self.written = 0           # frames with a CSV row
        self.json_written = 0.0    # time.monotonic() of the last JSON
        os.makedirs(args.out_dir, exist_ok=True)
        self.csv = open(self.stem + '.csv', 'w')
        self.csv.write(CSV_HEADER)
        self.csv.flush()
        self.write_json()

    def line(self, record):
        print(json.dumps(record), flush=True)

    def rows(self, first, scores):
        """CSV rows of frames first .. first + len(scores) - 1, and the events they start or end."""
        self.csv.write(csv_rows(first, scores, self.fps))
        self.csv.flush()
        self.written = first + len(scores)
        self.report['frames'] = self.written
        changed = self.changes(self.events.add(first, scores))
        if self.clip is not None:
            self.recorder.advance(self.written)
        if changed or time.monotonic() - self.json_written > JSON_EVERY:
            self.write_json(page=changed)

    def score(self, first_snippet, n, score, decoded_at):
        """A window's score on its n snippets from first_snippet: the score line, the rows, the events."""
        start, end = FRAMES_PER_SNIPPET * first_snippet, FRAMES_PER_SNIPPET * (first_snippet + n)
        self.line({'type': 'score', 'start_frame': start, 'end_frame': end, 'start_time': round(start / self.fps, 4),
                   'end_time': round(end / self.fps, 4), 'score': float(score),
                   'latency': round(time.monotonic() - decoded_at, 4)})
        best = self.report['max_score']
        self.report['max_score'] = float(score) if best is None else max(best, float(score))
        self.last = (end, score)
        self.rows(start, np.full(end - start, score, np.float32))

    def gap(self, gap):
        """Frames that will never be scored: the gap line, empty rows, an open event ended at the gap."""
        self.changes(self.events.end(gap.start_frame))
        self.line({'type': 'gap', **gap._asdict()})
        self.report['dropped_frames'] += gap.end_frame - gap.start_frame
        self.rows(gap.start_frame, np.full(gap.end_frame - gap.start_frame, np.nan, np.float32))

    def changes(self, changes):
        """Write the event lines of changes (Events.add's); True if there were any."""
        for change in changes:
            if change[0] == 'start':
                _, frame, score = change
                time_ = round(frame / self.fps, 4)
                self.line({'type': 'event_start', 'frame': frame, 'time': time_, 'score': score})
                print(f'event at {time_:.1f} s (score {score:.2f})', file=sys.stderr)
                if self.recorder is not None:
                    self.clip = self.recorder.start(frame, frame / self.fps)
            else:
                _, start, end, peak = change
                clip, self.clip = self.clip, None
                if clip is not None:
                    try:
                        self.recorder.stop(end)
                    except DataError as e:  # a clip that cannot be written (a full disk) costs the clip only
                        print(f'live.py: warning: {e}', file=sys.stderr)
                        clip = None
                record = {**event_record(start, end, peak, self.fps), 'clip': clip}
                self.report['events'].append(record)
                self.line({'type': 'event_end', **record})
                print(f'event {start / self.fps:.1f} s - {end / self.fps:.1f} s, peak {peak:.2f}'
                      f'{f", clip {clip}" if clip else ""}', file=sys.stderr)
        return bool(changes)

    def finish(self, frames, snippets):
        """The end of the stream at frames: the frames after the last scored snippet carry its score (none after a
        gap, or when no snippet was scored), the open event ends, the JSON is written."""
        if frames > self.written:  # the last scored snippet's score, if they follow it; else none
            score = self.last[1] if self.last is not None and self.last[0] == self.written else np.nan
            self.rows(self.written, np.full(frames - self.written, score, np.float32))
        self.changes(self.events.end(self.written))
        self.csv.close()
        self.report.update(snippets=snippets, ended=True)
        self.write_json(page=True)

    def write_json(self, page=False):
        """The JSON report; with page, the folder's review page too (after an event and at the end)."""
        write_atomic(self.stem + '.json', lambda f: f.write(json.dumps(self.report, indent=2).encode() + b'\n'))
        self.json_written = time.monotonic()
        if page and not self.args.no_page:
            write_page(self.args.out_dir)


# ---------------------------------------------------------------------------------------------- the run
class Scorer:
    """The main thread's work: the network on the snippets as they come, the windows' scores, the outputs."""

    def __init__(self, extract, windows, outputs, features, device, max_lag):
        self.extract, self.windows, self.outputs, self.features = extract, windows, outputs, features
        self.device, self.max_lag, self.fps = device, max_lag, outputs.fps
        self.snippets, self.newest, self.work = 0, None, 0.0  # snippets scored, the latest, seconds of work
        self.network_seconds = 0.0  # the latest batch's

    def run(self, reader, batch, stopping):
        """Take what reader queues until its End (or a stop while it waits on a silent source); the End."""
        status_at = time.monotonic()
        while True:
            items = reader.get(batch, timeout=1.0)
            if not items and stopping.is_set():
                return End(self.outputs.written, 'stopped', False)
            if items and isinstance(items[0], End):
                return items[0]
            if items and isinstance(items[0], Gap):
                self.gap(items[0])
                if self.outputs.recorder is not reader.recorder:  # a reconnection: the new stream's recorder
                    self.outputs.recorder = reader.recorder
            elif items:
                self.score(items)
                reader.network_seconds = self.network_seconds
            if time.monotonic() - status_at > STATUS_EVERY:
                status_at = time.monotonic()
                report = self.outputs.report
                print(f'live.py: {self.outputs.written / self.fps:.0f} s scored, {self.snippets} snippets, '
                      f'{report["dropped_frames"] / self.fps:.0f} s dropped, {len(report["events"])} events'
                      f'{f"; decoding {max(0.0, reader.behind):.0f} s behind real time" if reader.live else ""}',
                      file=sys.stderr)

    def score(self, snippets):
        """Extract a batch of snippets, and score each window they complete."""
        tick = time.monotonic()
        rows = self.extract(np.concatenate([snippet.frames for snippet in snippets]))
        self.network_seconds = time.monotonic() - tick
        self.features.append(rows)
        for self.newest, row in zip(snippets, torch.from_numpy(rows).to(self.device)):
            self.snippets += 1
            if self.windows.add(row):
                self.flush()
        self.work += time.monotonic() - tick

    def flush(self):
        """Score the snippets waiting for a window (the newest last), as at the end of a stream."""
        if self.windows.new:
            score, n = self.windows.score()
            self.outputs.score(self.newest.index - n + 1, n, score, self.newest.decoded_at)

    def gap(self, gap):
        """Frames never scored: the snippets before are scored as at an end, the windows start afresh."""
        self.flush()
        self.windows.restart()
        self.outputs.gap(gap)
        if gap.reason == 'behind':
            print(f'live.py: {(gap.end_frame - gap.start_frame) / self.fps:.1f} s of video dropped (frames '
                  f'{gap.start_frame} - {gap.end_frame}): the network is more than {self.max_lag:g} s behind real '
                  f'time', file=sys.stderr)

    def finish(self, end, decoding_seconds):
        """Score what waits, write the features, the CSV's last rows, the JSON and the end line."""
        self.flush()
        outputs = self.outputs
        outputs.report['features'] = self.features.close()
        outputs.finish(max(end.frames, outputs.written), self.snippets)
        duration, busy = outputs.written / self.fps, decoding_seconds + self.work
        outputs.line({'type': 'end', 'frames': outputs.written, 'snippets': self.snippets,
                      'dropped_frames': outputs.report['dropped_frames'],
                      'realtime_factor': round(duration / busy, 3) if busy else None, 'reason': end.reason})
        written = [outputs.stem + '.csv', outputs.stem + '.json', outputs.report['features']]
        print(f'live.py: {end.reason}: {outputs.written} frames ({duration:.1f} s), {self.snippets} snippets, '
              f'{len(outputs.report["events"])} events; written {", ".join(filter(None, written))}', file=sys.stderr)


# ---------------------------------------------------------------------------------------------- the script
def check_flags(args):
    check_positive(args, 'test_split_size')
    if args.hop is None:
        args.hop = args.test_split_size
    if not 0 < args.hop <= args.test_split_size:
        raise DataError(f'--hop must be from 1 to the window (--test-split-size {args.test_split_size}), '
                        f'got {args.hop}')
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


def output_name(args):
    if args.name:
        if os.path.basename(args.name) != args.name or args.name in ('.', '..'):
            raise DataError(f'--name {args.name}: a file name, without a folder')
        return args.name
    return os.path.splitext(os.path.basename(args.source))[0] if os.path.isfile(args.source) else 'stream'


def main(args):
    check_flags(args)
    device = extraction_device(args)
    name = output_name(args)
    model = load_checkpoint(args.ckpt).to(device).eval()
    feature_size = model.self_anttention[0].in_features
    if feature_size != I3D_FEATURE_SIZE:
        raise DataError(f'{args.ckpt}: the checkpoint takes features of size {feature_size}, and I3D\'s are '
                        f'{I3D_FEATURE_SIZE}: it cannot score video')
    container, stream = open_source(args.source, args.format)  # before the weights: a wrong source is said at once
    extract = Extractor(load_network(args.weights, device, args.backend), args.crops, device, args.half)
    fps = args.fps or frame_rate(stream)
    if not fps > 0:
        raise DataError(f'{args.source}: the stream does not state its frame rate: give it with --fps')
    live = args.realtime or reopenable(args.source, args.format)
    max_lag = args.max_lag or (LIVE_MAX_LAG if live else None)
    batch = args.batch_size or max(1, CLIPS_PER_BATCH // args.crops)
    window_seconds = args.test_split_size * FRAMES_PER_SNIPPET / fps
    recorder = None
    if args.clips:
        from clips import ClipRecorder
        queued = max_lag or BACKLOG * batch * FRAMES_PER_SNIPPET / fps  # the most video waiting for the network
        recorder = ClipRecorder(stream, os.path.join(args.out_dir, 'clips'), name, fps, args.pre_roll,
                                horizon=args.pre_roll + queued + window_seconds + 10)
    print(f'live.py: {args.source}: {stream.codec_context.width} x {stream.codec_context.height} at {fps:g} fps; '
          f'{args.crops}-crop features, windows of {args.test_split_size} snippets every {args.hop} '
          f'({args.hop * FRAMES_PER_SNIPPET / fps:.2f} s); {"live" if live else "finite"}'
          f'{f", dropping past {max_lag:g} s behind" if max_lag else ""}', file=sys.stderr)

    outputs = Outputs(args, name, fps, args.crops, recorder)
    reader = SnippetReader(args.source, args.format, container, stream, fps, live, args.realtime, max_lag,
                           args.reconnect, recorder, batch)
    scorer = Scorer(extract, Windows(model, args.test_split_size, args.hop), outputs,
                    FeatureFile(outputs.feature_file, args.crops, I3D_FEATURE_SIZE), device, max_lag)
    stopping = threading.Event()

    def on_signal(signum, _):
        if stopping.is_set():
            reader.drop_waiting('stopped')  # the second signal: stop at once
        stopping.set()
        reader.stop()
        print(f'live.py: {signal.Signals(signum).name}: finishing what is read', file=sys.stderr)

    handlers = {number: signal.signal(number, on_signal) for number in (signal.SIGINT, signal.SIGTERM)}
    end = End(0, 'failed', True)  # until the loop ends: what an error leaves is written all the same
    try:
        end = scorer.run(reader, batch, stopping)
    finally:
        scorer.finish(end, reader.busy_seconds)
        for number, handler in handlers.items():
            signal.signal(number, handler)
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
    parser.add_argument('--format', help="FFmpeg's input format for the source, e.g. v4l2, mpegts (default: probed)")
    parser.add_argument('--fps', type=float, help="frames per second of the time axis (default: the stream's own)")
    parser.add_argument('--realtime', action='store_true',
                        help='play the source at its frame rate, as a camera delivers it (for trying and benchmarks)')
    parser.add_argument('--max-lag', type=float,
                        help='seconds of video waiting for the network before the oldest snippets are dropped '
                             f'(default: {LIVE_MAX_LAG:g} for a URL, a device or --realtime; never for a file or '
                             'a pipe)')
    parser.add_argument('--reconnect', type=int, default=0,
                        help='tries to reopen a URL or a device that ends or breaks, backing off 1, 2, 4 ... 30 s '
                             '(default: %(default)s)')
    parser.add_argument('--clips', action='store_true', help='save each event as <out-dir>/clips/<name>-<time>s.mp4')
    parser.add_argument('--pre-roll', type=float, default=5.0,
                        help='seconds of video kept before each event in its clip (default: %(default)s)')
    parser.add_argument('--no-page', action='store_true',
                        help="do not rewrite <out-dir>/index.html, the review page, after each event and at the end")
    add_extraction_arguments(parser)
    return parser


if __name__ == '__main__':
    run(main, build_parser().parse_args(), 'live.py')
