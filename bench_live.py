"""Benchmark live.py on generated streams played in real time through a pipe, as a camera relay feeds it.

    python bench_live.py                                      # 5- and 1-minute streams in real time: 15 minutes or more
    python bench_live.py --minutes 0.5 --short-minutes 0.25   # quicker, to try it
    python bench_live.py --device cuda                        # and how many streams one GPU keeps up with

Every run is a whole live.py process under GNU time (its peak memory), fed a generated 320 x 240, 30 fps H.264
video (bench_common.write_video: moving coloured squares) muxed as MPEG-TS, piped in by cat and played at its
frame rate: `cat stream.ts | python live.py - --realtime --hop 1 ...`. The weights are random, in the real key
layout, and so is the VideoClassifier(2048, 64, 3) checkpoint (bench_data/live/): only speed is measured. From
each run's JSON Lines: the frames dropped (the end line's dropped_frames), the latency of its score lines (p50,
p99) and the end line's realtime_factor, the processing speed as a multiple of real time.
- --crops 1, a --minutes stream, once per backend on the CPU (--backend torch, then openvino; the OpenVINO
  cache, bench_data/live/openvino-cache, filled first). Goals: no frame dropped; latency p99 <= 1.0 s over all
  scores.
- --crops 10, a --short-minutes and a --minutes stream. The network's time for one batch (live.py's default
  batch of 10-crop snippets on live.py's default backend: 1 on OpenVINO, 2 on PyTorch) is measured in this process: the median of --batches after a
  warm-up. Goals: latency p99 <=
  --max-lag + that time + 1 s over the scores written while the stream played (end_time + latency <= the
  stream's duration, both on the stream's clock); the peak memory of the long stream within 1.1x the short
  one's. When a stream ends, the snippets still queued (up to --max-lag of video) are scored without dropping,
  each later than the last: a live source never ends, so that drain is reported apart.
- --device cuda: k processes at once, each a 10-crop --short-minutes stream, for k = 1, 2, 4, ... until one
  drops a frame (or k passes --max-streams): the largest k with none dropped is what one GPU keeps up with.
Prints a Markdown table naming the machine and the load, and writes it to <--out>/bench-<device>.md.
"""
import argparse
import math
import os
import shlex
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from backend import CACHE_VARIABLE, cached_model, load_network
from bench_common import (FPS, GB, REPO, SIZE, TIME, json_records, machine, met, percentile, publish,
                          random_checkpoint, run_process, stream_run, stream_video, timed, write_random_weights,
                          written_once)
from cli import HelpFormatter, check_positive, pick_device, run
from dataset import FRAMES_PER_SNIPPET, DataError
from stream import LIVE_MAX_LAG
from video import HEIGHT, WIDTH, Extractor, live_batch_size

LATENCY_GOAL = 1.0          # seconds, the p99 of a 1-crop stream
MEMORY_GOAL = 1.1           # the long 10-crop stream's peak memory over the short one's


# ---------------------------------------------------------------------------------------------- measuring
def live(args, device, video, name, crops, backend='auto'):
    """One live.py process fed video through a pipe in real time, hop 1."""
    folder = args.out
    command = [sys.executable, os.path.join(REPO, 'live.py'), '-', '--realtime', '--hop', '1', '--crops', str(crops),
               '--ckpt', os.path.join(folder, 'random_model.pth'), '--weights', os.path.join(folder, 'random_i3d.pth'),
               '--max-lag', str(args.max_lag), '--device', device.type, '--out-dir', os.path.join(folder, 'out'),
               '--name', name, '--backend', backend]
    print(f'bench_live.py: running {name} (its output in {os.path.join(folder, name + ".log")})', flush=True)
    wall, peak, output = run_process(['sh', '-c', f'cat {shlex.quote(video)} | {shlex.join(command)}'],
                                  os.path.join(folder, name + '.log'))
    records = json_records(output)
    if not records or records[-1]['type'] != 'end':
        raise DataError(f'{name}: live.py wrote no end line (its output in {os.path.join(folder, name + ".log")})')
    return stream_run(records, peak, wall)


def latency_text(r):
    played, drained = r.played, r.drained
    return (f'latency p50 {percentile(played, 50):.2f} s, p99 {percentile(played, 99):.2f} s ({len(played)} scores '
            f'while it played); after its end: {len(drained)}, up to {max(drained, default=math.nan):.2f} s')


def speed_text(r):
    return (f'{r.realtime_factor:.2f}x real time; {r.dropped} of {r.frames} frames dropped '
            f'({r.dropped / r.frames:.1%}); the process took {r.wall:.0f} s for {r.frames / FPS:.0f} s of video')


def one_crop(args, device, video):
    rows = []
    for backend in ('torch', 'openvino') if device.type == 'cpu' else ('torch',):
        r = live(args, device, video, f'crops1-{backend}', 1, backend)
        every = r.played + r.drained
        p50, p99 = percentile(every, 50), percentile(every, 99)
        rows.append((f'live.py --crops 1 --hop 1 --backend {backend}, a {args.minutes:g}-minute stream',
                     f'latency p50 {p50:.2f} s, p99 {p99:.2f} s (all {len(every)} scores)', speed_text(r),
                     f'{r.peak / GB:.2f} GB', met('no frame dropped', r.dropped == 0) + '; '
                     + met(f'latency p99 <= {LATENCY_GOAL:g} s', p99 <= LATENCY_GOAL)))
    return rows


def batch_seconds(args, device):
    """(the network's time for one batch of live.py's 10-crop runs: the median of --batches after a warm-up, the
    snippets of that batch)"""
    network = load_network(os.path.join(args.out, 'random_i3d.pth'), device)
    extract, snippets = Extractor(network, 10, device), live_batch_size(network, 10)
    frames = np.random.default_rng(0).integers(0, 256, (snippets * FRAMES_PER_SNIPPET, HEIGHT, WIDTH, 3), np.uint8)
    extract(frames)  # sets up the convolutions' kernels
    return timed(lambda: extract(frames), args.batches, device)[0], snippets


def ten_crops(args, device, videos):
    seconds, snippets = batch_seconds(args, device)
    goal = args.max_lag + seconds + 1
    rows = [(f'the network on one batch of {snippets} snippet(s) x 10 crops (in this process, the median '
             f'of {args.batches} after a warm-up)', f'{seconds:.2f} s', '', '', '')]
    peaks = {}
    for minutes, video in sorted(videos.items()):
        r = live(args, device, video, f'crops10-{minutes:g}min', 10)
        peaks[minutes] = r.peak
        goals = [met(f'latency p99 while it played <= {args.max_lag:g} + {seconds:.2f} + 1 s',
                     percentile(r.played, 99) <= goal)]
        if minutes == args.minutes:
            goals.append(met(f"peak <= {MEMORY_GOAL:g}x the {args.short_minutes:g}-minute stream's",
                             r.peak <= MEMORY_GOAL * peaks[args.short_minutes]))
        rows.append((f'live.py --crops 10 --hop 1, a {minutes:g}-minute stream', latency_text(r), speed_text(r),
                     f'{r.peak / GB:.2f} GB', '; '.join(goals)))
    return rows


def gpu_streams(args, device, video):
    """k 10-crop streams at once for k = 1, 2, 4, ... until one drops a frame or k passes --max-streams."""
    if device.type != 'cuda':
        return [('streams one GPU keeps up with (30 fps, 10 crops)', '', 'skipped: measured with --device cuda only',
                 '', '')]
    rows, k, kept_up = [], 1, 0
    while k <= args.max_streams:
        with ThreadPoolExecutor(k) as pool:
            runs = list(pool.map(lambda i: live(args, device, video, f'gpu{k}-{i}', 10), range(k)))
        worst = max(runs, key=lambda r: r.dropped / r.frames)
        rows.append((f'{k} live.py --crops 10 --hop 1 at once, {args.short_minutes:g}-minute streams',
                     f'latency p99 up to {max(percentile(r.played, 99) for r in runs):.2f} s while they played',
                     f'the worst stream: {speed_text(worst)}; the slowest '
                     f'{min(r.realtime_factor for r in runs):.2f}x real time',
                     f'{max(r.peak for r in runs) / GB:.2f} GB (the largest process)', ''))
        if worst.dropped:
            break
        kept_up, k = k, 2 * k
    at_least = 'at least ' if k > args.max_streams else ''
    rows.append(('streams one GPU keeps up with (30 fps, 10 crops, none dropping a frame)', f'{at_least}{kept_up}',
                 '', '', ''))
    return rows


def main(args):
    check_positive(args, 'minutes', 'short_minutes', 'max_lag', 'batches', 'max_streams')
    for flag in ('minutes', 'short_minutes'):
        if round(getattr(args, flag) * 60 * FPS) < FRAMES_PER_SNIPPET:
            raise DataError(f'--{flag.replace("_", "-")} {getattr(args, flag):g}: a stream needs at least one '
                            f'snippet ({FRAMES_PER_SNIPPET} frames at {FPS} fps)')
    if not args.short_minutes < args.minutes:
        raise DataError(f'--short-minutes ({args.short_minutes:g}) must be less than --minutes ({args.minutes:g}): '
                        'the long stream\'s peak memory is compared with the short one\'s')
    if not os.path.isfile(TIME):
        raise DataError(f'needs GNU time as {TIME} to measure peak memory (apt-get install time)')
    device = pick_device(args.device)
    os.makedirs(args.out, exist_ok=True)
    before = os.getloadavg()[0]
    written_once(os.path.join(args.out, 'random_i3d.pth'), write_random_weights)
    os.environ[CACHE_VARIABLE] = os.path.join(args.out, 'openvino-cache')  # this process's and live.py's
    if device.type == 'cpu':
        cached_model(os.path.join(args.out, 'random_i3d.pth'))  # converted before any stream starts
    written_once(os.path.join(args.out, 'random_model.pth'), random_checkpoint)
    videos = {minutes: stream_video(args.out, minutes) for minutes in (args.minutes, args.short_minutes)}

    rows = (one_crop(args, device, videos[args.minutes]) + ten_crops(args, device, videos)
            + gpu_streams(args, device, videos[args.short_minutes]))
    after = os.getloadavg()[0]
    title = (f'**{machine(device)}.** live.py on generated {SIZE[0]} x {SIZE[1]} H.264 videos at {FPS} fps, MPEG-TS '
             f'piped in and played in real time (--realtime), hop 1, --max-lag {args.max_lag:g} s, random weights. '
             f'Load average (1 min) {before:.1f} before, {after:.1f} after.')
    publish(rows, title, os.path.join(args.out, f'bench-{device.type}.md'))


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument('--minutes', type=float, default=5.0, help='the long streams, in minutes')
    parser.add_argument('--short-minutes', type=float, default=1.0,
                        help="the short 10-crop stream, whose peak memory the long one's is compared with; also "
                             "the GPU's streams")
    parser.add_argument('--max-lag', type=float, default=LIVE_MAX_LAG, help="live.py's --max-lag, in seconds")
    parser.add_argument('--batches', type=int, default=5,
                        help='timings of the network on one 10-crop batch, whose median goes into the 10-crop goal')
    parser.add_argument('--max-streams', type=int, default=64, help='the most 10-crop streams tried at once on a GPU')
    parser.add_argument('--device', default='cpu', choices=['auto', 'cpu', 'cuda'])
    parser.add_argument('--out', default=os.path.join('bench_data', 'live'),
                        help='the videos, weights, logs, live.py outputs and the table')
    return parser


if __name__ == '__main__':
    run(main, build_parser().parse_args(), 'bench_live.py')
