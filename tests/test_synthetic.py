"""synthetic.py writes UCF-Crime's form exactly, deterministically, with the counts asked for."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import synthetic  # noqa: E402

TINY = dict(n_train_abnormal=5, n_train_normal=4, n_test_abnormal=3, n_test_normal=2,
            train_snippets=90, test_snippets=120, crops=2, feature_size=16, progress=False)
ANOMALOUS = re.compile(r'^(%s)\d{3}_x264$' % '|'.join(synthetic.CLASSES))
NORMAL_TRAIN = re.compile(r'^Normal_Videos\d{3}_x264$')
NORMAL_TEST = re.compile(r'^Normal_Videos_\d{3}_x264$')


def tiny(root, **changes):
    return synthetic.generate(str(root), **{**TINY, **changes})


def all_files(root):
    return {os.path.relpath(os.path.join(d, f), root): open(os.path.join(d, f), 'rb').read()
            for d, _, files in os.walk(root) for f in files}


def names(root, split):
    folder = os.path.join(root, 'features', f'UCF-{split}')
    return sorted(f[:-len('_i3d.npy')] for f in os.listdir(folder) if f.endswith('_i3d.npy'))


def read_annotation(root):
    return [line.split('  ') for line in open(os.path.join(root, synthetic.ANNOTATION)).read().splitlines()]


def video_class(name):
    return 'Normal' if name.startswith('Normal') else re.match(r'[A-Za-z]+', name).group(0)


@pytest.fixture(scope='module')
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp('synthetic')
    tiny(root)
    return root


def test_same_seed_gives_identical_bytes(root, tmp_path):
    tiny(tmp_path)
    first, second = all_files(root), all_files(tmp_path)
    assert sorted(first) == sorted(second) and len(first) == 5 + 4 + 3 + 2 + 1 + 2  # and a marker per folder
    assert all(first[path] == second[path] for path in first)


def test_another_seed_gives_other_data(root, tmp_path):
    tiny(tmp_path, seed=1)
    first, second = all_files(root), all_files(tmp_path)
    assert first[synthetic.ANNOTATION] != second[synthetic.ANNOTATION]
    for split in ('Train', 'Test'):  # the names may differ too; compare the features in list order
        a = np.concatenate([np.load(os.path.join(root, 'features', f'UCF-{split}', n + '_i3d.npy'))
                            for n in names(root, split)])
        b = np.concatenate([np.load(os.path.join(tmp_path, 'features', f'UCF-{split}', n + '_i3d.npy'))
                            for n in names(tmp_path, split)])
        assert a.shape != b.shape or not np.array_equal(a, b)


def test_features_have_the_real_form(root):
    for split, total in (('Train', TINY['train_snippets']), ('Test', TINY['test_snippets'])):
        lengths = []
        for name in names(root, split):
            x = np.load(os.path.join(root, 'features', f'UCF-{split}', name + '_i3d.npy'))
            assert x.dtype == np.float32 and x.ndim == 3 and x.shape[1:] == (2, 16) and len(x) >= 2
            assert np.isfinite(x).all() and x.min() == 0.0 and x.max() > 0.0  # post-ReLU: zeros, no negatives
            assert np.abs(x[:, 0] - x[:, 1]).mean() < 0.5 * x.mean()  # the crops are near-copies
            lengths.append(len(x))
        assert sum(lengths) == total


def test_names_and_counts(root):
    train, test = names(root, 'Train'), names(root, 'Test')
    assert not set(train) & set(test)
    for split, videos, normal_pattern in (('train', train, NORMAL_TRAIN), ('test', test, NORMAL_TEST)):
        normal = [n for n in videos if n.startswith('Normal')]
        anomalous = [n for n in videos if not n.startswith('Normal')]
        assert all(normal_pattern.match(n) for n in normal), normal
        assert all(ANOMALOUS.match(n) for n in anomalous), anomalous
        assert len(normal) == TINY[f'n_{split}_normal'] and len(anomalous) == TINY[f'n_{split}_abnormal']
    # the classes are apportioned as the real counts: the largest ones first
    assert sorted(video_class(n) for n in train if not n.startswith('Normal')) == \
        ['Abuse', 'Burglary', 'RoadAccidents', 'Robbery', 'Stealing']
    assert sorted(video_class(n) for n in test if not n.startswith('Normal')) == \
        ['Explosion', 'RoadAccidents', 'Shooting']


def test_annotation_rows(root):
    rows = read_annotation(root)
    test = names(root, 'Test')
    assert [row[0] for row in rows] == sorted([n + '.mp4' for n in test], key=lambda n: (n.startswith('Normal'), n))
    for row in rows:
        assert len(row) == 6
        name, cls, s1, e1, s2, e2 = row[0][:-len('.mp4')], row[1], *map(int, row[2:])
        assert cls == video_class(name)
        frames = 16 * len(np.load(os.path.join(root, 'features', 'UCF-Test', name + '_i3d.npy'), mmap_mode='r'))
        if cls == 'Normal':
            assert (s1, e1, s2, e2) == (-1, -1, -1, -1)
        else:
            assert 0 <= s1 <= e1 < frames
            assert (s2, e2) == (-1, -1) or e1 < s2 <= e2 < frames


def test_anomalies_raise_the_features_inside_their_spans(tmp_path):
    tiny(tmp_path, snr=3.0, n_test_normal=0, test_snippets=300)
    inside, outside = [], []
    for row in read_annotation(tmp_path):
        x = np.load(os.path.join(tmp_path, 'features', 'UCF-Test', row[0][:-len('.mp4')] + '_i3d.npy'))
        mask = np.zeros(len(x), bool)
        for start, end in zip(map(int, row[2::2]), map(int, row[3::2])):
            if start >= 0:
                mask[start // 16:end // 16 + 1] = True  # the snippets the span touches
        inside.append(x[mask].mean())
        outside.append(x[~mask].mean())
    assert all(i > o for i, o in zip(inside, outside))


def test_full_plan_has_the_real_counts():
    videos = synthetic.plan_videos(np.random.default_rng(0), anomalous_share=0.076, **synthetic.FULL)
    for split, (n_abnormal, n_normal), snippets, column in (('Train', (810, 800), 794_000, 0),
                                                            ('Test', (140, 150), 69_634, 1)):
        group = [v for v in videos if v.split == split]
        assert sum(v.cls == 'Normal' for v in group) == n_normal and len(group) == n_abnormal + n_normal
        assert sum(v.length for v in group) == snippets
        assert {c: sum(v.cls == c for v in group) for c in synthetic.CLASSES} == \
            {c: counts[column] for c, counts in synthetic.CLASSES.items()}
    test = [v for v in videos if v.split == 'Test']
    anomalous = sum(e - s + 1 for v in test if v.cls != 'Normal' for s, e in v.spans)
    assert abs(anomalous / (16 * 69_634) - 0.076) < 0.003
    assert sum(1 <= len(v.spans) <= 2 for v in test if v.cls != 'Normal') == 140
    assert 0 < sum(v.length < 32 for v in videos if v.split == 'Train') < 100  # a few shorter than 32 snippets
    assert len({v.name for v in videos}) == len(videos)


def test_spans_are_disjoint_inside_the_video_and_cover_what_was_asked():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n_frames, coverage, n_spans = 16 * int(rng.integers(2, 60)), rng.random(), int(rng.integers(1, 3))
        spans = synthetic.draw_spans(rng, n_frames, coverage, n_spans)
        ends = [x for span in spans for x in span]
        assert len(spans) == n_spans and ends[0] >= 0 and ends[-1] < n_frames
        assert all(a < b for a, b in zip(ends[1::2], ends[2::2])) and all(s <= e for s, e in spans)
        assert all(b - a > 1 for a, b in zip(ends[1::2], ends[2::2]))  # a gap between two spans
        wanted = np.clip(round(coverage * n_frames), 16 * n_spans, n_frames - n_spans + 1)
        assert sum(e - s + 1 for s, e in spans) == wanted


def test_snippet_coverage_counts_inclusive_frames():
    assert synthetic.snippet_coverage([(16, 39)], 4).tolist() == [0, 1, 0.5, 0]
    assert synthetic.snippet_coverage([(0, 0), (63, 63)], 4).tolist() == [1 / 16, 0, 0, 1 / 16]


def test_apportion_is_exact():
    assert synthetic.apportion(10, [1, 1, 1]).tolist() == [4, 3, 3]
    assert synthetic.apportion(7, [0.5, 0.25, 0.25]).tolist() == [3, 2, 2]  # largest remainders: .75, .75
    assert synthetic.apportion(0, [2, 3]).tolist() == [0, 0]


def test_a_run_again_replaces_its_own_files(root, tmp_path):
    tiny(tmp_path)
    tiny(tmp_path)  # the same seed and flags: the same bytes
    assert all_files(tmp_path) == all_files(root)
    tiny(tmp_path, seed=1, n_test_abnormal=1, n_test_normal=1)  # another set: the old files go, none left stale
    assert len(names(tmp_path, 'Test')) == 2 and len(read_annotation(tmp_path)) == 2
    marker = json.load(open(tmp_path / 'features' / 'UCF-Test' / 'synthetic.json'))
    files = [f'{n}_i3d.npy' for n in names(tmp_path, 'Test')] + ['../../' + synthetic.ANNOTATION]
    assert marker['settings']['seed'] == 1 and marker['files'] == {
        name: os.path.getsize(tmp_path / 'features' / 'UCF-Test' / name) for name in files}


@pytest.mark.parametrize('foreign', ['features/UCF-Train/Abuse001_x264_i3d.npy', synthetic.ANNOTATION])
def test_refuses_to_overwrite_files_not_its_own_unless_asked(tmp_path, foreign):
    tiny(tmp_path)
    (tmp_path / foreign).write_bytes(b'not written by synthetic.py')
    before = all_files(tmp_path)
    with pytest.raises(FileExistsError, match=r'already holds 1 file\(s\) that synthetic.py did not write '
                                              rf'\(e.g. {os.path.basename(foreign)}\); pass --overwrite'):
        tiny(tmp_path)
    assert all_files(tmp_path) == before  # nothing touched
    tiny(tmp_path, overwrite=True)
    assert open(tmp_path / foreign, 'rb').read() != before[foreign]


def test_a_shanghai_set_claims_its_masks_only(tmp_path):
    sizes = dict(n_train_abnormal=2, n_train_normal=2, n_test_abnormal=2, n_test_normal=1, train_snippets=60,
                 test_snippets=60, crops=1, feature_size=4, progress=False, dataset='shanghai')
    synthetic.generate(str(tmp_path), **sizes)
    synthetic.generate(str(tmp_path), **sizes)
    assert len(os.listdir(tmp_path / 'test_frame_mask')) == 2
    np.save(tmp_path / 'test_frame_mask' / '99_0999.npy', np.zeros(3, np.uint8))  # a real mask, say
    with pytest.raises(FileExistsError, match='test_frame_mask already holds 1 file'):
        synthetic.generate(str(tmp_path), **sizes)


def test_command_line(tmp_path):
    flags = ['--n-train-abnormal', '2', '--n-train-normal', '2', '--n-test-abnormal', '1', '--n-test-normal', '1',
             '--train-snippets', '40', '--test-snippets', '30', '--crops', '2', '--feature-size', '8', '--seed', '3']
    out = subprocess.run([sys.executable, os.path.join(ROOT, 'synthetic.py'), '--out', str(tmp_path)] + flags,
                         capture_output=True, text=True, check=True).stdout
    assert re.fullmatch(r'synthetic UCF-Crime in .*: 4 train \+ 2 test videos, 40 \+ 30 snippets, 480 test frames '
                        r'\(\d+\.\d% anomalous\), 0 MB in \d+\.\d s\n', out), out
    assert len(names(tmp_path, 'Train')) == 4 and len(read_annotation(tmp_path)) == 2
    np.save(tmp_path / 'features' / 'UCF-Test' / 'Mine_i3d.npy', np.ones((2, 2, 8), np.float32))
    again = subprocess.run([sys.executable, os.path.join(ROOT, 'synthetic.py'), '--out', str(tmp_path)] + flags,
                           capture_output=True, text=True)  # run again as it is (test_end_to_end), but for this file
    assert again.returncode == 2 and again.stderr.strip().splitlines()[-1] == (
        f'synthetic.py: error: {tmp_path}/features/UCF-Test already holds 1 file(s) that synthetic.py did not write '
        '(e.g. Mine_i3d.npy); pass --overwrite to replace them')
