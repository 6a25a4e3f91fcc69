"""Benchmark watch.py: many cameras in one process against as many live.py processes, played in real time.

    python bench_watch.py                                   # 2-minute streams and a 30-minute soak: an hour or more
    python bench_watch.py --minutes 0.5 --soak-minutes 0    # quicker, to try it (no soak)
    python bench_watch.py --device cuda                     # and how many 10-crop cameras one GPU keeps up with

Every camera is a generated 320 x 240, 30 fps H.264 video in MPEG-TS (bench_common.write_video: moving coloured
squares) of --minutes, played at its frame rate as a camera delivers it (`realtime: true` for watch.py,
--realtime for live.py): 1 crop, hop 1, --max-lag, --threshold, random I3D weights in the real key layout and a
random checkpoint (bench_data/watch/): only speed, memory and disk are measured. watch.py runs with
`record: {features: true, clips: true}`, live.py with --clips (it always writes its features), so both write the
same kinds of output. Each process runs under GNU time (its peak memory). From its JSON Lines (watch.py's: one
stream per `camera` field) come each stream's dropped frames (its end line's dropped_frames) and the latency of
its scores written while the stream played (end_time + latency within its duration, both on its clock).
- Keeping up: one watch.py with k cameras, and k live.py processes at once, for k = 1, 2, 3, ... until a camera
  drops a frame (or k passes --max-cameras): the largest k with none dropped. A camera drops only once it is
  --max-lag behind, and what waits at a stream's end is scored without dropping, so the streams must be longer
  than --max-lag (the default 2 minutes is 12 times the default 10 s): a camera that falls behind by less over
  its stream shows as keeping up; the table gives the slowest live.py stream's realtime_factor beside it
  (watch.py's cameras share one network and report none).
- Peak memory for 1, 2 and 4 cameras (those up to --max-cameras): watch.py's against the sum of the k live.py
  processes' peaks (the runs above where they were made). Goal: each camera beyond the first adds at most
  150 MB to watch.py's.
- Latency per camera at the count that keeps up (at least 1): p50 and p99. Goal: p99 <= 1 s for every camera.
- Disk per camera-hour by kind of output (scores CSV, segment JSON reports, events.jsonl, clips, features,
  anything else), from the watch.py run at that count: the bytes scaled from the run's camera-minutes to a
  camera-hour, except the reports (one per segment, rewritten in place): their mean size times the segments of
  an hour (--segment-minutes). Goal: the scores at most 2 MB a camera-hour. Clips come with events, and so
  depend on --threshold (the table gives the events' count): the random checkpoint scores these streams near
  0.52 throughout, so at the default 0.5 each stream is one long event and the clips' figure is the most they
  can take (every minute in a clip); --threshold 1 gives none.
- Soak (--soak-minutes; 0: none): one watch.py at that count on --soak-minutes streams, sampled every
  --sample-seconds from /proc/<pid>: its peak RSS so far (VmHWM in status), its open files (fd) and threads
  (task). Goals: the peak at the streams' end within 1.05x the peak at --warmup-minutes; open files and threads
  the same in every sample from --warmup-minutes to the streams' end.
- --device cuda: one watch.py with k 10-crop cameras, k = 1, 2, 4, ... until one drops a frame (or k passes
  --max-gpu-cameras): the largest k with none dropped is what one GPU keeps up with.
Prints a Markdown table naming the machine and the load, and writes it to <--out>/bench-watch-<device>.md.
"""
import argparse
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import yaml

from bench_common import (FPS, GB, REPO, SIZE, TIME, json_records, machine, met, percentile, publish,
                          random_checkpoint, run_process, stream_run, stream_video, write_random_weights, written_once)
from cli import HelpFormatter, check_positive, pick_device, run
from dataset import FEATURE_SUFFIX, FRAMES_PER_SNIPPET, DataError, write_atomic
from stream import LIVE_MAX_LAG

MB = 1e6
LATENCY_GOAL = 1.0              # seconds, every camera's p99
CAMERA_MEMORY_GOAL = 150 * MB   # what each camera beyond the first may add to watch.py's peak
SCORES_DISK_GOAL = 2 * MB       # the scores of a camera-hour
SOAK_MEMORY_GOAL = 1.05         # the peak at the soak's end over the peak at its warm-up
MEMORY_COUNTS = (1, 2, 4)       # cameras whose peak memory is compared
KINDS = ('scores CSV', 'segment JSON reports', 'events.jsonl', 'clips', 'features', 'other (the review page)')


class Measured(NamedTuple):
    """k cameras in one watch.py or in k live.py processes."""
    runs: dict    # camera: its Run
    peak: int     # bytes: watch.py's, or the sum of the live.py processes'
    out_dir: str  # what they wrote


def cameras(k):
    return [f'cam{i:02d}' for i in range(k)]


def fresh(folder):
    """folder, emptied: a run never meets an earlier run's outputs (live.py refuses or renumbers them)."""
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    return folder


def dropped(measured):
    return sum(r.dropped for r in measured.runs.values())


# ---------------------------------------------------------------------------------------------- watch.py
def write_config(args, device, video, k, crops, folder):
    """<folder>/cameras.yaml: k cameras playing video in real time; its out_dir <folder>/out."""
    config = {'model': {'ckpt': os.path.join(args.out, 'random_model.pth'),
                        'weights': os.path.join(args.out, 'random_i3d.pth'), 'crops': crops, 'device': device.type},
              'detect': {'hop': 1, 'threshold': args.threshold, 'max_lag': args.max_lag},
              'record': {'out_dir': os.path.join(folder, 'out'), 'segment_minutes': args.segment_minutes,
                         'features': True, 'clips': True},
              'cameras': {name: {'source': video, 'realtime': True} for name in cameras(k)}}
    path = os.path.join(folder, 'cameras.yaml')
    write_atomic(path, lambda f: f.write(yaml.safe_dump(config, sort_keys=False).encode()))
    return path


def camera_runs(output, k, peak, wall, log):
    """{camera: its Run} from watch.py's output; every camera's records end with its end line."""
    records = json_records(output)
    runs = {}
    for camera in cameras(k):
        mine = [r for r in records if r.get('camera') == camera and 'type' in r]
        ends = [i for i, r in enumerate(mine) if r['type'] == 'end']
        if not ends:
            raise DataError(f'watch.py wrote no end line for camera {camera} (its output in {log})')
        runs[camera] = stream_run(mine[:ends[-1] + 1], peak, wall)
    return runs


def watch(args, device, video, k, crops=1):
    """One watch.py process with k cameras, each playing video in real time, hop 1."""
    name = f'watch{k}' + ('' if crops == 1 else f'-crops{crops}')
    folder = fresh(os.path.join(args.out, name))
    config = write_config(args, device, video, k, crops, folder)
    log = os.path.join(args.out, name + '.log')
    print(f'bench_watch.py: running {name}: one watch.py, {k} camera(s), {crops} crop(s) (its output in {log})',
          flush=True)
    wall, peak, output = run_process([sys.executable, args.watch_script, config], log)
    return Measured(camera_runs(output, k, peak, wall, log), peak, os.path.join(folder, 'out'))


# ---------------------------------------------------------------------------------------------- live.py
def live(args, device, video, out_dir, name):
    """One live.py process playing video in real time, hop 1, 1 crop."""
    command = [sys.executable, os.path.join(REPO, 'live.py'), video, '--realtime', '--hop', '1', '--crops', '1',
               '--ckpt', os.path.join(args.out, 'random_model.pth'),
               '--weights', os.path.join(args.out, 'random_i3d.pth'), '--max-lag', str(args.max_lag),
               '--threshold', str(args.threshold), '--device', device.type, '--clips', '--out-dir', out_dir,
               '--name', name]
    log = os.path.join(args.out, name + '.log')
    wall, peak, output = run_process(command, log)
    records = json_records(output)
    if not records or records[-1]['type'] != 'end':
        raise DataError(f'{name}: live.py wrote no end line (its output in {log})')
    return stream_run(records, peak, wall)


def lives(args, device, video, k):
    """k live.py processes at once, each playing video in real time."""
    folder = fresh(os.path.join(args.out, f'live{k}'))
    print(f'bench_watch.py: running live{k}: {k} live.py process(es) at once (their output in '
          f'{os.path.join(args.out, f"live{k}-*.log")})', flush=True)
    with ThreadPoolExecutor(k) as pool:
        runs = list(pool.map(lambda i: live(args, device, video, folder, f'live{k}-{i}'), range(k)))
    return Measured(dict(zip(cameras(k), runs)), sum(r.peak for r in runs), folder)


# ---------------------------------------------------------------------------------------------- measuring
def keep_up(measure, step, most):
    """({k: measure(k)} for k = 1, step(1), ... until a camera drops a frame or k passes most, the largest k
    with none dropped)."""
    measured, k, kept_up = {}, 1, 0
    while k <= most:
        measured[k] = measure(k)
        if dropped(measured[k]):
            break
        kept_up, k = k, step(k)
    return measured, kept_up


def speed_text(m):
    frames = sum(r.frames for r in m.runs.values())
    factors = [r.realtime_factor for r in m.runs.values() if r.realtime_factor is not None]
    slowest = f'; the slowest stream {min(factors):.2f}x real time' if factors else ''
    return (f'{dropped(m)} of {frames} frames dropped ({dropped(m) / frames:.1%}){slowest}; the process(es) took up to '
            f'{max(r.wall for r in m.runs.values()):.0f} s for {frames / len(m.runs) / FPS:.0f} s of video')


def latency_text(m):
    p50s = [percentile(r.played, 50) for r in m.runs.values()]
    p99s = [percentile(r.played, 99) for r in m.runs.values()]
    return (f'latency per camera: p50 {min(p50s):.2f} to {max(p50s):.2f} s, p99 {min(p99s):.2f} to {max(p99s):.2f} s '
            f'({sum(len(r.played) for r in m.runs.values())} scores while they played)')


def keep_up_rows(measured, kept_up, each, label):
    """A row for each k measured (each(k) names it), and the largest k that kept up (label names the process)."""
    rows = [(each(k), latency_text(m), speed_text(m), f'{m.peak / GB:.2f} GB', '')
            for k, m in sorted(measured.items())]
    at_least = 'at least ' if not dropped(measured[max(measured)]) else ''  # --max-cameras reached
    return rows + [(f'the most {label} that keep up (none dropping a frame)', f'{at_least}{kept_up}', '', '', '')]


def memory_rows(args, device, video, watched, lived):
    rows = []
    for k in (k for k in MEMORY_COUNTS if k <= args.max_cameras):
        watched[k] = watched.get(k) or watch(args, device, video, k)
        lived[k] = lived.get(k) or lives(args, device, video, k)
        w, one = watched[k].peak, watched[1].peak
        per_camera = (w - one) / max(k - 1, 1)
        goal = '' if k == 1 else (f'{per_camera / MB:.0f} MB more per camera; '
                                  + met(f'<= {CAMERA_MEMORY_GOAL / MB:.0f} MB', per_camera <= CAMERA_MEMORY_GOAL))
        rows.append((f'peak memory, {k} camera(s): one watch.py against {k} live.py (the sum of their peaks)', '',
                     f'{w / lived[k].peak:.2f}x; frames dropped: watch.py {dropped(watched[k])}, live.py '
                     f'{dropped(lived[k])}', f'{w / GB:.2f} GB against {lived[k].peak / GB:.2f} GB', goal))
    return rows


def latency_rows(watched, watch_count, lived, live_count):
    rows = []
    for what, m in ((f'one watch.py, {watch_count} camera(s)', watched[watch_count]),
                    (f'{live_count} live.py', lived[live_count])):
        worst = max(percentile(r.played, 99) for r in m.runs.values())
        rows.append((f'latency at the count that keeps up (at least 1): {what}', latency_text(m), speed_text(m), '',
                     met(f'p99 <= {LATENCY_GOAL:g} s for every camera', worst <= LATENCY_GOAL)))
    return rows


def kind(name):
    if name == 'events.jsonl':
        return 'events.jsonl'
    for suffix, what in (('.csv', 'scores CSV'), ('.json', 'segment JSON reports'), ('.mp4', 'clips'),
                         (FEATURE_SUFFIX, 'features')):
        if name.endswith(suffix):
            return what
    return 'other (the review page)'


def disk_rows(args, m):
    """Bytes per camera-hour by kind of output, from m's out_dir."""
    sizes, files, events = dict.fromkeys(KINDS, 0), dict.fromkeys(KINDS, 0), 0
    for folder, _, names in os.walk(m.out_dir):
        for name in names:
            path = os.path.join(folder, name)
            sizes[kind(name)] += os.path.getsize(path)
            files[kind(name)] += 1
            if name == 'events.jsonl':
                events += sum(1 for line in open(path) if line.strip())
    k = len(m.runs)
    hours = k * args.minutes / 60
    rows = []
    for what in KINDS:
        if what == 'segment JSON reports':
            per_hour = sizes[what] / max(files[what], 1) * 60 / args.segment_minutes
            how = f'{files[what]} reports of {sizes[what] / max(files[what], 1) / 1e3:.1f} kB on average'
        else:
            per_hour = sizes[what] / hours
            how = f'{sizes[what] / MB:.3f} MB in {files[what]} files'
        goal = met(f'<= {SCORES_DISK_GOAL / MB:g} MB', per_hour <= SCORES_DISK_GOAL) if what == 'scores CSV' else ''
        rows.append((f'disk per camera-hour: {what}', '', f'{how} for {k} x {args.minutes:g} camera-minutes'
                     + (f' ({events} events)' if what in ('events.jsonl', 'clips') else ''),
                     f'{per_hour / MB:.2f} MB', goal))
    return rows


def proc_sample(pid):
    """(peak RSS so far in bytes, open files, threads) of a running process, or None once it has gone."""
    try:
        status = open(f'/proc/{pid}/status').read()
        peak = int(next(line.split()[1] for line in status.splitlines() if line.startswith('VmHWM:'))) * 1024
        return peak, len(os.listdir(f'/proc/{pid}/fd')), len(os.listdir(f'/proc/{pid}/task'))
    except (FileNotFoundError, ProcessLookupError, StopIteration):
        return None


def soak(args, device, k):
    """One watch.py with k cameras on --soak-minutes streams, sampled from /proc: [(seconds, peak, files,
    threads)] and its Measured (whose peak is the last sample's)."""
    video = stream_video(args.out, args.soak_minutes)
    folder = fresh(os.path.join(args.out, 'soak'))
    config = write_config(args, device, video, k, 1, folder)
    log = os.path.join(args.out, 'soak.log')
    print(f'bench_watch.py: running the soak: one watch.py, {k} camera(s), {args.soak_minutes:g}-minute streams '
          f'(its output in {log})', flush=True)
    samples = []
    with open(log, 'w') as out:
        start = time.monotonic()
        process = subprocess.Popen([sys.executable, args.watch_script, config], stdout=out, stderr=subprocess.STDOUT)
        while process.poll() is None:
            sample = proc_sample(process.pid)
            if sample:
                samples.append((time.monotonic() - start, *sample))
            try:
                process.wait(args.sample_seconds)
            except subprocess.TimeoutExpired:
                pass
        wall = time.monotonic() - start
    output = open(log).read()
    if process.returncode:
        sys.exit(f'bench_watch.py: the soak\'s watch.py failed (exit {process.returncode}):\n{output[-3000:]}')
    if not samples:
        raise DataError(f'the soak\'s watch.py ended before a sample was taken (its output in {log})')
    return samples, Measured(camera_runs(output, k, samples[-1][1], wall, log), samples[-1][1], folder)


def soak_rows(args, device, k):
    if not args.soak_minutes:
        return [('soak', '', 'skipped (--soak-minutes 0)', '', '')]
    samples, m = soak(args, device, k)
    # from the first sample at the warm-up to the last while the streams still played (they start after it)
    window = [s for s in samples if args.warmup_minutes * 60 <= s[0] <= args.soak_minutes * 60]
    if not window:
        raise DataError(f'the soak took no sample between minute {args.warmup_minutes:g} and '
                        f'{args.soak_minutes:g} (watch.py ended at {samples[-1][0] / 60:.1f} minutes)')
    (t0, peak0, _, _), (t1, peak1, _, _) = window[0], window[-1]
    files, threads = [s[2] for s in window], [s[3] for s in window]
    return [(f'soak: one watch.py, {k} camera(s), {args.soak_minutes:g}-minute streams', latency_text(m),
             speed_text(m), f'{samples[-1][1] / GB:.2f} GB (VmHWM at its last sample)', ''),
            (f'soak: peak memory (VmHWM) at minute {t0 / 60:.1f} and at minute {t1 / 60:.1f}', '',
             f'{peak1 / peak0:.3f}x', f'{peak0 / GB:.3f} GB, then {peak1 / GB:.3f} GB',
             met(f'<= {SOAK_MEMORY_GOAL:g}x', peak1 <= SOAK_MEMORY_GOAL * peak0)),
            (f'soak: open files and threads from minute {t0 / 60:.1f} to {t1 / 60:.1f} ({len(window)} samples, '
             f'every {args.sample_seconds:g} s)', '', f'open files {min(files)} to {max(files)}, threads '
             f'{min(threads)} to {max(threads)}', '',
             met('constant', min(files) == max(files) and min(threads) == max(threads)))]


def gpu_rows(args, device, video):
    if device.type != 'cuda':
        return [('10-crop cameras one GPU keeps up with (one watch.py)', '',
                 'skipped: measured with --device cuda only', '', '')]
    measured, kept_up = keep_up(lambda k: watch(args, device, video, k, crops=10), lambda k: 2 * k,
                                args.max_gpu_cameras)
    return keep_up_rows(measured, kept_up, lambda k: f'one watch.py, {k} camera(s), 10 crops',
                        '10-crop cameras in one watch.py on one GPU')


def main(args):
    check_positive(args, 'minutes', 'max_lag', 'max_cameras', 'max_gpu_cameras', 'segment_minutes', 'warmup_minutes',
                   'sample_seconds')
    if round(args.minutes * 60 * FPS) < FRAMES_PER_SNIPPET:
        raise DataError(f'--minutes {args.minutes:g}: a stream needs at least one snippet ({FRAMES_PER_SNIPPET} '
                        f'frames at {FPS} fps)')
    if args.minutes * 60 <= args.max_lag:
        raise DataError(f'--minutes {args.minutes:g}: a stream no longer than --max-lag ({args.max_lag:g} s) never '
                        'drops a frame, however slow: keeping up would not be measured')
    if args.soak_minutes < 0 or (args.soak_minutes and args.soak_minutes <= args.warmup_minutes):
        raise DataError(f'--soak-minutes ({args.soak_minutes:g}) must be 0 (no soak) or more than --warmup-minutes '
                        f'({args.warmup_minutes:g})')
    if not 0 <= args.threshold <= 1:
        raise DataError(f'--threshold must be within 0 to 1, got {args.threshold:g}')
    if not os.path.isfile(args.watch_script):
        raise DataError(f'--watch-script {args.watch_script}: no such file')
    if not os.path.isfile(TIME):
        raise DataError(f'needs GNU time as {TIME} to measure peak memory (apt-get install time)')
    device = pick_device(args.device)
    args.out = os.path.abspath(args.out)
    os.makedirs(args.out, exist_ok=True)
    before = os.getloadavg()[0]
    written_once(os.path.join(args.out, 'random_i3d.pth'), write_random_weights)
    written_once(os.path.join(args.out, 'random_model.pth'), random_checkpoint)
    video = stream_video(args.out, args.minutes)

    watched, watch_count = keep_up(lambda k: watch(args, device, video, k), lambda k: k + 1, args.max_cameras)
    lived, live_count = keep_up(lambda k: lives(args, device, video, k), lambda k: k + 1, args.max_cameras)
    rows = (keep_up_rows(watched, watch_count, lambda k: f'one watch.py, {k} camera(s)', 'cameras in one watch.py')
            + keep_up_rows(lived, live_count, lambda k: f'{k} live.py at once',
                           'live.py processes at once (a camera each)')
            + latency_rows(watched, max(watch_count, 1), lived, max(live_count, 1))
            + memory_rows(args, device, video, watched, lived)
            + disk_rows(args, watched[max(watch_count, 1)])
            + soak_rows(args, device, max(watch_count, 1))
            + gpu_rows(args, device, video))
    after = os.getloadavg()[0]
    title = (f'**{machine(device)}.** watch.py (k cameras in one process) against k live.py processes, on generated '
             f'{SIZE[0]} x {SIZE[1]} H.264 videos at {FPS} fps played in real time, 1 crop, hop 1, --max-lag '
             f'{args.max_lag:g} s, threshold {args.threshold:g}, {args.minutes:g}-minute streams, '
             f'{args.segment_minutes:g}-minute segments, features and clips written, random weights. Load average '
             f'(1 min) {before:.1f} before, {after:.1f} after.')
    publish(rows, title, os.path.join(args.out, f'bench-watch-{device.type}.md'))


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument('--minutes', type=float, default=2.0,
                        help='each camera\'s stream, in minutes: the keeping-up, memory and disk runs')
    parser.add_argument('--max-cameras', type=int, default=16, help='the most cameras (or live.py processes) tried')
    parser.add_argument('--max-gpu-cameras', type=int, default=64,
                        help='the most 10-crop cameras tried on a GPU (--device cuda)')
    parser.add_argument('--max-lag', type=float, default=LIVE_MAX_LAG, help="every camera's max_lag, in seconds")
    parser.add_argument('--threshold', type=float, default=0.5, help="every camera's threshold (events and clips)")
    parser.add_argument('--segment-minutes', type=float, default=10.0, help="watch.py's record.segment_minutes")
    parser.add_argument('--soak-minutes', type=float, default=30.0,
                        help='the soak\'s streams, in minutes (0: no soak)')
    parser.add_argument('--warmup-minutes', type=float, default=5.0,
                        help='the soak\'s samples from then on are compared')
    parser.add_argument('--sample-seconds', type=float, default=5.0, help="seconds between the soak's samples")
    parser.add_argument('--device', default='cpu', choices=['auto', 'cpu', 'cuda'])
    parser.add_argument('--watch-script', default=os.path.join(REPO, 'watch.py'),
                        help='the watch.py to measure (another checkout\'s, say), run as '
                             '`python WATCH_SCRIPT cameras.yaml`')
    parser.add_argument('--out', default=os.path.join('bench_data', 'watch'),
                        help='the videos, weights, configurations, logs, outputs and the table')
    return parser


if __name__ == '__main__':
    run(main, build_parser().parse_args(), 'bench_watch.py')
