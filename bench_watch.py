"""Benchmark watch.py against as many separate live.py processes, on generated streams played in real time.

    python bench_watch.py                               # 1, 2 and 4 cameras, 2-minute streams: 15 minutes or more
    python bench_watch.py --minutes 0.25 --cameras 1 2  # quicker, to try it

Every camera plays the same generated 320 x 240, 30 fps H.264 stream (bench_common.write_video) in MPEG-TS as a
file in real time (`realtime: true`, `live.py --realtime`), 1 crop, hop 1, windows of 32, on --device. The
weights are random, in the real key layout, and so is the VideoClassifier(2048, 64, 3) checkpoint: only speed,
memory and disk are measured. For each camera count k: one watch.py with k cameras, and k live.py processes at
once; each whole process under GNU time (peak memory). From the JSON Lines: the frames dropped (the end lines'
dropped_frames), the latency of the score lines (p50, p99 over every camera). Goals (issue 22): nothing
dropped, latency p99 <= 1 s, each camera beyond the first adds at most 150 MB to watch.py's peak memory. Disk:
watch.py's files per kind, scaled to a camera-hour. Prints a Markdown table naming the machine and its load, and
writes it to <--out>/bench-watch.md.
"""
import argparse
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from bench_common import GB, REPO, machine, run_process, write_random_weights, write_video
from model import VideoClassifier, save_checkpoint

FPS = 30
MB = 1e6


def prepare(out, minutes):
    os.makedirs(out, exist_ok=True)
    paths = {name: os.path.join(out, name) for name in ('stream.ts', 'weights.pth', 'model.pth')}
    write_video(paths['stream.ts'], round(minutes * 60 * FPS), 320, 240)
    write_random_weights(paths['weights.pth'])
    torch.manual_seed(0)
    save_checkpoint(VideoClassifier(2048, 64, 3), paths['model.pth'])
    return paths


def lines_of(output):
    return [json.loads(line) for line in output.splitlines() if line.startswith('{')]


def figures(lines):
    """(frames dropped, latency p50, p99) over the lines of every camera."""
    latencies = [line['latency'] for line in lines if line['type'] == 'score']
    dropped = sum(line['dropped_frames'] for line in lines if line['type'] == 'end')
    return dropped, float(np.percentile(latencies, 50)), float(np.percentile(latencies, 99))


def watch_run(args, paths, k):
    folder = os.path.join(args.out, f'watch{k}')
    os.makedirs(folder, exist_ok=True)
    config = os.path.join(folder, 'cameras.yaml')
    with open(config, 'w') as f:
        f.write(f'model: {{ckpt: {paths["model.pth"]}, weights: {paths["weights.pth"]}, crops: 1, '
                f'device: {args.device}}}\n'
                f'detect: {{test_split_size: 32, hop: 1}}\n'
                f'record: {{out_dir: {os.path.join(folder, "out")}, features: true, clips: false}}\n'
                'cameras:\n' + ''.join(f'  cam{i}: {{source: {paths["stream.ts"]}, realtime: true}}\n'
                                       for i in range(k)))
    wall, peak, output = run_process([sys.executable, os.path.join(REPO, 'watch.py'), config],
                                     os.path.join(folder, 'log.txt'))
    disk = {}
    for root, _, files in os.walk(os.path.join(folder, 'out')):
        if root == os.path.join(folder, 'out'):
            continue  # the review page: not a camera's
        for name in files:
            kind = next(kind for kind in ('_i3d.npy', '.csv', '.json', '.jsonl', '.mp4', '') if name.endswith(kind))
            disk[kind or name] = disk.get(kind or name, 0) + os.path.getsize(os.path.join(root, name))
    return (*figures(lines_of(output)), peak, disk)


def live_runs(args, paths, k):
    def one(i):
        command = [sys.executable, os.path.join(REPO, 'live.py'), paths['stream.ts'], '--realtime', '--ckpt',
                   paths['model.pth'], '--weights', paths['weights.pth'], '--crops', '1', '--hop', '1',
                   '--device', args.device, '--out-dir', os.path.join(args.out, f'live{k}'), '--name', f'cam{i}',
                   '--overwrite', '--no-page']
        return run_process(command, os.path.join(args.out, f'live{k}-{i}.txt'))

    with ThreadPoolExecutor(k) as pool:
        runs = list(pool.map(one, range(k)))
    return (*figures([line for _, _, output in runs for line in lines_of(output)]), sum(peak for _, peak, _ in runs))


def main(args):
    paths = prepare(args.out, args.minutes)
    load = os.getloadavg()[0]
    rows, first_peak = [], None
    for k in args.cameras:
        dropped, p50, p99, peak, disk = watch_run(args, paths, k)
        first_peak = first_peak or peak
        live_dropped, live_p50, live_p99, live_peak = live_runs(args, paths, k)
        added = (peak - first_peak) / (k - 1) / MB if k > 1 else None
        rows.append(f'| {k} | {dropped} | {p50:.2f} / {p99:.2f} s | {peak / GB:.2f} GB'
                    f'{f" (+{added:.0f} MB a camera)" if added is not None else ""} | {live_dropped} | '
                    f'{live_p50:.2f} / {live_p99:.2f} s | {live_peak / GB:.2f} GB |')
        hours = k * args.minutes / 60
        disk_text = ', '.join(f'{kind} {size / hours / MB:.2f} MB' for kind, size in sorted(disk.items()))
    text = '\n'.join([
        f'watch.py against separate live.py processes: {args.minutes:g}-minute 320 x 240 streams at {FPS} fps in '
        f'real time, 1 crop, hop 1; {machine(torch.device(args.device))}; load average {load:.1f} at the start',
        '', '| cameras | watch.py: frames dropped | latency p50 / p99 | peak memory | live.py processes: frames '
        'dropped | latency p50 / p99 | peak memory, summed |', '|---|---|---|---|---|---|---|', *rows, '',
        f'Disk per camera-hour (watch.py, {args.cameras[-1]} cameras, features on): {disk_text}'])
    print(text)
    with open(os.path.join(args.out, 'bench-watch.md'), 'w') as f:
        f.write(text + '\n')


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--minutes', type=float, default=2.0, help='each stream\'s length (default: %(default)s)')
    parser.add_argument('--cameras', type=int, nargs='+', default=[1, 2, 4], help='camera counts (default: 1 2 4)')
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'], help='(default: %(default)s)')
    parser.add_argument('--out', default='bench_data/watch', help='where the streams and runs go')
    return parser


if __name__ == '__main__':
    main(build_parser().parse_args())
