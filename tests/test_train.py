"""train.py: the authors' trajectory, determinism, checkpoint selection, and an interrupted run resumed."""
import csv
import os
import runpy
import signal
import subprocess
import sys
import time

import numpy as np
import torch

import metrics
import model
from conftest import FEATURE_SIZE, REPO, SHARED, needs_shared, run_script

TINY = ['--feature-size', FEATURE_SIZE, '--batch-size', 4, '--device', 'cpu']
NAME = 'SelfAttention-da64-r3-T32-seed1111'
TRAJECTORY = os.path.join(SHARED, 'reference', 'trajectory')


def history(root, ckpt_dir='ckpt'):
    return list(csv.reader(open(os.path.join(root, ckpt_dir, NAME + '.csv'))))


def test_same_seed_same_run(workdir):
    printed = run_script('train.py', *TINY, '--max-epoch', 12, '--ckpt-dir', 'a', '--log-every', 5, cwd=workdir).stdout
    run_script('train.py', *TINY, '--max-epoch', 12, '--ckpt-dir', 'b', cwd=workdir)  # printing is all that differs
    rows = history(workdir, 'a')
    # a line every 5 iterations, as the history has it; not the model
    lines = [line for line in printed.splitlines() if line.startswith(f'{NAME} epoch ')]
    best = [max(float(r[3]) for r in rows[1:i + 2]) for i in range(37)]
    assert lines == [f'{NAME} epoch {rows[i + 1][1]} iteration {i} loss {float(rows[i + 1][2]):.4f} auc '
                     f'{float(rows[i + 1][3]):.6f} max_auc {best[i]:.6f}' for i in range(5, 37, 5)]
    assert 'VideoClassifier(' not in printed and printed.startswith(f'{NAME}: ')
    assert rows[0] == ['iteration', 'epoch', 'loss', 'auc']
    assert rows[1][:3] == ['0', '', ''] and len(rows) == 2 + 36  # 16 samples a pool, batches of 4: 3 an epoch
    assert [r[:2] for r in rows[2:]] == [[str(i), str((i - 1) // 3 + 1)] for i in range(1, 37)]
    assert rows == history(workdir, 'b')
    a, b = (torch.load(workdir / d / (NAME + '.pth')) for d in 'ab')
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoint_only_on_strict_improvement(workdir, monkeypatch):
    events = []
    auc = metrics.frame_auc
    save = model.save_checkpoint
    monkeypatch.setattr(metrics, 'frame_auc', lambda *a: events.append(auc(*a)) or events[-1])
    monkeypatch.setattr(model, 'save_checkpoint', lambda *a: events.append('saved') or save(*a))
    monkeypatch.chdir(workdir)
    monkeypatch.setattr(sys, 'argv', ['train.py', *map(str, TINY), '--max-epoch', '12'])
    runpy.run_path(os.path.join(REPO, 'train.py'), run_name='__main__')

    aucs = [e for e in events if e != 'saved']
    saved_after = [i for i, e in enumerate(events) if e == 'saved']
    saved_after = [len([e for e in events[:i] if e != 'saved']) - 1 for i in saved_after]
    # the first AUC counts as the best so far; ties never save (steps 1-5 leave the weights, and the AUC, as they are)
    expected = [i for i in range(1, len(aucs)) if aucs[i] > max(aucs[:i])]
    assert aucs[1:6] == [aucs[0]] * 5
    assert saved_after == expected and expected


@needs_shared
def test_the_authors_trajectory(tmp_path):
    """The authors' own train.py printed these AUCs on this check set; ours must give them too."""
    subprocess.run([sys.executable, os.path.join(TRAJECTORY, 'make_check_set.py'), str(tmp_path),
                    '--n-test', '30', '--train-len', '6', '--seed', '777'], check=True, capture_output=True)
    run_script('preformer_feature.py', '--annotation', 'Temporal_Anomaly_Annotation_for_Testing_Videos.txt', cwd=tmp_path)
    np.testing.assert_array_equal(np.load(tmp_path / 'list' / 'gt-ucf.npy'), np.load(tmp_path / 'gt-ucf-reference.npy'))
    iterations = 40
    run_script('train.py', '--da', 64, '--r', 3, '--seed', 1111, '--max-iters', iterations, '--device', 'cpu', cwd=tmp_path)
    aucs = [float(row[3]) for row in history(tmp_path)[1:]]
    expected = np.loadtxt(os.path.join(TRAJECTORY, 'expected_auc_da64_r3_seed1111.txt'))[:iterations + 1]
    np.testing.assert_allclose(aucs, expected, rtol=0, atol=1e-9)


def test_killed_run_resumes_to_the_same_end(workdir):
    args = [*TINY, '--max-epoch', 30, '--save-every', 7]  # 90 iterations
    run_script('train.py', *args, '--ckpt-dir', 'whole', cwd=workdir)

    process = subprocess.Popen([sys.executable, os.path.join(REPO, 'train.py'), *map(str, args), '--ckpt-dir', 'cut'],
                               cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    csv_path = workdir / 'cut' / (NAME + '.csv')
    while not (csv_path.exists() and len(open(csv_path).readlines()) > 30):
        assert process.poll() is None, 'the run ended before it could be killed'
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    process.wait()
    rows_at_kill = len(open(csv_path).readlines())
    assert rows_at_kill < 92

    run_script('train.py', *args, '--ckpt-dir', 'cut', '--resume', cwd=workdir)
    assert history(workdir, 'cut') == history(workdir, 'whole')
    whole, cut = (torch.load(workdir / d / (NAME + '.pth')) for d in ('whole', 'cut'))
    assert all(torch.equal(whole[k], cut[k]) for k in whole)
