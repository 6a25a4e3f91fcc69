"""What the benchmarks (bench.py, bench_video.py, bench_live.py) share: the machine's description, a timer, the
goal column and the table they print."""
import os
import platform
import subprocess
import sys
import time

import av
import numpy as np
import torch
import torch.nn as nn

from i3d import I3DResNet50

REPO = os.path.dirname(os.path.abspath(__file__))
TIME = '/usr/bin/time'  # GNU time, for the peak memory of a process (Debian's package time)
GB = 1e9


def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def timed(f, repeats, device):
    """(median wall time of repeats calls of f, the last call's result)."""
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        result = f()
        sync(device)
        times.append(time.perf_counter() - start)
    return float(np.median(times)), result


def machine(device):
    model = next((line.split(':', 1)[1].strip() for line in open('/proc/cpuinfo') if line.startswith('model name')),
                 platform.processor())
    memory = int(next(line.split()[1] for line in open('/proc/meminfo') if line.startswith('MemTotal'))) * 1024
    text = (f'{model}, {os.cpu_count()} cores, {memory / GB:.0f} GB RAM; torch {torch.__version__}, '
            f'{torch.get_num_threads()} threads')
    return text + (f'; {torch.cuda.get_device_name(device)}' if device.type == 'cuda' else '; device cpu')


def met(goal, ok):
    return f'{goal}: {"met" if ok else "**not met**"}'


def table(rows, title):
    lines = [title, '', '| measurement | time | rate, ratio | peak memory | goal |', '|---|---|---|---|---|']
    return '\n'.join(lines + ['| ' + ' | '.join(row) + ' |' for row in rows])


def write_video(path, n_frames, width, height, seed=0):
    """Coloured 16-pixel squares moving 3 pixels per frame, H.264 (MPEG-4 part 2 where FFmpeg lacks libx264)."""
    rng = np.random.default_rng(seed)
    pattern = np.kron(rng.integers(0, 256, (height // 16 + 1, width // 16 + 32, 3), dtype=np.uint8),
                      np.ones((16, 16, 1), np.uint8))[:height]
    codec = 'libx264' if 'libx264' in av.codecs_available else 'mpeg4'
    with av.open(path, 'w') as container:
        stream = container.add_stream(codec, rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, 'yuv420p'
        for t in range(n_frames):
            shift = 3 * t % (pattern.shape[1] - width)
            frame = np.ascontiguousarray(pattern[:, shift:shift + width])
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format='rgb24')))
        container.mux(stream.encode())


def write_random_weights(path, seed=0):
    """Random weights with the keys and shapes of i3d_r50_kinetics.pth: He-initialised convolutions and
    BatchNorm statistics near identity, which keep the activations' scale (no denormal numbers)."""
    torch.manual_seed(seed)
    network = I3DResNet50()
    for module in network.modules():
        if isinstance(module, nn.Conv3d):
            nn.init.kaiming_normal_(module.weight)
        elif isinstance(module, nn.BatchNorm3d):
            nn.init.uniform_(module.weight, 0.2, 0.6)
            nn.init.normal_(module.bias, 0, 0.1)
            nn.init.normal_(module.running_mean, 0, 0.1)
            nn.init.uniform_(module.running_var, 0.5, 1.5)
    state = {k: v for k, v in network.state_dict().items() if not k.endswith('num_batches_tracked')}
    state.update({'fc.weight': 0.01 * torch.randn(400, 2048), 'fc.bias': torch.zeros(400)})
    torch.save(state, path)


def run_process(command, log):
    """Run command under GNU time; returns (wall seconds, peak RSS in bytes, its output)."""
    peak = log + '.peak'
    with open(log, 'w') as out:
        start = time.perf_counter()
        returncode = subprocess.call([TIME, '-o', peak, '-f', '%M'] + command, stdout=out, stderr=subprocess.STDOUT)
        wall = time.perf_counter() - start
    output = open(log).read()
    if returncode:
        sys.exit(f'{os.path.basename(sys.argv[0])}: {" ".join(command)} failed (exit {returncode}):\n{output[-3000:]}')
    return wall, int(open(peak).read().split()[-1]) * 1024, output
