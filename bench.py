"""Benchmark evaluation, training and loading on a UCF-Crime-shaped synthetic set, against the authors' plain loop.

    python bench.py                  # builds bench_data/full once (about 16 GB, minutes), then measures
    python bench.py --small          # a small set (650 MB), to try bench.py itself
    python bench.py --device cuda
    python bench.py --video          # feature extraction instead: bench_video.py (its flags follow --video)

The full set has the real test set (290 videos, 69,634 snippets, 10 crops, F = 2048: 5.7 GB) and the
real number of train videos (1,610, pooled to [10, 32, F]: 4.2 GB); its raw train videos are shorter
than UCF-Crime's (40 snippets on average instead of about 490), which keeps them at 5 GB instead of 65.

In one process it times the float32 matmul that every evaluation must do (the floor), the fast
evaluation, the authors' per-video loop, a training step, and loading; then it runs whole processes
(preformer_feature.py, test.py, train.py and ones that follow the authors' procedure) and measures their
wall time, peak memory and, for training, peak private memory (RssAnon). test.py and the authors' test
process run in turn, both cold (the files evicted from the page cache first, as after a reboot) and warm
(the files read just before, as when a user runs a second test). It prints a Markdown table with the
machine, and writes it to the set's folder.
"""
import argparse
import csv
import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import torch
from sklearn.metrics import auc, roc_curve

import synthetic
from bench_common import GB, TIME, machine, met, table, timed
from cli import pick_device
from dataset import FRAMES_PER_SNIPPET, TestSet, is_normal, load_train_pools, read_list
from metrics import frame_auc
from model import VideoClassifier, checkpoint_name, load_checkpoint, save_checkpoint
from protocol import snippet_scores
from train import PairedSampler, official_radam, train_step

REPO = os.path.dirname(os.path.abspath(__file__))
TEST_LIST, GT, TRAIN_LIST = 'list/ucf-i3d-test.list', 'list/gt-ucf.npy', 'list/pre-ucf-i3d-train-32.list'
SIZES = {'full': {**synthetic.FULL, 'train_snippets': 1610 * 40}, 'small': synthetic.SMALL}
FEATURES, SEGMENTS, BATCH, SEED = 2048, 32, 32, 1111  # the scripts' defaults


# ---------------------------------------------------------------------------------------------- the authors' way
@torch.no_grad()
def authors_evaluate(model, videos, gt, split_size, device):
    """Their test loop: a DataLoader over per-video arrays [T, crops, F]; per video and chunk of split_size
    snippets, model() on the crops, the mean over crops for each of the chunk's snippets; sklearn's AUC on frames."""
    model.eval()
    scores = []
    for x in torch.utils.data.DataLoader(videos, batch_size=1):  # iterating it draws one seed, as theirs did
        x = x[0].to(device).permute(1, 0, 2)  # [crops, T, F]
        for chunk in torch.split(x, split_size, dim=1):
            scores.append(model(chunk).mean(0).repeat(chunk.shape[1]))
    fpr, tpr, _ = roc_curve(gt, np.repeat(torch.cat(scores).cpu().numpy(), FRAMES_PER_SNIPPET))
    return auc(fpr, tpr)


def authors_read(path):
    """How they read every feature file: np.load, then np.array(..., dtype=np.float32), a copy."""
    return np.array(np.load(path), dtype=np.float32)


def authors_load(list_path):
    """Their test Dataset (is_onmemory=True): the list of every test file's array."""
    return [authors_read(p) for p in read_list(list_path)]


def authors_pools(list_path):
    """Their train features: every crop of every pooled video, normal and anomalous, as one array each in memory."""
    paths = read_list(list_path)
    return [np.concatenate([authors_read(p) for p in paths if is_normal(p) == normal]) for normal in (True, False)]


def next_step(model, optimizer, schedule, sampler, normal, anomalous):
    """train.py's iteration before its evaluation, starting a new epoch whenever one is over."""
    model.train()
    if sampler.epoch_over():
        sampler.new_epoch()
    train_step(model, optimizer, schedule, sampler, normal, anomalous)


def authors_process(args, device):
    """bench.py --authors test|train: a whole authors-style process, for the comparison with test.py / train.py."""
    videos, gt = authors_load(TEST_LIST), np.load(GT)
    if args.authors == 'test':
        model = load_checkpoint(args.ckpt, VideoClassifier(FEATURES, args.da, args.r)).to(device)
        print(f'auc_score : {authors_evaluate(model, videos, gt, args.split_size, device)}')
        return
    # train.py's run step for step (same seed, same draws), evaluating with the authors' loop
    torch.manual_seed(SEED)
    np.random.seed(SEED)
    model = VideoClassifier(FEATURES, args.da, args.r).to(device)
    optimizer, schedule = official_radam(model.parameters(), 1e-3)
    aucs = [authors_evaluate(model, videos, gt, args.split_size, device)]
    normal, anomalous = authors_pools(TRAIN_LIST)
    sampler = PairedSampler(len(normal), len(anomalous), BATCH)
    for _ in range(args.train_iters):
        next_step(model, optimizer, schedule, sampler, normal, anomalous)
        aucs.append(authors_evaluate(model, videos, gt, args.split_size, device))
    print('aucs : ' + json.dumps(aucs))


# ---------------------------------------------------------------------------------------------- measuring
def evict(folder):
    """Drop the files under folder from the page cache, so that the next read comes from the disk."""
    for root, _, names in os.walk(folder):
        for name in names:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            os.fsync(fd)  # dirty pages would stay
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.close(fd)


def read_files(paths):
    """Read the files whole, one after the other, into one reused buffer: the disk's speed. Returns the bytes read."""
    buffer, total = bytearray(64 << 20), 0
    for path in paths:
        with open(path, 'rb', buffering=0) as f:
            while n := f.readinto(buffer):
                total += n
    return total


def peak_private_memory(timer, peak):
    """Sample RssAnon, the private (anonymous) resident memory, of the process GNU time (timer) runs, until it
    ends; peak[0] gets the largest. Mapped files' pages are not in it: the page cache holds them, once."""
    while timer.poll() is None:
        try:
            for child in open(f'/proc/{timer.pid}/task/{timer.pid}/children').read().split():
                status = open(f'/proc/{child}/status').read()
                kb = int(status.split('RssAnon:')[1].split()[0])
                peak[0] = max(peak[0], kb * 1024)
        except (OSError, IndexError):  # not started yet, or just ended
            pass
        time.sleep(0.05)


def run_process(name, command, log_dir, cold=True, warm_files=()):
    """Run command (a list) from the set's folder, cold (the set evicted from the page cache first) or warm
    (warm_files read just before); returns (wall seconds, peak RSS in bytes, peak RssAnon in bytes, its output).

    GNU time measures the peak: the child's rusage as this process gets it would not do, since a child
    spawned with vfork() starts from this process's own peak.
    """
    if cold:
        evict('.')
    else:
        read_files(warm_files)
    log, peak = (os.path.join(log_dir, name + ext) for ext in ('.log', '.peak'))
    print(f'bench.py: running {name} (its output in {log})', flush=True)
    private = [0]
    with open(log, 'w') as out:
        start = time.perf_counter()
        timer = subprocess.Popen([TIME, '-o', peak, '-f', '%M'] + command, stdout=out, stderr=subprocess.STDOUT)
        sampler = threading.Thread(target=peak_private_memory, args=(timer, private))
        sampler.start()
        returncode = timer.wait()
        wall = time.perf_counter() - start
        sampler.join()
    output = open(log).read()
    if returncode:
        sys.exit(f'bench.py: {" ".join(command)} failed (exit {returncode}):\n{output[-3000:]}')
    return wall, int(open(peak).read().split()[-1]) * 1024, private[0], output


def run_in_turn(commands, repeats, log_dir, **how):
    """Run each of {name: command} repeats times, in turn and in alternating order; returns {name: (median wall
    seconds, largest peak RSS, the last output)}."""
    runs = {name: [] for name in commands}
    for i in range(repeats):
        for name in list(commands)[::1 if i % 2 == 0 else -1]:
            runs[name].append(run_process(name, commands[name], log_dir, **how))
    return {name: (float(np.median([r[0] for r in rs])), max(r[1] for r in rs), rs[-1][3]) for name, rs in runs.items()}


# ---------------------------------------------------------------------------------------------- the set
def build(root, size):
    """Write the synthetic set's features and annotation, once: a finished set has bench-set.json."""
    marker = os.path.join(root, 'bench-set.json')
    if os.path.isfile(marker):
        return
    print(f'writing the {size} synthetic set to {root} (once)')
    summary = synthetic.generate(root, overwrite=True, **SIZES[size])
    with open(marker, 'w') as f:
        json.dump(summary, f, indent=2)


def measure_in_process(args, device):
    """Loading, a training step, the floor and both evaluations, in this process; returns (rows, checkpoint)."""
    test_paths, gt = read_list(TEST_LIST), np.load(GT)
    test_bytes = sum(map(os.path.getsize, test_paths))

    # a training step (forward, backward, RAdam); the model it leaves is the one evaluated below
    print('bench.py: timing training steps, loads and evaluations in this process', flush=True)
    torch.manual_seed(0)
    np.random.seed(0)
    model = VideoClassifier(FEATURES, args.da, args.r).to(device)
    optimizer, schedule = official_radam(model.parameters(), 1e-3)
    normal, anomalous = load_train_pools(TRAIN_LIST, FEATURES, SEGMENTS)
    sampler = PairedSampler(len(normal), len(anomalous), BATCH)
    step, _ = timed(lambda: next_step(model, optimizer, schedule, sampler, normal, anomalous),
                    args.steps, device)
    del normal, anomalous
    ckpt = os.path.abspath('ckpt/bench.pth')
    save_checkpoint(model, ckpt)

    def first_evaluation():  # TestSet maps the files; its first evaluation reads them
        test_set = TestSet(TEST_LIST, GT, FEATURES, device)
        return frame_auc(snippet_scores(model, test_set, args.split_size), test_set.gt)

    # from a cold disk: the files' plain read, the authors' list of arrays, TestSet and its first evaluation; in
    # turn, each first once, after one untimed read (cold reads vary with what ran before, on a VM the most)
    loaders = {'read': lambda: read_files(test_paths), 'authors': lambda: authors_load(TEST_LIST),
               'TestSet': first_evaluation}
    times = {name: [] for name in loaders}
    read_files(test_paths)
    for i in range(args.load_repeats):
        for name in list(loaders)[i % 3:] + list(loaders)[:i % 3]:
            evict('.')
            times[name].append(timed(loaders[name], 1, device)[0])
    raw, authors_load_time, cold_eval = (float(np.median(times[name])) for name in loaders)

    videos = authors_load(TEST_LIST)
    authors_eval, authors_auc = timed(lambda: authors_evaluate(model, videos, gt, args.split_size, device),
                                      args.authors_repeats, device)
    del videos
    test_set = TestSet(TEST_LIST, GT, FEATURES, device)
    fast_eval, fast_auc = timed(lambda: frame_auc(snippet_scores(model, test_set, args.split_size), test_set.gt),
                                args.repeats, device)

    # the evaluation's floor: the matmul of every crop of every snippet with [W1^T | u], stacked in memory
    x = torch.cat(test_set.videos).view(-1, FEATURES)
    projection = torch.randn(FEATURES, args.da + args.r, device=device)
    product = x.new_empty(len(x), args.da + args.r)  # allocated once: the floor is the product alone
    flops = 2 * x.shape[0] * x.shape[1] * projection.shape[1]
    floor, _ = timed(lambda: torch.mm(x, projection, out=product), args.repeats, device)
    del x, product
    iteration, authors_iteration = step + fast_eval, step + authors_eval
    load = cold_eval - fast_eval  # what a cold start adds to the first evaluation
    run, authors_run = load + 200 * iteration + fast_eval, authors_load_time + 200 * authors_iteration + authors_eval
    rows = [
        (f'read the test files, one after the other into one 64 MB buffer (cold, median of {args.load_repeats})', f'{raw:.1f} s',
         f'{test_bytes / raw / GB:.2f} GB/s', '', ''),
        (f'load the test set, authors-style list of arrays (cold, median of {args.load_repeats})', f'{authors_load_time:.1f} s',
         f'{test_bytes / authors_load_time / GB:.2f} GB/s', '', ''),
        (f'map the test set (TestSet) and evaluate it, cold (median of {args.load_repeats})', f'{cold_eval:.1f} s',
         f'{cold_eval / (raw + fast_eval):.2f}x the plain read followed by a warm evaluation', '',
         met('the plain read + a warm evaluation, within 10%', cold_eval <= 1.1 * (raw + fast_eval))),
        (f'float32 matmul [{flops // 2 // FEATURES // (args.da + args.r):,} x {FEATURES}] x [{FEATURES} x '
         f'{args.da + args.r}] (the floor)',
         f'{floor:.3f} s', f'{flops / GB:.0f} GFLOP, {flops / floor / GB:.0f} GFLOP/s', '', ''),
        ('one evaluation, authors-style per-video loop', f'{authors_eval:.3f} s', f'{authors_eval / floor:.1f}x the floor',
         '', ''),
        ('one evaluation, fast (scores and frame AUC)', f'{fast_eval:.3f} s',
         f'{fast_eval / floor:.2f}x the floor, {fast_eval / authors_eval:.3f}x the authors\'', '',
         met('<= 1.2x the floor', fast_eval <= 1.2 * floor)),
        ('AUC: fast minus authors-style', f'{fast_auc - authors_auc:.1e}', f'AUC {fast_auc:.6f}', '',
         met('<= 1e-6', abs(fast_auc - authors_auc) <= 1e-6)),
        ('one training step (forward, backward, RAdam)', f'{step:.3f} s', '', '', ''),
        ('one training iteration, authors-style (step + evaluation)', f'{authors_iteration:.3f} s', '', '', ''),
        ('one training iteration (step + evaluation)', f'{iteration:.3f} s',
         f'{iteration / authors_iteration:.3f}x the authors\'', '', met('<= 0.5x', iteration <= 0.5 * authors_iteration)),
        ('200 training iterations, authors-style, estimated (load + 200 iterations + 1 evaluation)',
         f'{authors_run:.0f} s', '', '', ''),
        ('200 training iterations, estimated (load + 200 iterations + 1 evaluation)', f'{run:.0f} s',
         f'{run / authors_run:.3f}x the authors\'', '', met('<= 0.5x', run <= 0.5 * authors_run)),
    ]
    return rows, ckpt


def measure_preformer(log_dir):
    """preformer_feature.py, started cold: it writes the lists, the ground truth and the pooled train videos."""
    train_raw = [os.path.join('features/UCF-Train', n) for n in os.listdir('features/UCF-Train')]
    wall, rss, _, _ = run_process('preformer', [sys.executable, os.path.join(REPO, 'preformer_feature.py'),
                                                '--annotation', synthetic.ANNOTATION], log_dir)
    train_bytes = sum(map(os.path.getsize, train_raw))
    return [('preformer_feature.py (process)', f'{wall:.1f} s',
             f'{len(train_raw) / wall:.0f} train videos/s, {train_bytes / wall / GB:.2f} GB/s read', f'{rss / GB:.2f} GB',
             '')]


def measure_processes(args, device, log_dir, ckpt):
    """Whole processes, each started cold: test.py and train.py against authors-style ones; returns the rows."""
    python = [sys.executable]
    model_flags = ['--da', str(args.da), '--r', str(args.r), '--device', device.type]
    scripts_flags = model_flags + ['--test-split-size', str(args.split_size)]
    authors = python + [os.path.join(REPO, 'bench.py'), '--data', '.', '--split-size', str(args.split_size)] + model_flags
    test_paths = read_list(TEST_LIST)
    rows = []
    for condition, how in (('warm', {'cold': False, 'warm_files': test_paths}), ('cold', {'cold': True})):
        runs = run_in_turn({f'authors-test-{condition}': authors + ['--authors', 'test', '--ckpt', ckpt],
                            f'test-{condition}': python + [os.path.join(REPO, 'test.py'), '--ckpt', ckpt, '--out-dir',
                                                           'results'] + scripts_flags},
                           args.process_repeats, log_dir, **how)
        (a_wall, a_rss, a_out), (wall, rss, out) = runs[f'authors-test-{condition}'], runs[f'test-{condition}']
        auc, a_auc = out.split('auc_score : ')[1].split()[0], a_out.split('auc_score : ')[1].split()[0]
        rows += [(f'authors\' test procedure, process, {condition} (median of {args.process_repeats})',
                  f'{a_wall:.1f} s', f'AUC {a_auc}', f'{a_rss / GB:.2f} GB', ''),
                 (f'test.py, process, {condition} (median of {args.process_repeats})', f'{wall:.1f} s',
                  f'{wall / a_wall:.2f}x the time, {rss / a_rss:.2f}x the memory; AUC {auc}', f'{rss / GB:.2f} GB',
                  '; '.join([met('<= 0.5x the time', wall <= 0.5 * a_wall), met('<= 1x the memory', rss <= a_rss),
                             met('the same AUC to the last digit', auc == a_auc)]))]

    n = args.train_iters
    a_wall, a_rss, _, a_out = run_process('authors-train', authors + ['--authors', 'train', '--train-iters', str(n)],
                                          log_dir)
    train = python + [os.path.join(REPO, 'train.py'), '--max-iters', str(n), '--seed', str(SEED)] + scripts_flags
    wall, rss, private, _ = run_process('train', train + ['--ckpt-dir', 'ckpt/train'], log_dir)
    with open(os.path.join('ckpt/train', checkpoint_name(args.da, args.r, SEGMENTS, SEED) + '.csv')) as f:
        history = [float(row['auc']) for row in csv.DictReader(f)]
    differ = np.abs(np.array(history) - json.loads(a_out.split('aucs : ')[1]))
    test_bytes = sum(map(os.path.getsize, test_paths))
    pooled_bytes = sum(map(os.path.getsize, read_list(TRAIN_LIST)))
    budget = 1.1 * (test_bytes + pooled_bytes)
    rows += [(f'authors-style training, {n} iterations (process)', f'{a_wall:.1f} s', '', f'{a_rss / GB:.2f} GB', ''),
             (f'train.py, {n} iterations (process)', f'{wall:.1f} s',
              f'{wall / a_wall:.2f}x the authors\'; of its {n + 1} AUCs {np.sum(differ <= 1e-12)} equal theirs to '
              f'1e-12, all to {differ.max():.0e}', f'{rss / GB:.2f} GB',
              '; '.join([met('<= 0.5x the time', wall <= 0.5 * a_wall), met('AUCs to 1e-6', differ.max() <= 1e-6),
                         met(f'memory <= {budget / GB:.2f} GB (test {test_bytes / GB:.2f} + pooled '
                             f'{pooled_bytes / GB:.2f} GB, + 10%)', rss <= budget)])),
             (f'train.py, {n} iterations: peak private memory (RssAnon)', '', f'test set {test_bytes / GB:.2f} GB, '
              f'pooled train set {pooled_bytes / GB:.2f} GB: both mapped, held once by the page cache',
              f'{private / GB:.2f} GB', met('<= 1 GB (the model, torch, buffers)', private <= GB))]
    every_wall, rss, _, _ = run_process('train-eval-every', train + ['--ckpt-dir', 'ckpt/every', '--eval-every', '10'],
                                     log_dir)
    rows.append((f'train.py, {n} iterations, --eval-every 10 (process)', f'{every_wall:.1f} s',
                 f'{every_wall / wall:.2f}x --eval-every 1', f'{rss / GB:.2f} GB', ''))
    return rows


def main(args):
    if args.video is not None:
        import bench_video
        return bench_video.main(bench_video.build_parser().parse_args(args.video))
    device = pick_device(args.device)
    root = args.data or os.path.join('bench_data', 'small' if args.small else 'full')
    if args.authors:
        os.chdir(root)
        return authors_process(args, device)
    if not os.path.isfile(TIME):
        sys.exit(f'bench.py: needs GNU time as {TIME} to measure peak memory (apt-get install time)')
    build(root, 'small' if args.small else 'full')
    os.chdir(root)
    before = os.getloadavg()[0]
    log_dir = os.path.abspath('logs')
    os.makedirs(log_dir, exist_ok=True)
    rows = measure_preformer(log_dir)
    in_process, ckpt = measure_in_process(args, device)
    rows += in_process + measure_processes(args, device, log_dir, ckpt)
    after = os.getloadavg()[0]
    set_size = json.load(open('bench-set.json'))
    title = (f'**{machine(device)}.** Set: {set_size["test_videos"]} test videos, {set_size["test_snippets"]:,} '
             f'snippets, 10 crops, F = 2048; {set_size["train_videos"]} train videos; da = {args.da}, r = {args.r}, '
             f'split size {args.split_size}. Load average (1 min) {before:.1f} before, {after:.1f} after.')
    text = table(rows, title)
    print(text)
    with open(f'bench-{device.type}.md', 'w') as f:
        f.write(text + '\n')
    print(f'\n(written to {os.path.join(root, f"bench-{device.type}.md")})')


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--small', action='store_true', help='a small set (bench_data/small), to try bench.py')
    parser.add_argument('--data', help='the set\'s folder (default: bench_data/full, or bench_data/small)')
    parser.add_argument('--device', default='cpu', choices=['auto', 'cpu', 'cuda'])
    parser.add_argument('--da', type=int, default=64)
    parser.add_argument('--r', type=int, default=3)
    parser.add_argument('--split-size', type=int, default=32, help='snippets per scored test chunk')
    parser.add_argument('--repeats', type=int, default=5, help='timings of the matmul and the fast evaluation (median)')
    parser.add_argument('--authors-repeats', type=int, default=2, help='timings of the authors\' evaluation (median)')
    parser.add_argument('--load-repeats', type=int, default=3, help='timings of each way to load the test set (median)')
    parser.add_argument('--steps', type=int, default=20, help='timed training steps (median)')
    parser.add_argument('--process-repeats', type=int, default=3, help='runs of each test process (median)')
    parser.add_argument('--train-iters', type=int, default=200,
                        help='iterations of the whole training processes (the authors-style one takes about 20 '
                             'minutes on 2 cores for 200)')
    parser.add_argument('--video', nargs=argparse.REMAINDER, metavar='FLAGS',
                        help="measure the feature extraction instead, with bench_video.py's flags")
    parser.add_argument('--authors', choices=['test', 'train'], help=argparse.SUPPRESS)  # bench.py's own baselines
    parser.add_argument('--ckpt', help=argparse.SUPPRESS)
    main(parser.parse_args())
