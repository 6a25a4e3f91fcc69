"""Sweep the paper's hyper-parameters: train and test every (da, r, seed), then tabulate mean ± std per (da, r).

    python sweep.py --da 32 64 128 --r 1 3 7 --seeds 1111 2222 3333
    python sweep.py --da 64 --r 3 --seeds 1 2 3 4 5 --select last --jobs 2 --max-iters 500

Any other flag goes to train.py as it is, and those test.py takes too (--dataset, --feature-size, --T,
--test-rgb-list, --gt, --test-split-size, --device) to test.py as well. Everything lands under --out:

    ckpt/        train.py's files of each run (checkpoint, history CSV and plot)
    results/     test.py's metrics of each run's kept model (JSON)
    logs/        each run's output
    runs.csv     one row per run: its metrics, and best_test_auc, the paper's selection from its history
                 (best_test_ap on XD-Violence, whose headline metric is the AP)
    summary.csv  mean and std (over the seeds) of each metric per (da, r); std with ddof=1
    summary.md   the same as a Markdown table of mean ± std
"""
import argparse
import concurrent.futures
import csv
import json
import os
import subprocess
import sys
import time

import numpy as np

from cli import add_common_arguments, add_select_arguments, run, run_name, use_benchmark
from dataset import DataError, write_atomic
from model import VideoClassifier
from train import write_csv

HERE = os.path.dirname(os.path.abspath(__file__))
TESTED = ['auc', 'ap', 'auc_abnormal', 'far_normal', 'video_auc']  # from test.py's JSON
METRICS = TESTED + ['best_test_auc']  # and the best test value of the history's headline column: UCF-Crime's
LABELS = {'auc': 'AUC', 'ap': 'AP', 'auc_abnormal': 'AUC abnormal', 'far_normal': 'FAR normal',
          'video_auc': 'video AUC', 'best_test_auc': 'best test AUC', 'best_test_ap': 'best test AP'}
# test.py's flags among train.py's
SHARED = ['dataset', 'T', 'feature_size', 'test_rgb_list', 'gt', 'test_split_size', 'device']


def parameter_count(feature_size, da, r):
    return sum(p.numel() for p in VideoClassifier(feature_size, da, r).parameters())


def shared_settings(train_args):
    """The values (given or default) of the flags in train_args that test.py takes too."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    add_common_arguments(parser)
    common = parser.parse_known_args(train_args)[0]
    use_benchmark(common)
    return common


def run_one(args, common, da, r, seed, env):
    """Train and test one setting; returns its row of runs.csv (error: why it has no metrics, else '')."""
    name = run_name(argparse.Namespace(da=da, r=r, T=common.T, seed=seed, select=args.select,
                                       val_fraction=args.val_fraction, benchmark=common.benchmark))
    flags = ['--da', da, '--r', r, '--seed', seed, '--select', args.select, '--val-fraction', args.val_fraction,
             '--ckpt-dir', os.path.join(args.out, 'ckpt')]
    shared = [x for key in SHARED for x in ('--' + key.replace('_', '-'), getattr(common, key))]
    row = {'da': da, 'r': r, 'seed': seed, 'select': args.select, 'name': name, 'error': ''}
    log_path = os.path.join(args.out, 'logs', name + '.log')
    start = time.time()
    with open(log_path, 'w') as log:
        for command in (['train.py', *flags, *args.train_args],
                        ['test.py', *flags, *shared, '--out-dir', os.path.join(args.out, 'results')]):
            done = subprocess.run([sys.executable, os.path.join(HERE, command[0]), *map(str, command[1:])],
                                  stdout=log, stderr=subprocess.STDOUT, env=env)
            if done.returncode != 0:
                break
    row['seconds'] = round(time.time() - start, 1)
    if done.returncode != 0:
        lines = open(log_path).read().strip().splitlines() or ['']
        row['error'] = f'{command[0]} failed: {lines[-1].strip()} ({log_path})'
        return row
    with open(os.path.join(args.out, 'results', name + '.json')) as f:
        results = json.load(f)
    metric = common.benchmark.metric
    with open(os.path.join(args.out, 'ckpt', name + '.csv')) as f:
        history = [float(h[metric]) for h in csv.DictReader(f) if h[metric]]
    return {**row, **{m: results[m] for m in TESTED}, f'best_test_{metric}': max(history)}


def summarize(rows, parameters, metrics=METRICS):
    """Per (da, r) in sweep order: the runs without error, and each metric's mean and std over them."""
    summary = []
    for (da, r), count in parameters.items():
        done = [row for row in rows if (row['da'], row['r']) == (da, r) and not row['error']]
        entry = {'da': da, 'r': r, 'parameters': count, 'runs': len(done)}
        for m in metrics:
            values = [row[m] for row in done if row[m] is not None]  # None: undefined on this test set
            entry[m + '_mean'] = float(np.mean(values)) if values else ''
            entry[m + '_std'] = float(np.std(values, ddof=1)) if len(values) > 1 else ''
        summary.append(entry)
    return summary


def markdown(summary, metrics=METRICS):
    def cell(entry, m):
        mean, std = entry[m + '_mean'], entry[m + '_std']
        return '' if mean == '' else f'{mean:.4f}' + ('' if std == '' else f' ± {std:.4f}')

    lines = ['| da | r | parameters | runs | ' + ' | '.join(LABELS[m] for m in metrics) + ' |',
             '|---:|---:|---:|---:|' + '---:|' * len(metrics)]
    lines += [f'| {e["da"]} | {e["r"]} | {e["parameters"]:,} | {e["runs"]} | '
              + ' | '.join(cell(e, m) for m in metrics) + ' |' for e in summary]
    return '\n'.join(lines) + '\n'


def main(args):
    if min(args.da + args.r + [args.jobs]) <= 0:
        raise DataError('--da, --r and --jobs must be positive')
    if len(set(args.seeds)) < len(args.seeds):
        raise DataError('--seeds holds a seed twice')
    for flag in ('--seed', '--ckpt-dir', '--resume'):
        if any(a.split('=')[0] == flag for a in args.train_args):
            raise DataError(f'{flag}: sweep.py sets it for every run (seeds: --seeds; folder: --out)')
    common = shared_settings(args.train_args)
    parameters = {(da, r): parameter_count(common.feature_size, da, r) for da in args.da for r in args.r}
    for (da, r), count in parameters.items():
        print(f'da={da} r={r}: {count:,} parameters (feature size {common.feature_size})')
    for folder in ('ckpt', 'results', 'logs'):
        os.makedirs(os.path.join(args.out, folder), exist_ok=True)

    env = dict(os.environ)
    if args.jobs > 1 and 'OMP_NUM_THREADS' not in env:  # share the CPU's cores among the parallel runs
        env['OMP_NUM_THREADS'] = str(max(1, (os.cpu_count() or 1) // args.jobs))
    settings = [(da, r, seed) for da, r in parameters for seed in args.seeds]
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(run_one, args, common, *s, env) for s in settings]
        for i, future in enumerate(concurrent.futures.as_completed(futures), 1):
            row = future.result()
            metric = common.benchmark.metric
            outcome = row['error'] or f'{LABELS[metric]} {row[metric]:.6f}'
            print(f'[{i}/{len(settings)}] {row["name"]}: {outcome} ({row["seconds"]} s)', flush=True)
    rows = [f.result() for f in futures]  # in sweep order

    metrics = TESTED + [f'best_test_{common.benchmark.metric}']
    columns = ['da', 'r', 'seed', 'select', *metrics, 'seconds', 'name', 'error']
    write_csv(os.path.join(args.out, 'runs.csv'), columns, [[row.get(c, '') for c in columns] for row in rows])
    summary = summarize(rows, parameters, metrics)
    write_csv(os.path.join(args.out, 'summary.csv'), list(summary[0]), [list(e.values()) for e in summary])
    table = markdown(summary, metrics)
    write_atomic(os.path.join(args.out, 'summary.md'), lambda f: f.write(table.encode()))
    print(f'\n--select {args.select}, {len(args.seeds)} seeds per setting; mean ± std (ddof=1) over the seeds\n')
    print(table)
    print(f'tables in {args.out}/: runs.csv, summary.csv, summary.md')
    failed = [row for row in rows if row['error']]
    if failed:
        raise DataError(f'{len(failed)} of {len(rows)} runs failed; see the error column of {args.out}/runs.csv')


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)  # a prefix of a flag is train.py's, not this one's
    parser.add_argument('--da', type=int, nargs='+', default=[64], help='hidden sizes of the attention to try')
    parser.add_argument('--r', type=int, nargs='+', default=[3], help='numbers of attention hops to try')
    parser.add_argument('--seeds', type=int, nargs='+', default=[1111], help='seeds of each setting')
    add_select_arguments(parser)
    parser.add_argument('--jobs', type=int, default=1, help='runs at once (where the device has room)')
    parser.add_argument('--out', default='sweep', help='folder for the runs and the tables')
    args, args.train_args = parser.parse_known_args()
    run(main, args, 'sweep.py')
