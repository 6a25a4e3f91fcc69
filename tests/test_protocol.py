"""Each rule of the paper's data protocol against a plain, independent computation."""
import os
import random

import numpy as np
import pytest

from conftest import OFFICIAL, run_script
from dataset import frame_labels, ground_truth, pool, read_annotation, scan_features

UCF_CRIME = os.path.join(OFFICIAL, 'ucf_crime')
ANNOTATION = os.path.join(UCF_CRIME, 'Temporal_Anomaly_Annotation_for_Testing_Videos.txt')


def pool_by_hand(features, segments):
    """RTFM's process_feat per crop, with the boundaries floor(i*T/S) in integer arithmetic."""
    T = len(features)
    bounds = [i * T // segments for i in range(segments + 1)]
    out = np.zeros((features.shape[1], segments, features.shape[2]), np.float32)
    for crop in range(features.shape[1]):
        for i in range(segments):
            rows = features[bounds[i]:bounds[i + 1], crop] if bounds[i] < bounds[i + 1] else features[bounds[i]:bounds[i] + 1, crop]
            out[crop, i] = rows.sum(0) / len(rows)
    return out


@pytest.mark.parametrize('T', [64, 96, 100, 45, 32, 20, 3, 1])
def test_pool_matches_process_feat(T):
    # small integers make every sum exact, so the pooled values are exact too
    features = np.random.default_rng(T).integers(0, 8, (T, 3, 5)).astype(np.float32)
    pooled = pool(features, 32)
    assert pooled.dtype == np.float32 and pooled.shape == (3, 32, 5)
    np.testing.assert_array_equal(pooled, pool_by_hand(features, 32))


def test_pool_divisible_averages_consecutive_pairs():
    features = np.arange(64 * 2 * 1, dtype=np.float32).reshape(64, 2, 1)
    pooled = pool(features, 32)
    np.testing.assert_array_equal(pooled[0, :, 0], [(4 * i + 4 * i + 2) / 2 for i in range(32)])
    np.testing.assert_array_equal(pooled[1, :, 0], [(4 * i + 1 + 4 * i + 3) / 2 for i in range(32)])


def test_pool_shorter_than_segments_repeats_rows():
    # T=3, S=4: boundaries floor(0, .75, 1.5, 2.25, 3) = 0 0 1 2 3; the empty span takes row 0
    features = np.array([10, 20, 30], np.float32).reshape(3, 1, 1)
    np.testing.assert_array_equal(pool(features, 4)[0, :, 0], [10, 10, 20, 30])


def test_pool_is_bit_exact_on_real_valued_features():
    features = np.random.default_rng(0).random((1001, 10, 64), dtype=np.float32) * 3
    bounds = np.linspace(0, 1001, 33).astype(int)
    for crop in (0, 7):
        per_crop = features[:, crop, :]  # the original pooled one strided [T, F] crop at a time
        expected = np.stack([np.mean(per_crop[bounds[i]:bounds[i + 1], :], 0) for i in range(32)])
        np.testing.assert_array_equal(pool(features, 32)[crop], expected)


@pytest.mark.parametrize('split', ['train', 'test'])
def test_scan_gives_the_official_list_order(tmp_path, split):
    official = [line.strip() for line in open(os.path.join(UCF_CRIME, f'{split}_videos.txt')) if line.strip()]
    shuffled = official[:]
    random.Random(0).shuffle(shuffled)
    for name in shuffled:
        open(tmp_path / f'{name}_i3d.npy', 'w').close()
    open(tmp_path / 'notes.txt', 'w').close()
    found = [os.path.basename(p)[:-len('_i3d.npy')] for p in scan_features(str(tmp_path))]
    assert found == official


def test_preformer_writes_the_lists_in_official_order(tmp_path):
    names = ['Normal_Videos_003_x264', 'Arrest001_x264', 'Abuse030_x264', 'Normal_Videos_010_x264', 'Abuse028_x264']
    for split in ('Train', 'Test'):
        os.makedirs(tmp_path / 'features' / f'UCF-{split}')
        for name in names:
            np.save(tmp_path / 'features' / f'UCF-{split}' / f'{name}_i3d.npy', np.ones((5, 2, 4), np.float32))
    run_script('preformer_feature.py', '--feature-size', 4, cwd=tmp_path)
    order = ['Abuse028_x264', 'Abuse030_x264', 'Arrest001_x264', 'Normal_Videos_003_x264', 'Normal_Videos_010_x264']
    assert open(tmp_path / 'list' / 'ucf-i3d-test.list').read().splitlines() == \
        [f'features/UCF-Test/{n}_i3d.npy' for n in order]
    assert open(tmp_path / 'list' / 'pre-ucf-i3d-train-32.list').read().splitlines() == \
        [f'preformer_features/{n}_i3d.npy' for n in order]
    assert np.load(tmp_path / 'preformer_features' / 'Abuse028_x264_i3d.npy').shape == (2, 32, 4)


def labels_by_hand(n_frames, spans):
    return np.array([1.0 if any(s <= f <= e for s, e in spans) else 0.0 for f in range(n_frames)])


def test_ground_truth_from_the_real_annotation():
    annotation = read_annotation(ANNOTATION)
    assert len(annotation) == 290
    videos = {  # name: snippets; spans as written in the official file
        'Abuse028_x264': (20, [(165, 240)]),                       # one span
        'Stealing019_x264': (300, [(2730, 2790), (4170, 4350)]),   # two spans
        'Arrest024_x264': (150, [(1005, 3105)]),                   # 2400 frames: the span is clipped
        'Normal_Videos_003_x264': (7, []),                         # normal: all zero
    }
    for name, (_, spans) in videos.items():
        assert annotation[name] == spans
    paths = [f'x/{name}_i3d.npy' for name in videos]
    gt = ground_truth(paths, [T for T, _ in videos.values()], annotation)
    expected = np.concatenate([labels_by_hand(16 * T, spans) for T, spans in videos.values()])
    assert gt.shape == (16 * 477,)
    np.testing.assert_array_equal(gt, expected)
    assert [gt[:320].sum(), gt[320:5120].sum(), gt[5120:7520].sum(), gt[7520:].sum()] == [76, 61 + 181, 1395, 0]


def test_annotation_parser_takes_tabs_and_trailing_blanks(tmp_path):
    path = tmp_path / 'annotation.txt'
    path.write_text('Abuse028_x264.mp4\tAbuse\t165\t240\t-1\t-1 \t\n'
                    'Stealing019_x264.mp4 \t Stealing  2730\t2790  4170  4350   \n'
                    '\n'
                    'Normal_Videos_003_x264.mp4  Normal  -1  -1  -1  -1\r\n')
    assert read_annotation(str(path)) == {'Abuse028_x264': [(165, 240)],
                                          'Stealing019_x264': [(2730, 2790), (4170, 4350)],
                                          'Normal_Videos_003_x264': []}


def test_frame_labels_are_inclusive_and_clipped():
    np.testing.assert_array_equal(frame_labels(8, [(2, 3), (6, 20)]), [0, 0, 1, 1, 0, 0, 1, 1])


def test_preformer_ground_truth_end_to_end(tmp_path):
    lengths = {'Abuse028_x264': 18, 'Stealing019_x264': 280, 'Normal_Videos_003_x264': 4}
    for split in ('Train', 'Test'):
        os.makedirs(tmp_path / 'features' / f'UCF-{split}')
        for name, T in lengths.items():
            np.save(tmp_path / 'features' / f'UCF-{split}' / f'{name}_i3d.npy', np.zeros((T, 1, 4), np.float32))
    run_script('preformer_feature.py', '--feature-size', 4, '--annotation', ANNOTATION, cwd=tmp_path)
    gt = np.load(tmp_path / 'list' / 'gt-ucf.npy')
    expected = np.concatenate([labels_by_hand(16 * 18, [(165, 240)]),
                               labels_by_hand(16 * 280, [(2730, 2790), (4170, 4350)]),
                               np.zeros(16 * 4)])
    np.testing.assert_array_equal(gt, expected)
