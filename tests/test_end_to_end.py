"""The built-in data through the whole pipeline: generator -> preformer_feature -> train -> test."""
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


def test_training_beats_the_untrained_model(tmp_path):
    synthetic.generate(str(tmp_path), seed=5, snr=2, crops=2, feature_size=128, progress=False, **SIZES)
    run_script('preformer_feature.py', *F, '--annotation', synthetic.ANNOTATION, cwd=tmp_path)
    trained = run_script('train.py', *F, '--batch-size', 8, '--device', 'cpu', cwd=tmp_path)  # 9 iterations an epoch
    history = np.genfromtxt(tmp_path / 'ckpt' / 'SelfAttention-da64-r3-T32-seed1111.csv', delimiter=',', names=True)
    logged = [line.split()[4] for line in trained.stdout.splitlines() if line.startswith(f'{RUN} epoch ')]
    assert logged == [str(i) for i in range(2, 91, 2)] and len(history) == 91  # a line every 9 // 4 iterations
    printed = run_script('test.py', *F, '--device', 'cpu', cwd=tmp_path).stdout
    auc = float(printed.split('auc_score : ')[1].split()[0])
    assert auc == history['auc'].max() == json.load(open(tmp_path / 'results' / 'SelfAttention-da64-r3-T32-seed1111.json'))['auc']
    assert auc > history['auc'][0] + 0.2  # seen: 0.543 untrained, 0.907 trained


def outputs(root):
    """What the Quick start's commands write, but the figures and the review page: {path: bytes}."""
    return {p: p.read_bytes() for folder in ('features', 'list', 'preformer_features', 'ckpt', 'results')
            for p in sorted((root / folder).rglob('*')) if p.is_file() and p.suffix not in ('.png', '.html')}


def test_the_quick_start_runs_twice(tmp_path):
    """The Quick start's five commands, on a tiny set and a short training, twice in one folder: the second run
    does the same work again, to the same bytes."""
    tiny = ['--n-train-abnormal', 8, '--n-train-normal', 8, '--n-test-abnormal', 3, '--n-test-normal', 3,
            '--train-snippets', 480, '--test-snippets', 300, '--crops', 2, '--feature-size', 16, '--snr', 4]
    cpu = ['--device', 'cpu']
    run_script('synthetic.py', '--out', '.', *tiny, cwd=tmp_path)
    video = sorted((tmp_path / 'features' / 'UCF-Test').glob('*_i3d.npy'))[0].relative_to(tmp_path)
    commands = [('synthetic.py', '--out', '.', *tiny),
                ('preformer_feature.py', '--annotation', synthetic.ANNOTATION, '--feature-size', 16),
                ('train.py', '--da', 64, '--r', 3, '--feature-size', 16, '--batch-size', 4, '--max-epoch', 4, *cpu),
                ('test.py', '--da', 64, '--r', 3, '--seed', 1111, '--feature-size', 16, *cpu),
                ('detect.py', video, '--ckpt', f'ckpt/{RUN}.pth', *cpu)]
    for command in commands[1:]:
        run_script(*command, cwd=tmp_path)
    first = outputs(tmp_path)
    name = video.name[:-len('_i3d.npy')]
    assert {str(p.relative_to(tmp_path)) for p in first} >= {
        'features/UCF-Train/synthetic.json', 'features/UCF-Test/synthetic.json', 'list/ucf-i3d-test.list',
        'list/pre-ucf-i3d-train-32.list', 'list/gt-ucf.npy', f'ckpt/{RUN}.pth',
        f'ckpt/{RUN}.csv', f'ckpt/{RUN}.state.pt', f'results/{RUN}.json', f'results/videos/{name}.csv',
        f'results/videos/{name}.json'}
    for command in commands:
        run_script(*command, cwd=tmp_path)
    assert outputs(tmp_path) == first
