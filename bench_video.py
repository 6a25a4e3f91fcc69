"""Benchmark the I3D feature extraction of extract_features.py against the plain reference, on generated videos.

    python bench_video.py                 # 320 x 240 videos of 4 and 16 snippets, 10 crops: a few minutes on 2 cores
    python bench_video.py --snippets 2    # quicker, to try it
    python bench_video.py --device cuda

The plain reference is the field's usual extractor loop: decode every frame first, then per snippet one
forward of its 10 crops through the network as pytorch-resnet3d defines it (BatchNorm layers, the default
memory layout). Both run on the same generated video (moving coloured squares, H.264) with random weights in
the real key layout (bench_data/video/). The floor is the network's FLOPs at the machine's float32 matmul rate;
the FLOPs are counted from the layer shapes (2 x the multiply-adds of every convolution: 32.8 GFLOP per
16 x 224 x 224 clip; pooling, ReLUs and additions add a fraction of a percent). Peak memory is that of whole
extract_features.py processes (GNU time), on the video and on one four times longer. The goals (CPU): at most
0.75x the reference's time, 1.2x the floor, and 1.15x the short video's peak memory for the long one. (On a
GPU the decoding bounds the speed, far above the floor.)
On the CPU, both backends (backend.py) in turn: the network's time per snippet of 1 and of 10 crops (the
default batches, in this process), whole extract_features.py processes on both videos, and the start-up: a
process on a 1-snippet video at 1 crop, with the OpenVINO cache (bench_data/video/openvino-cache) empty, then
filled. Goals: OpenVINO at most 0.5x PyTorch's time per snippet at 1 crop, 0.7x at 10 crops, and its start-up
with a filled cache within 2 s of PyTorch's. Prints a Markdown table naming the machine, and writes it to
bench_data/video/bench-<device>.md.
"""
import argparse
import os
import shutil
import sys
import time

import av
import numpy as np
import torch
import torch.nn as nn
from PIL import Image

from backend import CACHE_VARIABLE, load_network
from bench_common import GB, REPO, TIME, machine, met, publish, run_process, sync, write_random_weights, write_video
from cli import pick_device
from video import (CLIPS_PER_BATCH, CROP, HEIGHT, WIDTH, Extractor, crop_boxes, decoded_frames, extract_video,
                   float32_convolutions)
from i3d import I3DResNet50, load_i3d, read_weights



# ---------------------------------------------------------------------------------------------- inputs
def clip_flops():
    """FLOPs of the network on one 16 x 224 x 224 clip, counted from the layer shapes: 2 x every convolution's
    multiply-adds (output elements x input channels x kernel volume)."""
    counts = []
    with torch.device('meta'):
        network = I3DResNet50()
        for module in network.modules():
            if isinstance(module, nn.Conv3d):
                module.register_forward_hook(lambda m, _, out: counts.append(2 * out.numel() * m.weight[0].numel()))
        network(torch.empty(1, 3, 16, CROP, CROP))
    return sum(counts)


# ---------------------------------------------------------------------------------------------- the two ways
def plain_reference(video, network, device):
    """The plain loop: every frame decoded, resized and scaled first; then per snippet one forward of its crops
    [10, 3, 16, 224, 224] (the default layout). Returns [T, 10, 2048]."""
    frames = decoded_frames(video)
    next(frames)
    frames = np.stack([np.asarray(f.to_image().resize((WIDTH, HEIGHT), Image.Resampling.LANCZOS)) for f in frames])
    frames = torch.from_numpy((frames.astype(np.float64) * 2 / 255 - 1).astype(np.float32))
    features = []
    with torch.no_grad(), float32_convolutions():  # as extract_video: IEEE float32 on a GPU too
        for t in range(len(frames) // 16):
            snippet = frames[16 * t:16 * t + 16]
            crops = [(snippet.flip(2) if flip else snippet)[:, top:top + CROP, left:left + CROP]
                     for top, left, flip in crop_boxes(10)]
            batch = torch.stack(crops).permute(0, 4, 1, 2, 3).contiguous().to(device)
            features.append(network(batch).cpu().numpy())
    return np.stack(features)


def decode_only(video):
    """What both ways spend on the frames alone: decoding and resizing them."""
    frames = decoded_frames(video)
    next(frames)
    for frame in frames:
        frame.to_image().resize((WIDTH, HEIGHT), Image.Resampling.LANCZOS)


def timed(f, device):
    sync(device)
    start = time.perf_counter()
    result = f()
    sync(device)
    return time.perf_counter() - start, result


def matmul_rate(device, n=4096):
    """The machine's float32 matmul rate (FLOP/s): one [n x n] x [n x n] product (after a first one)."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    return 2 * n ** 3 / timed(lambda: a @ b, device)[0]


# ---------------------------------------------------------------------------------------------- the table
def measure_in_process(args, device, videos, weights):
    """The floor, and the plain reference and extract_video on the short video: the best of --repeats runs each,
    in turn (a shared machine's noise only ever adds time)."""
    rate = max(matmul_rate(device) for _ in range(args.repeats))
    flops = clip_flops()
    floor = 10 * flops / rate  # seconds per snippet of 10 crops
    rows = [('float32 matmul [4096 x 4096] x [4096 x 4096]', f'{2 * 4096 ** 3 / rate:.3f} s',
             f'{rate / 1e9:.0f} GFLOP/s', '', ''),
            ('I3D ResNet-50 on one 16 x 224 x 224 clip (counted from the layer shapes)', '',
             f'{flops / 1e9:.2f} GFLOP; 10 crops at the matmul rate: {floor:.3f} s per snippet (the floor)', '', '')]
    plain = I3DResNet50()
    plain.load_state_dict(read_weights(weights), strict=False)
    plain = plain.to(device).eval()
    fast = load_i3d(weights, device)
    # the first batch of each shape sets up its convolutions' kernels
    plain_reference(videos['warm-up'], plain, device)
    extract_video(videos['warm-up'], fast, 10, args.batch_size, device, progress=False)
    times = {'decode': [], 'plain': [], 'fast': []}
    for _ in range(args.repeats):
        times['decode'].append(timed(lambda: decode_only(videos['short']), device)[0])
        seconds, expected = timed(lambda: plain_reference(videos['short'], plain, device), device)
        times['plain'].append(seconds)
        seconds, (features, _, _) = timed(
            lambda: extract_video(videos['short'], fast, 10, args.batch_size, device, progress=False), device)
        times['fast'].append(seconds)
    decode_s, plain_s, fast_s = (min(times[k]) / args.snippets for k in ('decode', 'plain', 'fast'))
    difference = np.abs(features - expected).max() / np.abs(expected).max()
    codec = 'H.264' if 'libx264' in av.codecs_available else 'MPEG-4'
    rows.append((f'decoding and resizing alone ({args.width} x {args.height}, {codec})', f'{decode_s:.3f} s',
                 'per snippet', '', ''))
    rows.append(('plain reference: all frames decoded first, one forward per snippet of its 10 crops, default layout',
                 f'{plain_s:.3f} s',
                 f'per snippet; {10 * flops / plain_s / 1e9:.0f} GFLOP/s, {plain_s / floor:.2f}x the floor', '', ''))
    rows.append((f'extract_video: streaming, {args.batch_size} snippets x 10 crops per batch, BatchNorm folded, '
                 'channels_last_3d', f'{fast_s:.3f} s',
                 f'per snippet; {10 * flops / fast_s / 1e9:.0f} GFLOP/s, {fast_s / floor:.2f}x the floor, '
                 f'{fast_s / plain_s:.2f}x the reference', '',
                 met('<= 0.75x the reference', fast_s <= 0.75 * plain_s) + '; '
                 + met('<= 1.2x the floor', fast_s <= 1.2 * floor) if device.type == 'cpu' else ''))
    rows.append(('features: extract_video against the plain reference', f'{difference:.1e}',
                 'largest difference, relative to the largest feature', '', met('<= 1e-4', difference <= 1e-4)))
    return rows


def backends(device):
    return ('torch', 'openvino') if device.type == 'cpu' else ('torch',)


def measure_backends(args, device, weights):
    """Per backend, the network's time per snippet of 1 and of 10 crops: Extractor on random frames, the default
    batch (CLIPS_PER_BATCH clips), the best of --repeats after a warm-up; OpenVINO's features against PyTorch's."""
    if device.type != 'cpu':
        return []
    networks = {backend: load_network(weights, device, backend) for backend in backends(device)}
    rows = []
    for crops in (1, 10):
        frames = np.random.default_rng(crops).integers(
            0, 256, (CLIPS_PER_BATCH // crops * 16, HEIGHT, WIDTH, 3), np.uint8)
        seconds, features = {}, {}
        for backend, network in networks.items():
            extract = Extractor(network, crops, device)
            extract(frames)
            runs = [timed(lambda: extract(frames), device) for _ in range(args.repeats)]
            seconds[backend] = min(s for s, _ in runs) / (len(frames) // 16)
            features[backend] = runs[-1][1]
        ratio = seconds['openvino'] / seconds['torch']
        goal = 0.5 if crops == 1 else 0.7
        difference = np.abs(features['openvino'] - features['torch']).max() / np.abs(features['torch']).max()
        rows.append((f'the network, {crops} crop{"s" * (crops > 1)}, {CLIPS_PER_BATCH // crops} snippets per batch: '
                     'PyTorch / OpenVINO', f'{seconds["torch"]:.3f} s / {seconds["openvino"]:.3f} s',
                     f'per snippet; OpenVINO {ratio:.2f}x PyTorch\'s time; features within {difference:.1e} of the '
                     'largest', '', met(f'<= {goal:g}x', ratio <= goal) + '; ' + met('<= 1e-5', difference <= 1e-5)))
    return rows


def measure_processes(args, device, videos, weights, folder):
    """Whole extract_features.py runs: the start-up (a 1-snippet video, 1 crop; OpenVINO with an empty cache, then
    a filled one) and the short and the long video per backend: wall time and peak memory."""
    def process(video, backend, log, *flags):
        command = [sys.executable, os.path.join(REPO, 'extract_features.py'), video, '--weights', weights,
                   '--out-dir', os.path.join(folder, 'out'), '--overwrite', '--device', device.type,
                   '--backend', backend, *flags]
        return run_process(command, os.path.join(folder, log))

    rows, walls = [], {}
    shutil.rmtree(os.environ[CACHE_VARIABLE], ignore_errors=True)
    for backend, cache in [('torch', '')] + [('openvino', 'empty'), ('openvino', 'filled')] * (device.type == 'cpu'):
        walls[backend, cache], peak, _ = process(videos['one'], backend, f'start-{backend}{cache}.log', '--crops', '1')
        goal = ''
        if cache == 'filled':
            goal = met("<= PyTorch's + 2 s", walls[backend, cache] <= walls['torch', ''] + 2)
        rows.append((f'start-up: extract_features.py --backend {backend}, 1 snippet, 1 crop'
                     + (f', the OpenVINO cache {cache}' if cache else ''), f'{walls[backend, cache]:.1f} s',
                     'the whole process', f'{peak / GB:.2f} GB', goal))
    for backend in backends(device):
        peaks = {}
        for name in ('short', 'long'):
            wall, peaks[name], output = process(videos[name], backend, f'{name}-{backend}.log',
                                                '--batch-size', str(args.batch_size))
            snippets = args.snippets * (4 if name == 'long' else 1)
            goal = met("<= 1.15x the short video's", peaks['long'] <= 1.15 * peaks['short']) if name == 'long' else ''
            rows.append((f'extract_features.py --backend {backend}, {snippets} snippets, 10 crops (process: start, '
                         'weights, extraction)', f'{wall:.1f} s', output.strip().splitlines()[-1].split('; ')[-1],
                         f'{peaks[name] / GB:.2f} GB', goal))
    return rows


def main(args):
    device = pick_device(args.device)
    if not os.path.isfile(TIME):
        sys.exit(f'bench_video.py: needs GNU time as {TIME} to measure peak memory (apt-get install time)')
    if args.snippets < args.batch_size:
        sys.exit(f'bench_video.py: --snippets ({args.snippets}) must be at least --batch-size ({args.batch_size}), '
                 'so that both videos run whole batches')
    folder = os.path.join(REPO, 'bench_data', 'video')
    os.makedirs(folder, exist_ok=True)
    before = os.getloadavg()[0]
    os.environ[CACHE_VARIABLE] = os.path.join(folder, 'openvino-cache')  # this process's and extract_features.py's
    weights = os.path.join(folder, 'random_i3d_r50.pth')
    if not os.path.isfile(weights):
        write_random_weights(weights)
    videos = {}
    for name, frames in (('one', 16), ('warm-up', args.batch_size * 16), ('short', args.snippets * 16 + 7),
                         ('long', 4 * args.snippets * 16 + 7)):  # a tail of 7 frames, dropped
        videos[name] = os.path.join(folder, f'{name}-{args.width}x{args.height}-{frames}.mp4')
        if not os.path.isfile(videos[name]):
            write_video(videos[name], frames, args.width, args.height, seed=frames)

    rows = (measure_in_process(args, device, videos, weights) + measure_processes(args, device, videos, weights, folder)
            + measure_backends(args, device, weights))
    after = os.getloadavg()[0]
    title = (f'**{machine(device)}.** Videos {args.width} x {args.height}, {args.snippets} and {4 * args.snippets} '
             f'snippets (and a dropped tail of 7 frames), 10 crops, random weights; in-process times are the best '
             f'of {args.repeats}. Load average (1 min) {before:.1f} before, {after:.1f} after.')
    publish(rows, title, os.path.join(folder, f'bench-{device.type}.md'))


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--snippets', type=int, default=4, help='snippets of the short video; the long one has 4x')
    parser.add_argument('--batch-size', type=int, default=CLIPS_PER_BATCH // 10,
                        help="extract_features.py's --batch-size (snippets per batch)")
    parser.add_argument('--repeats', type=int, default=3, help='in-process timings of each way (the best is kept)')
    parser.add_argument('--width', type=int, default=320)
    parser.add_argument('--height', type=int, default=240)
    parser.add_argument('--device', default='cpu', choices=['auto', 'cpu', 'cuda'])
    return parser


if __name__ == '__main__':
    main(build_parser().parse_args())
