"""Sweep the paper's hyper-parameters: train and test every (da, r, seed), then tabulate mean ± std per (da, r).

    python sweep.py --da 32 64 128 --r 1 3 7 --seeds 1111 2222 3333
    python sweep.py --da 64 --r 3 --seeds 1 2 3 4 5 --select last --jobs 2 --max-iters 500
    python sweep.py --da 32 64 128 --r 1 3 7 --seeds 1111 2222 3333 --shard $SLURM_ARRAY_TASK_ID/8
    python sweep.py --da 32 64 128 --r 1 3 7 --seeds 1111 2222 3333 --summarize

Any other flag goes to train.py as it is, and those test.py takes too (--dataset, --feature-size, --T,
--test-rgb-list, --gt, --test-split-size, --device) to test.py as well. Everything lands under --out:

    ckpt/        train.py's files of each run (checkpoint, history CSV and plot, state to resume from)
    results/     test.py's metrics of each run's kept model (JSON)
    logs/        each run's output, every attempt's (.log), and its record (.json): its flags and how it ended
    runs.csv     one row per setting: its metrics, and best_test_auc, the paper's selection from its history
                 (best_test_ap on XD-Violence, whose headline metric is the AP); no_checkpoint: why a run has
                 no metrics although it finished (no iteration beat the untrained model under --select best);
                 error: why it failed, or that it is missing
    summary.csv  per (da, r): the runs with metrics and the missing ones, and the mean and std (over the seeds)
                 of each metric over the runs with metrics; std with ddof=1
    summary.md   the same as a Markdown table of mean ± std

A setting whose results are in --out, made with the same flags, is read instead of run again; one without
(interrupted, failed, or its test JSON deleted) continues from train.py's saved state (train.py --resume;
a finished training is only tested again), or starts again where there is none; --rerun runs them afresh.
--shard K/N runs every N-th setting of the grid from the K-th, so that the N jobs of a cluster's job array
together run each setting once, into one --out, without two writing the same file. Such a shard writes no
tables; --summarize, once they are all done, runs nothing: it reads the grid's runs from --out, writes the
tables, lists the settings without results as missing, and exits with status 1 if some are missing or failed.
"""
import argparse
import collections
import concurrent.futures
import contextlib
import csv
import json
import os
import shlex
import subprocess
import sys
import time

import numpy as np

from cli import HelpFormatter, add_common_arguments, add_select_arguments, parse_shard, run, run_name, use_benchmark
from dataset import DataError, write_atomic, write_csv
from model import VideoClassifier

HERE = os.path.dirname(os.path.abspath(__file__))
TESTED = ['auc', 'ap', 'auc_abnormal', 'far_normal', 'video_auc']  # from test.py's JSON
METRICS = TESTED + ['best_test_auc']  # and the best test value of the history's headline column: UCF-Crime's
LABELS = {'auc': 'AUC', 'ap': 'AP', 'auc_abnormal': 'AUC abnormal', 'far_normal': 'FAR normal',
          'video_auc': 'video AUC', 'best_test_auc': 'best test AUC', 'best_test_ap': 'best test AP'}
# test.py's flags among train.py's
SHARED = ['dataset', 'T', 'feature_size', 'test_rgb_list', 'gt', 'test_split_size', 'device']
MISSING = 'missing: no results in --out (not run yet, interrupted, or still running)'

Setting = collections.namedtuple('Setting', 'da r seed name commands files')


def parameter_count(feature_size, da, r):
    return sum(p.numel() for p in VideoClassifier(feature_size, da, r).parameters())


def shared_settings(train_args):
    """The values (given or default) of the flags in train_args that test.py takes too."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    add_common_arguments(parser)
    common = parser.parse_known_args(train_args)[0]
    use_benchmark(common)
    return common


def grid(args, common, parameters):
    """Every setting, in the sweep's order: (da, r) as given, then the seeds. A setting's commands are the
    flags its train.py and test.py get but the folders: what makes the results in --out its own."""
    settings = []
    for da, r in parameters:
        for seed in args.seeds:
            name = run_name(argparse.Namespace(da=da, r=r, T=common.T, seed=seed, select=args.select,
                                               val_fraction=args.val_fraction, benchmark=common.benchmark))
            flags = ['--da', da, '--r', r, '--seed', seed, '--select', args.select,
                     '--val-fraction', args.val_fraction]
            shared = [x for key in SHARED for x in ('--' + key.replace('_', '-'), getattr(common, key))]
            commands = {'train.py': [str(x) for x in flags + args.train_args],
                        'test.py': [str(x) for x in flags + shared]}
            settings.append(Setting(da, r, seed, name, commands, run_files(args.out, name)))
    return settings


def run_files(out, name):
    """Where one run's files lie under --out."""
    return {'log': os.path.join(out, 'logs', name + '.log'), 'record': os.path.join(out, 'logs', name + '.json'),
            'checkpoint': os.path.join(out, 'ckpt', name + '.pth'), 'history': os.path.join(out, 'ckpt', name + '.csv'),
            'state': os.path.join(out, 'ckpt', name + '.state.pt'),
            'results': os.path.join(out, 'results', name + '.json')}


def read_record(setting):
    """A run's record: its commands and how it ended (status 'started', 'tested', 'no checkpoint' or 'failed';
    seconds; error), or None where there is none."""
    try:
        with open(setting.files['record']) as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except ValueError as e:
        raise DataError(f'{setting.files["record"]}: not a record of sweep.py ({e}); delete it to run the setting '
                        'again')


def write_record(setting, record):
    write_atomic(setting.files['record'], lambda f: f.write(json.dumps(record).encode() + b'\n'))


def outcome(setting, record):
    """How the run ended, where it was made with the setting's flags and --out holds what that outcome needs
    ('tested': its test JSON and history; 'no checkpoint': its history; 'failed'); None when it is missing
    (never run, unfinished, made with other flags, or a file gone)."""
    needs = {'tested': ['results', 'history'], 'no checkpoint': ['history'], 'failed': []}
    if record is None or record['commands'] != setting.commands or record['status'] not in needs:
        return None
    return record['status'] if all(os.path.isfile(setting.files[k]) for k in needs[record['status']]) else None


def resumable(setting, record):
    """Whether train.py can continue the run from its saved state: one made with the setting's flags is there,
    and so is the model a tested run kept (a finished training then only runs its end again)."""
    return (record is not None and record['commands'] == setting.commands and os.path.isfile(setting.files['state'])
            and (record['status'] != 'tested' or os.path.isfile(setting.files['checkpoint'])))


def check_same_flags(settings, records):
    """Refuse to replace, or to count, the results of runs made with other flags than the sweep's (an unfinished or
    failed run of other flags has none: it just runs again)."""
    other = [s for s in settings if records[s.name] is not None and records[s.name]['commands'] != s.commands
             and records[s.name]['status'] in ('tested', 'no checkpoint')]
    if other:
        s, more = other[0], f' (and {len(other) - 1} more)' * (len(other) > 1)
        raise DataError(f'{s.files["record"]}{more}: made with train.py '
                        f'{shlex.join(records[s.name]["commands"]["train.py"])}, not train.py '
                        f'{shlex.join(s.commands["train.py"])}; give the flags they were made with, --rerun them, '
                        'or choose another --out')


def call(script, flags, log, env):
    """Run script with flags, its output appended to log; returns '' or why it failed."""
    log.write(f'$ python {shlex.join([script, *flags])}\n')
    log.flush()
    done = subprocess.run([sys.executable, os.path.join(HERE, script), *flags], stdout=log, stderr=subprocess.STDOUT,
                          env=env)
    if done.returncode == 0:
        return ''
    with open(log.name) as f:
        last = f.read().strip().splitlines()[-1].strip()
    return f'{script} failed: {last} ({log.name})'


def run_one(args, setting, env, resume):
    """Train and test one setting (train.py continuing from its saved state where resume), recording how it ended."""
    files = setting.files
    if not resume:  # afresh: no file of an earlier attempt may pass for this one's
        for key in ('checkpoint', 'state', 'history', 'results'):
            with contextlib.suppress(FileNotFoundError):
                os.remove(files[key])
    write_record(setting, {'commands': setting.commands, 'status': 'started'})
    folders = ['--ckpt-dir', os.path.join(args.out, 'ckpt')]
    start = time.time()
    with open(files['log'], 'a') as log:
        error = call('train.py', setting.commands['train.py'] + folders + ['--resume'] * resume, log, env)
        # --select best writes no checkpoint when no iteration beat the untrained model: nothing to test
        kept = args.select != 'best' or os.path.isfile(files['checkpoint'])
        if not error and kept:
            error = call('test.py', setting.commands['test.py'] + folders
                         + ['--out-dir', os.path.join(args.out, 'results')], log, env)
    write_record(setting, {'commands': setting.commands, 'status': 'failed' if error else 'tested' if kept
                           else 'no checkpoint', 'seconds': round(time.time() - start, 1), 'error': error})


def run_all(args, todo, records, metric):
    """Run the settings todo, --jobs at a time, each continuing where it can (not with --rerun); print how each
    ended, and update its record in records."""
    for folder in ('ckpt', 'results', 'logs'):
        os.makedirs(os.path.join(args.out, folder), exist_ok=True)
    env = dict(os.environ)
    if args.jobs > 1 and 'OMP_NUM_THREADS' not in env:  # share the CPU's cores among the parallel runs
        env['OMP_NUM_THREADS'] = str(max(1, (os.cpu_count() or 1) // args.jobs))
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        futures = {pool.submit(run_one, args, s, env, not args.rerun and resumable(s, records[s.name])): s
                   for s in todo}
        for i, future in enumerate(concurrent.futures.as_completed(futures), 1):
            future.result()
            s = futures[future]
            records[s.name] = read_record(s)
            row = read_row(args, s, metric, records[s.name])
            ended = row['error'] or row['no_checkpoint'] or f'{LABELS[metric]} {row[metric]:.6f}'
            print(f'[{i}/{len(todo)}] {s.name}: {ended} ({row["seconds"]} s)', flush=True)


def read_row(args, setting, metric, record):
    """A setting's row of runs.csv, from its record and files in --out (metric: the benchmark's headline one)."""
    status = outcome(setting, record)
    best = f'best_test_{metric}'
    row = {'da': setting.da, 'r': setting.r, 'seed': setting.seed, 'select': args.select,
           **dict.fromkeys(TESTED + [best], ''), 'seconds': record['seconds'] if status else '', 'name': setting.name,
           'no_checkpoint': '', 'error': record['error'] if status == 'failed' else '' if status else MISSING}
    if status in ('tested', 'no checkpoint'):
        with open(setting.files['history']) as f:
            history = [float(h[metric]) for h in csv.DictReader(f) if h[metric]]
        row[best] = max(history)
    if status == 'tested':
        with open(setting.files['results']) as f:
            results = json.load(f)
        row.update({m: results[m] for m in TESTED})
    if status == 'no checkpoint':
        row['no_checkpoint'] = (f'no iteration beat the test {LABELS[metric]} before training ({history[0]:.6f}): '
                                '--select best kept no model')
    return row


def summarize(rows, parameters, metrics=METRICS):
    """Per (da, r) in sweep order: the runs with test metrics (not failed, missing, or without a checkpoint), each
    metric's mean and std over them, and the runs missing."""
    summary = []
    for (da, r), count in parameters.items():
        mine = [row for row in rows if (row['da'], row['r']) == (da, r)]
        done = [row for row in mine if not row['error'] and not row['no_checkpoint']]
        entry = {'da': da, 'r': r, 'parameters': count, 'runs': len(done),
                 'missing': sum(row['error'] == MISSING for row in mine)}
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

    lines = ['| da | r | parameters | runs | missing | ' + ' | '.join(LABELS[m] for m in metrics) + ' |',
             '|---:|---:|---:|---:|---:|' + '---:|' * len(metrics)]
    lines += [f'| {e["da"]} | {e["r"]} | {e["parameters"]:,} | {e["runs"]} | {e["missing"]} | '
              + ' | '.join(cell(e, m) for m in metrics) + ' |' for e in summary]
    return '\n'.join(lines) + '\n'


def write_tables(args, rows, parameters, metrics):
    columns = ['da', 'r', 'seed', 'select', *metrics, 'seconds', 'name', 'no_checkpoint', 'error']
    write_csv(os.path.join(args.out, 'runs.csv'), columns, [[row[c] for c in columns] for row in rows])
    summary = summarize(rows, parameters, metrics)
    write_csv(os.path.join(args.out, 'summary.csv'), list(summary[0]), [list(e.values()) for e in summary])
    table = markdown(summary, metrics)
    write_atomic(os.path.join(args.out, 'summary.md'), lambda f: f.write(table.encode()))
    print(f'\n--select {args.select}, {len(args.seeds)} seeds per setting; mean ± std (ddof=1) over the seeds\n')
    print(table)
    print(f'tables in {args.out}/: runs.csv, summary.csv, summary.md')


def main(args):
    if min(args.da + args.r + [args.jobs]) <= 0:
        raise DataError('--da, --r and --jobs must be positive')
    if len(set(args.seeds)) < len(args.seeds):
        raise DataError('--seeds holds a seed twice')
    for flag in ('--seed', '--ckpt-dir', '--resume'):
        if any(a.split('=')[0] == flag for a in args.train_args):
            raise DataError(f'{flag}: sweep.py sets it for every run (seeds: --seeds; folder: --out)')
    shard, shards = parse_shard(args.shard)
    if args.summarize and shards > 1:
        raise DataError(f'--shard {args.shard} with --summarize: the summary reads the whole grid; leave out --shard')
    if args.summarize and not os.path.isdir(args.out):
        raise DataError(f'--out {args.out}: no such folder, so no runs to summarize')
    common = shared_settings(args.train_args)
    metric = common.benchmark.metric
    parameters = {(da, r): parameter_count(common.feature_size, da, r) for da in args.da for r in args.r}
    for (da, r), count in parameters.items():
        print(f'da={da} r={r}: {count:,} parameters (feature size {common.feature_size})')
    settings = grid(args, common, parameters)
    mine = settings if args.summarize else settings[shard::shards]
    records = {s.name: read_record(s) for s in mine}
    if not args.rerun:
        check_same_flags(mine, records)

    if not args.summarize:
        todo = [s for s in mine if args.rerun or outcome(s, records[s.name]) in (None, 'failed')]
        print(f'{len(mine)} of {len(settings)} settings' + f' (shard {args.shard})' * (shards > 1)
              + f': {len(mine) - len(todo)} done before, {len(todo)} to run', flush=True)
        run_all(args, todo, records, metric)

    rows = [read_row(args, s, metric, records[s.name]) for s in mine]
    tables = args.summarize or shards == 1  # never a shard of many: parallel shards would race on the tables
    if tables:
        write_tables(args, rows, parameters, TESTED + [f'best_test_{metric}'])
    else:
        print(f'shard {args.shard} done; once every shard is, the same flags with --summarize instead of --shard '
              'write the tables')
    missing = [row for row in rows if row['error'] == MISSING]
    for row in missing:
        print(f'missing: {row["name"]} (da={row["da"]} r={row["r"]} seed={row["seed"]})')
    failed = [row for row in rows if row['error'] and row['error'] != MISSING]
    problems = [f'{len(found)} of {len(rows)} runs {word}' for found, word in
                ((missing, 'missing (listed above)'), (failed, 'failed')) if found]
    if problems:
        where = f'the error column of {args.out}/runs.csv' if tables else 'the lines above'
        raise DataError(' and '.join(problems) + f'; see {where}')


def parse_arguments(argv=None):
    """sweep.py's flags, and in .train_args the others, which go to train.py."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter,
                                     allow_abbrev=False)  # a prefix of a flag is train.py's, not this one's
    parser.add_argument('--da', type=int, nargs='+', default=[64], help='hidden sizes of the attention to try '
                                                                         '(default: 64)')
    parser.add_argument('--r', type=int, nargs='+', default=[3], help='numbers of attention hops to try (default: 3)')
    parser.add_argument('--seeds', type=int, nargs='+', default=[1111], help='seeds of each setting (default: 1111)')
    add_select_arguments(parser)
    parser.add_argument('--jobs', type=int, default=1, help='runs at once (where the device has room)')
    parser.add_argument('--out', default='sweep', help='folder for the runs and the tables')
    parser.add_argument('--shard', default='0/1', metavar='K/N',
                        help='run every N-th setting of the grid from the K-th, 0 <= K < N, for N jobs of a job '
                             'array; a shard of N > 1 writes no tables (default: 0/1, the whole grid)')
    once = parser.add_mutually_exclusive_group()
    once.add_argument('--rerun', action='store_true',
                      help='run every setting (of the shard) afresh, even those whose results are in --out '
                           '(default: read those)')
    once.add_argument('--summarize', action='store_true',
                      help="run nothing: write the tables of the grid's runs in --out, list the settings without "
                           'results as missing, and exit with 1 if some are (default: run the settings)')
    args, args.train_args = parser.parse_known_args(argv)
    return args


if __name__ == '__main__':
    run(main, parse_arguments(), 'sweep.py')
