"""sweep.py: the paper's parameter counts, and a tiny sweep's tables against its runs' own files."""
import csv
import json

import numpy as np
import pytest

from conftest import FEATURE_SIZE, run_script
from sweep import markdown, parameter_count, summarize


def test_parameter_counts_are_the_papers():
    assert parameter_count(2048, 64, 3) == 328_004
    assert parameter_count(2048, 128, 7) == 721_992
    # W1 + b1, W2 + b2, fc1 on vec(M) [F * r] + its bias, fc2
    assert parameter_count(16, 4, 2) == 16 * 4 + 4 + 4 * 2 + 2 + 16 * 2 * 32 + 32 + 33


def test_tiny_sweep(workdir):
    result = run_script('sweep.py', '--da', 4, '--r', 1, 2, '--seeds', 1, 2, '--select', 'last', '--jobs', 2,
                        '--out', 'sw', '--feature-size', FEATURE_SIZE, '--batch-size', 4, '--max-iters', 7,
                        '--lr', 0.01, '--device', 'cpu', cwd=workdir)
    counts = {r: parameter_count(FEATURE_SIZE, 4, r) for r in (1, 2)}
    for r in (1, 2):
        assert f'da=4 r={r}: {counts[r]:,} parameters (feature size {FEATURE_SIZE})' in result.stdout

    runs = list(csv.DictReader(open(workdir / 'sw' / 'runs.csv')))
    assert [(row['da'], row['r'], row['seed']) for row in runs] == [('4', '1', '1'), ('4', '1', '2'),
                                                                     ('4', '2', '1'), ('4', '2', '2')]
    for row in runs:
        name = f'SelfAttention-da4-r{row["r"]}-T32-seed{row["seed"]}-last'
        assert row['name'] == name and row['select'] == 'last' and row['error'] == ''
        results = json.load(open(workdir / 'sw' / 'results' / f'{name}.json'))
        aucs = [float(h['auc']) for h in csv.DictReader(open(workdir / 'sw' / 'ckpt' / f'{name}.csv'))]
        assert len(aucs) == 8
        for key in ('auc', 'ap', 'auc_abnormal', 'far_normal', 'video_auc'):
            assert float(row[key]) == results[key], key
        assert float(row['auc']) == pytest.approx(aucs[-1], abs=1e-12)  # --select last: the final model's AUC
        assert float(row['best_test_auc']) == max(aucs)

    summary = list(csv.DictReader(open(workdir / 'sw' / 'summary.csv')))
    assert [(e['da'], e['r'], e['parameters'], e['runs']) for e in summary] == \
        [('4', '1', str(counts[1]), '2'), ('4', '2', str(counts[2]), '2')]
    table = open(workdir / 'sw' / 'summary.md').read().splitlines()
    assert len(table) == 4 and table[0].startswith('| da | r | parameters | runs | AUC |')
    for entry, line, r in zip(summary, table[2:], (1, 2)):
        aucs = [float(row['auc']) for row in runs if row['r'] == str(r)]
        assert float(entry['auc_mean']) == pytest.approx(np.mean(aucs), abs=1e-12)
        assert float(entry['auc_std']) == pytest.approx(np.std(aucs, ddof=1), abs=1e-12)
        assert line.startswith(f'| 4 | {r} | {counts[r]:,} | 2 | {np.mean(aucs):.4f} ± {np.std(aucs, ddof=1):.4f} |')


def test_summary_leaves_out_failed_runs_and_undefined_values():
    def row(r, seed, auc, far, error=''):
        return {'da': 8, 'r': r, 'seed': seed, 'auc': auc, 'ap': 0.5, 'auc_abnormal': 0.6, 'far_normal': far,
                'video_auc': 0.7, 'best_test_auc': 0.9, 'error': error}

    rows = [row(1, 1, 0.8, 0.1), row(1, 2, 0.6, None), row(1, 3, '', '', error='train.py failed'),
            row(3, 1, 0.7, 0.2)]
    summary = summarize(rows, {(8, 1): 100, (8, 3): 300})
    assert summary[0]['runs'] == 2 and summary[0]['auc_mean'] == pytest.approx(0.7)
    assert summary[0]['auc_std'] == pytest.approx(np.std([0.8, 0.6], ddof=1))
    assert (summary[0]['far_normal_mean'], summary[0]['far_normal_std']) == (0.1, '')  # one defined value
    assert (summary[1]['runs'], summary[1]['auc_mean'], summary[1]['auc_std']) == (1, 0.7, '')
    lines = markdown(summary).splitlines()
    assert lines[2] == '| 8 | 1 | 100 | 2 | 0.7000 ± 0.1414 | 0.5000 ± 0.0000 | 0.6000 ± 0.0000 | 0.1000 | ' \
                       '0.7000 ± 0.0000 | 0.9000 ± 0.0000 |'
    assert lines[3] == '| 8 | 3 | 300 | 1 | 0.7000 | 0.5000 | 0.6000 | 0.2000 | 0.7000 | 0.9000 |'
