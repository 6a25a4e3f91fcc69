"""The built-in data through the whole pipeline: generator -> preformer_feature -> train -> test."""
import json

import numpy as np

import synthetic
from conftest import run_script
from dataset import read_annotation

SIZES = dict(n_train_abnormal=40, n_train_normal=40, n_test_abnormal=6, n_test_normal=6,
             train_snippets=80 * 40, test_snippets=12 * 80)
F = ['--feature-size', 128]


def test_annotation_round_trips_through_the_parser(tmp_path):
    synthetic.generate(str(tmp_path), seed=5, crops=1, feature_size=4, progress=False, **SIZES)
    plan = synthetic.plan_videos(np.random.default_rng(5), anomalous_share=0.076, **{**synthetic.SMALL, **SIZES})
    parsed = read_annotation(str(tmp_path / synthetic.ANNOTATION))
    expected = {v.name: (v.spans if v.cls != 'Normal' else []) for v in plan if v.split == 'Test'}
    assert parsed == expected
    assert sum(map(bool, parsed.values())) == 6


def test_training_beats_the_untrained_model(tmp_path):
    synthetic.generate(str(tmp_path), seed=5, snr=2, crops=2, feature_size=128, progress=False, **SIZES)
    run_script('preformer_feature.py', *F, '--annotation', synthetic.ANNOTATION, cwd=tmp_path)
    run_script('train.py', *F, '--batch-size', 8, '--device', 'cpu', cwd=tmp_path)  # 9 iterations an epoch
    history = np.genfromtxt(tmp_path / 'ckpt' / 'SelfAttention-da64-r3-T32-seed1111.csv', delimiter=',', names=True)
    printed = run_script('test.py', *F, '--device', 'cpu', cwd=tmp_path).stdout
    auc = float(printed.split('auc_score : ')[1].split()[0])
    assert auc == history['auc'].max() == json.load(open(tmp_path / 'results' / 'SelfAttention-da64-r3-T32-seed1111.json'))['auc']
    assert auc > history['auc'][0] + 0.2  # seen: 0.543 untrained, 0.907 trained
