"""The built-in data through the whole pipeline, as the Quick start runs it: synthetic -> preformer_feature -> train
-> test -> detect, twice."""
import json

import numpy as np

import synthetic
from conftest import run_script
from dataset import read_annotation

SIZES = dict(n_train_abnormal=40, n_train_normal=40, n_test_abnormal=6, n_test_normal=6,
             train_snippets=80 * 40, test_snippets=12 * 80)
F = ['--feature-size', 128]
RUN = 'SelfAttention-da64-r3-T32-seed1111'


def test_annotation_round_trips_through_the_parser(tmp_path):
    synthetic.generate(str(tmp_path), seed=5, crops=1, feature_size=4, progress=False, **SIZES)
    plan = synthetic.plan_videos(np.random.default_rng(5), anomalous_share=0.076, **{**synthetic.SMALL, **SIZES})
    parsed = read_annotation(str(tmp_path / synthetic.ANNOTATION))
    expected = {v.name: (v.spans if v.cls != 'Normal' else []) for v in plan if v.split == 'Test'}
    assert parsed == expected
    assert sum(map(bool, parsed.values())) == 6


def outputs(root):
    """What the Quick start's commands write, but the figures and the review page: {path: bytes}."""
    return {p: p.read_bytes() for folder in ('features', 'list', 'preformer_features', 'ckpt', 'results')
            for p in sorted((root / folder).rglob('*')) if p.is_file() and p.suffix not in ('.png', '.html')}


def test_the_quick_start_learns_and_runs_twice(tmp_path):
    """The Quick start's five commands on a smaller set: training beats the untrained model, and the commands run
    again in the same folder do the same work again, to the same bytes."""
    settings = dict(seed=5, snr=2.0, crops=2, feature_size=128, **SIZES)
    synthetic.generate(str(tmp_path), progress=False, **settings)  # the first time in-process: as the command, quicker
    flags = [x for key, value in settings.items() for x in ('--' + key.replace('_', '-'), value)]
    commands = [('synthetic.py', '--out', '.', *flags),
                ('preformer_feature.py', '--annotation', synthetic.ANNOTATION, *F),
                ('train.py', '--da', 64, '--r', 3, *F, '--batch-size', 8, '--device', 'cpu'),  # 9 iterations an epoch
                ('test.py', '--da', 64, '--r', 3, '--seed', 1111, *F, '--device', 'cpu'),
                ('detect.py', 'features/UCF-Test/Explosion003_x264_i3d.npy', '--ckpt', f'ckpt/{RUN}.pth',
                 '--device', 'cpu')]
    printed = [run_script(*command, cwd=tmp_path).stdout for command in commands[1:]]
    history = np.genfromtxt(tmp_path / 'ckpt' / f'{RUN}.csv', delimiter=',', names=True)
    logged = [line.split()[4] for line in printed[1].splitlines() if line.startswith(f'{RUN} epoch ')]
    assert logged == [str(i) for i in range(2, 91, 2)] and len(history) == 91  # a line every 9 // 4 iterations
    auc = float(printed[2].split('auc_score : ')[1].split()[0])
    assert auc == history['auc'].max() == json.load(open(tmp_path / 'results' / f'{RUN}.json'))['auc']
    assert auc > history['auc'][0] + 0.2  # seen: 0.543 untrained, 0.907 trained

    first = outputs(tmp_path)
    assert {str(p.relative_to(tmp_path)) for p in first} >= {
        'features/UCF-Train/synthetic.json', 'features/UCF-Test/synthetic.json', 'list/ucf-i3d-test.list',
        'list/pre-ucf-i3d-train-32.list', 'list/gt-ucf.npy', f'ckpt/{RUN}.pth', f'ckpt/{RUN}.csv',
        f'ckpt/{RUN}.state.pt', f'results/{RUN}.json', 'results/videos/Explosion003_x264.csv',
        'results/videos/Explosion003_x264.json'}
    for command in commands:
        run_script(*command, cwd=tmp_path)
    assert outputs(tmp_path) == first
