"""What the benchmarks (bench.py, bench_video.py, bench_live.py, bench_watch.py) share: the machine's description,
a timer, the goal column and the table they print, the generated inputs, and what a live run measured."""
import json
import math
import os
import platform
import subprocess
import sys
import time
from typing import NamedTuple

import av
import numpy as np
import torch
import torch.nn as nn

from dataset import write_atomic
from i3d import I3DResNet50
from model import VideoClassifier, save_checkpoint

REPO = os.path.dirname(os.path.abspath(__file__))
TIME = '/usr/bin/time'  # GNU time, for the peak memory of a process (Debian's package time)
GB = 1e9
SIZE, FPS = (320, 240), 30  # the live benchmarks' generated streams (write_video's rate)


class Run(NamedTuple):
    """What one live stream measured (a live.py run, or one camera of a watch.py run)."""
    frames: int
    dropped: int
    realtime_factor: float  # None for watch.py's cameras, which share one network
    played: list   # latencies of the scores written while the stream played
    drained: list  # latencies of the scores written after its end
    peak: int      # bytes
    wall: float    # seconds the process took, start and the drain after the stream's end included


def percentile(values, q):
    return float(np.percentile(values, q)) if values else math.nan


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


def publish(rows, title, path):
    """Print the table of rows under title, and write it to path (atomically)."""
    text = table(rows, title)
    print(text)
    write_atomic(path, lambda f: f.write(text.encode() + b'\n'))
    print(f'\n(written to {path})')


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


def written_once(path, write):
    """path, written by write(a partial name with path's extension) and renamed, unless it exists already."""
    if not os.path.isfile(path):
        partial = os.path.join(os.path.dirname(path), 'partial-' + os.path.basename(path))
        write(partial)
        os.replace(partial, path)
    return path


def stream_video(folder, minutes):
    """A generated SIZE, FPS stream of minutes in MPEG-TS (written once into folder)."""
    frames = round(minutes * 60 * FPS)
    return written_once(os.path.join(folder, f'stream-{SIZE[0]}x{SIZE[1]}-{frames}.ts'),
                        lambda path: write_video(path, frames, *SIZE, seed=frames))


def random_checkpoint(path):
    torch.manual_seed(0)
    save_checkpoint(VideoClassifier(2048, 64, 3), path)
    return path


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


def json_records(output):
    """The JSON Lines records in a process's output (its log lines aside)."""
    return [json.loads(line) for line in output.splitlines() if line.startswith('{')]


def stream_run(records, peak, wall):
    """The Run of one stream's records (live.py's, or one camera's of watch.py), the last its end line: the
    scores split by whether they came while the stream played (end_time + latency within its duration, both on
    the stream's clock) or after its end."""
    end = records[-1]
    duration = end['frames'] / FPS
    scores = [r for r in records if r['type'] == 'score']
    return Run(end['frames'], end['dropped_frames'], end.get('realtime_factor'),  # watch.py's cameras: none
               [r['latency'] for r in scores if r['end_time'] + r['latency'] <= duration],
               [r['latency'] for r in scores if r['end_time'] + r['latency'] > duration], peak, wall)
