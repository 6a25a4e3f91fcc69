"""sweep.py: the paper's parameter counts, a tiny sweep's tables against its runs' own files, and the same sweep
in shards (resumed, redone, summarized) against the whole one."""
import concurrent.futures
import csv
import json
import shutil

import numpy as np
import pytest

from conftest import FEATURE_SIZE, run_script
from dataset import DataError
from sweep import MISSING, main, markdown, parameter_count, parse_arguments, summarize

# --select best (the default) with 7 iterations: RAdam leaves the weights alone in its first 5 steps, so only
# iterations 6 and 7 can beat the untrained model's AUC; with seeds 1 and 5 one does, with seed 2 none does
GRID = ['--da', 4, '--r', 1, '--seeds', 1, 2, 5, '--feature-size', FEATURE_SIZE, '--batch-size', 4,
        '--max-iters', 7, '--lr', 0.01, '--device', 'cpu']
NAMES = {seed: f'SelfAttention-da4-r1-T32-seed{seed}' for seed in (1, 2, 5)}


@pytest.fixture(scope='module')
def swept(prepared_set, tmp_path_factory):
    """A copy of the prepared set, and sweep.py running GRID whole in it, --jobs 3, into whole/: (folder, the
    future of its process). It runs in the background, so that the shards' test runs its shards meanwhile."""
    root = tmp_path_factory.mktemp('sweep')
    shutil.copytree(prepared_set, root, dirs_exist_ok=True)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        yield root, pool.submit(run_script, 'sweep.py', *GRID, '--jobs', 3, '--out', 'whole', cwd=root)


def tables(out):
    """runs.csv without its seconds column, summary.csv and summary.md."""
    runs = [{k: v for k, v in row.items() if k != 'seconds'} for row in csv.DictReader(open(out / 'runs.csv'))]
    return runs, (out / 'summary.csv').read_text(), (out / 'summary.md').read_text()


def attempts(out):
    """Per run, how many times train.py started on it: the command lines in its log."""
    return {log.stem: log.read_text().count('$ python train.py ') for log in (out / 'logs').glob('*.log')}


def test_parameter_counts_are_the_papers():
    assert parameter_count(2048, 64, 3) == 328_004
    assert parameter_count(2048, 128, 7) == 721_992
    # W1 + b1, W2 + b2, fc1 on vec(M) [F * r] + its bias, fc2
    assert parameter_count(16, 4, 2) == 16 * 4 + 4 + 4 * 2 + 2 + 16 * 2 * 32 + 32 + 33


def test_shards_then_summary_equal_the_whole_sweep(swept, monkeypatch, capsys):
    """Two shards one after the other, then --summarize: the whole sweep's tables; then passes that run only
    what is missing, and a summary that names a missing run."""
    root, whole = swept
    out = root / 'shards'
    monkeypatch.chdir(root)
    monkeypatch.setenv('OMP_NUM_THREADS', '1')  # as --jobs sets it: OpenMP's spinning threads crawl on a busy CPU

    def sweep(*flags):
        main(parse_arguments([str(f) for f in (*GRID, '--out', 'shards', *flags)]))
        return capsys.readouterr().out

    assert '2 of 3 settings (shard 0/2): 0 done before, 2 to run' in sweep('--shard', '0/2', '--jobs', 2)
    assert attempts(out) == {NAMES[1]: 1, NAMES[5]: 1}  # the first and the third setting
    assert '1 of 3 settings (shard 1/2): 0 done before, 1 to run' in sweep('--shard', '1/2')
    assert not (out / 'runs.csv').exists()  # a shard of two writes no tables
    assert attempts(out) == {name: 1 for name in NAMES.values()}  # every setting ran once
    sweep('--summarize')
    whole.result()
    assert tables(out) == tables(root / 'whole')

    assert '1 of 3 settings (shard 1/2): 1 done before, 0 to run' in sweep('--shard', '1/2')  # a second pass
    assert attempts(out) == {name: 1 for name in NAMES.values()}
    results = out / 'results' / f'{NAMES[1]}.json'
    kept = results.read_bytes()
    results.unlink()  # the one run redone: train.py continues from its final state, test.py tests it again
    assert '2 of 3 settings (shard 0/2): 1 done before, 1 to run' in sweep('--shard', '0/2')
    assert attempts(out) == {NAMES[1]: 2, NAMES[2]: 1, NAMES[5]: 1}
    log = (out / 'logs' / f'{NAMES[1]}.log').read_text()
    assert '--ckpt-dir shards/ckpt --resume\n' in log and f'resuming {NAMES[1]} after iteration 7\n' in log
    assert results.read_bytes() == kept
    sweep('--summarize')
    assert tables(out) == tables(root / 'whole')

    other = f'^shards/logs/{NAMES[1]}.json \\(and 2 more\\): made with train.py --da 4 .* --max-iters 7 .*, ' \
            'not train.py --da 4 .* --max-iters 8; give the flags they were made with, --rerun them, or choose another'
    with pytest.raises(DataError, match=other):  # other flags: refused before anything runs
        main(parse_arguments([str(f) for f in (*GRID, '--out', 'shards', '--max-iters', 8)]))

    (out / 'ckpt' / f'{NAMES[5]}.csv').unlink()  # missing now; and a run that failed:
    record = out / 'logs' / f'{NAMES[2]}.json'
    record.write_text(json.dumps({**json.loads(record.read_text()), 'status': 'failed', 'error': 'train.py failed: x'}))
    summarized = run_script('sweep.py', *GRID, '--out', 'shards', '--summarize', cwd=root, check=False)
    assert summarized.returncode == 1 and f'missing: {NAMES[5]} (da=4 r=1 seed=5)\n' in summarized.stdout
    assert summarized.stderr == 'sweep.py: error: 1 of 3 runs missing (listed above) and 1 of 3 runs failed; see the ' \
                                'error column of shards/runs.csv\n'
    runs, summary, _ = tables(out)
    assert [row['error'] for row in runs] == ['', 'train.py failed: x', MISSING]
    assert [(e['runs'], e['missing']) for e in csv.DictReader(summary.splitlines())] == [('1', '1')]


def test_tiny_sweep(swept):
    root, whole = swept
    result = whole.result()
    out = root / 'whole'
    count = parameter_count(FEATURE_SIZE, 4, 1)
    assert f'da=4 r=1: {count:,} parameters (feature size {FEATURE_SIZE})' in result.stdout
    runs = list(csv.DictReader(open(out / 'runs.csv')))
    assert [(row['da'], row['r'], row['seed'], row['name']) for row in runs] == \
        [('4', '1', str(seed), name) for seed, name in NAMES.items()]
    for row in runs:
        aucs = [float(h['auc']) for h in csv.DictReader(open(out / 'ckpt' / f'{row["name"]}.csv'))]
        assert len(aucs) == 8 and row['select'] == 'best' and row['error'] == ''
        assert float(row['best_test_auc']) == max(aucs)
        if row['seed'] == '2':  # no checkpoint: a row of its own, no test metrics, test.py never ran
            assert not (out / 'ckpt' / f'{row["name"]}.pth').exists()
            assert not (out / 'results' / f'{row["name"]}.json').exists()
            assert max(aucs) == aucs[0] and '$ python test.py' not in (out / 'logs' / f'{row["name"]}.log').read_text()
            assert row['no_checkpoint'] == f'no iteration beat the test AUC before training ({aucs[0]:.6f}): ' \
                                           '--select best kept no model'
            assert [row[key] for key in ('auc', 'ap', 'auc_abnormal', 'far_normal', 'video_auc')] == [''] * 5
            continue
        results = json.load(open(out / 'results' / f'{row["name"]}.json'))
        assert row['no_checkpoint'] == '' and max(aucs) > aucs[0]
        for key in ('auc', 'ap', 'auc_abnormal', 'far_normal', 'video_auc'):
            assert float(row[key]) == results[key], key
        assert float(row['auc']) == pytest.approx(max(aucs), abs=1e-12)  # --select best: the best model's AUC

    summary = list(csv.DictReader(open(out / 'summary.csv')))
    tested = [row for row in runs if row['seed'] != '2']  # the means leave out the run without a checkpoint
    assert [(e['da'], e['r'], e['parameters'], e['runs'], e['missing']) for e in summary] == \
        [('4', '1', str(count), '2', '0')]
    for key in ('auc', 'best_test_auc'):
        values = [float(row[key]) for row in tested]
        assert float(summary[0][key + '_mean']) == pytest.approx(np.mean(values), abs=1e-12)
        assert float(summary[0][key + '_std']) == pytest.approx(np.std(values, ddof=1), abs=1e-12)
    table = (out / 'summary.md').read_text().splitlines()
    aucs = [float(row['auc']) for row in tested]
    assert len(table) == 3 and table[0].startswith('| da | r | parameters | runs | missing | AUC |')
    assert table[2].startswith(f'| 4 | 1 | {count:,} | 2 | 0 | {np.mean(aucs):.4f} ± {np.std(aucs, ddof=1):.4f} |')


@pytest.mark.parametrize('flags, message', [
    (['--shard', '2/2'], '--shard 2/2: expected K/N with 0 <= K < N'),
    (['--shard', '1-4'], '--shard 1-4: expected K/N with 0 <= K < N'),
    (['--shard', '1/2', '--summarize'], '--shard 1/2 with --summarize: the summary reads the whole grid'),
    (['--summarize', '--out', 'nowhere'], '--out nowhere: no such folder')])
def test_bad_shards(tmp_path, monkeypatch, flags, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=f'^{message}'):
        main(parse_arguments(flags))
    assert list(tmp_path.iterdir()) == []  # nothing was run or written


def test_bad_shards_end_in_one_line(tmp_path, capsys):
    result = run_script('sweep.py', '--shard', '4/4', cwd=tmp_path, check=False)
    assert (result.returncode, result.stderr) == \
        (1, 'sweep.py: error: --shard 4/4: expected K/N with 0 <= K < N, e.g. 0/4, 1/4, 2/4 and 3/4 for four jobs\n')
    with pytest.raises(SystemExit) as exit:  # argparse's own: -1/2 reads as a flag, so --shard has no value
        parse_arguments(['--shard', '-1/2'])
    assert exit.value.code == 2 and capsys.readouterr().err.endswith(': error: argument --shard: expected one '
                                                                     'argument\n')


def test_summary_leaves_out_failed_missing_and_unkept_runs_and_undefined_values():
    def row(r, seed, auc, far, error='', no_checkpoint=''):
        return {'da': 8, 'r': r, 'seed': seed, 'auc': auc, 'ap': 0.5, 'auc_abnormal': 0.6, 'far_normal': far,
                'video_auc': 0.7, 'best_test_auc': 0.9, 'no_checkpoint': no_checkpoint, 'error': error}

    rows = [row(1, 1, 0.8, 0.1), row(1, 2, 0.6, None), row(1, 3, '', '', error='train.py failed'),
            row(1, 4, '', '', no_checkpoint='no iteration beat ...'), row(1, 5, '', '', error=MISSING),
            row(3, 1, 0.7, 0.2)]
    summary = summarize(rows, {(8, 1): 100, (8, 3): 300})
    assert (summary[0]['runs'], summary[0]['missing'], summary[1]['missing']) == (2, 1, 0)
    assert summary[0]['auc_mean'] == pytest.approx(0.7)
    assert summary[0]['auc_std'] == pytest.approx(np.std([0.8, 0.6], ddof=1))
    assert (summary[0]['far_normal_mean'], summary[0]['far_normal_std']) == (0.1, '')  # one defined value
    assert (summary[1]['runs'], summary[1]['auc_mean'], summary[1]['auc_std']) == (1, 0.7, '')
    lines = markdown(summary).splitlines()
    assert lines[2] == '| 8 | 1 | 100 | 2 | 1 | 0.7000 ± 0.1414 | 0.5000 ± 0.0000 | 0.6000 ± 0.0000 | 0.1000 | ' \
                       '0.7000 ± 0.0000 | 0.9000 ± 0.0000 |'
    assert lines[3] == '| 8 | 3 | 300 | 1 | 0 | 0.7000 | 0.5000 | 0.6000 | 0.2000 | 0.7000 | 0.9000 |'
