"""What the benchmarks (bench.py, bench_video.py, bench_live.py) share: the machine's description, a timer, the
goal column and the table they print."""
import os
import platform
import time

import numpy as np
import torch

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
