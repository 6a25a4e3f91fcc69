"""--select last and --select val keep the models they should; the held-out split leaves the run's RNGs alone."""
import csv
import os
import runpy
import sys

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

import dataset
from conftest import FEATURE_SIZE, REPO, assert_png, run_script
from dataset import load_train_pools, read_list
from metrics import frame_auc
from model import VideoClassifier, load_checkpoint
from protocol import snippet_scores
from train import hold_out

TINY = ['--feature-size', FEATURE_SIZE, '--batch-size', 4, '--device', 'cpu', '--lr', 0.01]
NAME = 'SelfAttention-da64-r3-T32-seed1111'


def history(path):
    return list(csv.DictReader(open(path)))


def checkpoint_auc(ckpt):
    """The frame-level test AUC of a checkpoint, computed here (in the prepared set's folder)."""
    test_set = dataset.TestSet('list/ucf-i3d-test.list', 'list/gt-ucf.npy', FEATURE_SIZE)
    return frame_auc(snippet_scores(load_checkpoint(ckpt, VideoClassifier(FEATURE_SIZE)), test_set, 32), test_set.gt)


def test_hold_out_is_class_stratified_and_draws_nothing():
    paths = [f'p/{cls}{i:03d}_x264_i3d.npy' for cls, n in (('Abuse', 20), ('Arrest', 10), ('Normal_Videos', 30))
             for i in range(1, n + 1)]
    np.random.seed(5)
    torch.manual_seed(5)
    numpy_state, torch_state = np.random.get_state()[1].copy(), torch.get_rng_state()
    held = hold_out(paths, 0.1, 1111)
    assert (np.random.get_state()[1] == numpy_state).all() and torch.equal(torch.get_rng_state(), torch_state)

    assert [sum(f'/{c}' in p for p in held) for c in ('Abuse', 'Arrest', 'Normal')] == [2, 1, 3]  # 10% of each
    assert held == [p for p in paths if p in held]  # list order
    assert held == hold_out(paths, 0.1, 1111) != hold_out(paths, 0.1, 2222)
    uneven = hold_out(paths[:27] + paths[30:], 0.25, 7)  # 20 Abuse, 7 Arrest, 30 Normal
    for cls, n in (('Abuse', 20), ('Arrest', 7), ('Normal', 30)):
        assert abs(sum(f'/{cls}' in p for p in uneven) - 0.25 * n) < 1, cls


def test_select_last_keeps_the_final_model(workdir, monkeypatch):
    monkeypatch.chdir(workdir)  # the lists' paths are relative
    result = run_script('train.py', *TINY, '--max-epoch', 4, '--select', 'last', cwd=workdir)  # 12 iterations
    ckpt = f'ckpt/{NAME}-last'
    assert not os.path.exists(f'ckpt/{NAME}.pth')  # the paper's selection's name stays free
    aucs = [float(r['auc']) for r in history(ckpt + '.csv')]
    best = int(np.argmax(aucs))  # the first of equals

    final = torch.load(ckpt + '.state.pt', weights_only=False)['model']
    kept = torch.load(ckpt + '.pth')
    assert all(torch.equal(kept[k], final[k]) for k in final)
    assert checkpoint_auc(ckpt + '.pth') == pytest.approx(aucs[-1], abs=1e-12)

    assert (f"best test AUC {aucs[best]:.6f} at iteration {best}: the paper's selection, the best of 13 "
            'evaluations on the test set itself') in result.stdout
    assert f'test AUC at the last iteration (12): {aucs[-1]:.6f}' in result.stdout
    assert f'kept the last model (iteration 12, test AUC {aucs[-1]:.6f})' in result.stdout
    assert_png(ckpt + '.png')


def test_select_val_keeps_the_best_validated_model(workdir, monkeypatch):
    monkeypatch.chdir(workdir)  # the lists' paths are relative
    result = run_script('train.py', *TINY, '--max-epoch', 10, '--select', 'val', '--val-fraction', 0.5, cwd=workdir)
    assert '--select val: 4 normal and 4 anomalous train videos held out' in result.stdout
    rows = history(f'ckpt/{NAME}-val0.5.csv')
    assert list(rows[0]) == ['iteration', 'epoch', 'loss', 'auc', 'val_auc'] and len(rows) == 11
    # the held-out videos left the pools: 4 videos x 2 crops a pool, so one batch of 4 an epoch
    assert [r['epoch'] for r in rows[1:]] == [str(i) for i in range(1, 11)]
    held = hold_out(read_list('list/pre-ucf-i3d-train-32.list'), 0.5, 1111)
    normal, anomalous = load_train_pools('list/pre-ucf-i3d-train-32.list', FEATURE_SIZE, 32, exclude=held)
    assert len(normal) == len(anomalous) == 8 and normal[[0]].shape == (1, 32, FEATURE_SIZE)

    # the kept model is the first with the best validation AUC, recomputed here from the held-out videos
    vals = [float(r['val_auc']) for r in rows]
    kept = int(np.argmax(vals))
    model = load_checkpoint(f'ckpt/{NAME}-val0.5.pth', VideoClassifier(FEATURE_SIZE)).eval()
    with torch.no_grad():
        scores = [model(torch.from_numpy(np.load(p))).mean().item() for p in held]
    assert roc_auc_score([not dataset.is_normal(p) for p in held], scores) == pytest.approx(vals[kept], abs=1e-12)
    assert checkpoint_auc(f'ckpt/{NAME}-val0.5.pth') == pytest.approx(float(rows[kept]['auc']), abs=1e-12)
    assert f'kept the best validation AUC {vals[kept]:.6f} on 8 held-out train videos (iteration {kept},' \
        in result.stdout


@pytest.mark.parametrize('fraction, message', [
    (0.05, '--val-fraction 0.05 holds out no normal or no anomalous video; the validation AUC needs both'),
    (1.0, '--val-fraction must lie between 0 and 1, got 1.0')])
def test_select_val_errors_in_one_line(workdir, monkeypatch, fraction, message):
    monkeypatch.chdir(workdir)
    monkeypatch.setattr(sys, 'argv', ['train.py', *map(str, TINY), '--select', 'val', '--val-fraction', str(fraction)])
    with pytest.raises(SystemExit) as exit:
        runpy.run_path(os.path.join(REPO, 'train.py'), run_name='__main__')
    assert exit.value.code == f'train.py: error: {message}'  # cli.run: printed as one line, exit status 1
