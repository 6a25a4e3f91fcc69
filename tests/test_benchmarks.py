"""ShanghaiTech and XD-Violence beside UCF-Crime: list order, normal rule, frame ground truth (from the real
official files in list/official), per-crop files, AP, and a short run that learns."""
import json
import os
import random
import shutil

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

import synthetic
from benchmarks import BENCHMARKS, SHANGHAI, UCF, XD
from conftest import OFFICIAL, run_script
import dataset
from dataset import DataError, Pool, open_features
from metrics import frame_ap
from preformer_feature import compare_with_official

FOLDERS = {'ucf': 'ucf_crime', 'shanghai': 'shanghaitech', 'xd': 'xd_violence'}
COUNTS = {  # (anomalous, normal) videos of the official lists: train, test
    'ucf': ((810, 800), (140, 150)), 'shanghai': ((63, 175), (44, 155)), 'xd': ((1905, 2049), (500, 300))}
MASKS = os.path.join(OFFICIAL, 'shanghaitech', 'test_frame_mask')
XD_ANNOTATION = os.path.join(OFFICIAL, 'xd_violence', 'annotations.txt')


def official(key, split):
    return [line.strip() for line in open(os.path.join(OFFICIAL, FOLDERS[key], f'{split}_videos.txt')) if line.strip()]


def touch_features(folder, names, benchmark):
    """Empty files named as the benchmark's features (scanning reads only the names)."""
    os.makedirs(folder, exist_ok=True)
    for name in names:
        for crop in range(benchmark.crops if benchmark is XD else 1):
            open(os.path.join(folder, name + (f'__{crop}.npy' if benchmark is XD else '_i3d.npy')), 'w').close()


# ---------------------------------------------------------------------------------------------- lists
@pytest.mark.parametrize('split', ['train', 'test'])
@pytest.mark.parametrize('key', list(BENCHMARKS))
def test_scan_gives_the_official_list_order(tmp_path, key, split):
    benchmark, names = BENCHMARKS[key], official(key, split)
    shuffled = names[:]
    random.Random(1).shuffle(shuffled)
    touch_features(tmp_path, shuffled, benchmark)
    open(tmp_path / 'notes.npy', 'w').close()
    found = benchmark.scan(str(tmp_path))
    assert [os.path.basename(p)[:-len(benchmark.suffix)] for p in found] == names
    # the rule: anomalous first, then normal, each in Python's string order (not the C locale's `sort`)
    normal = [benchmark.is_normal(p) for p in found]
    assert names == sorted(names, key=lambda n: (benchmark.is_normal(n + benchmark.suffix), n))
    assert (normal.count(False), normal.count(True)) == COUNTS[key][split == 'test']
    assert normal == sorted(normal)


def test_normal_rules():
    assert SHANGHAI.is_normal('features/SH-Test/01_001_i3d.npy') and not SHANGHAI.is_normal('x/01_0014_i3d.npy')
    assert XD.is_normal('x/A.Beautiful.Mind.2001__#00-25-20_00-29-20_label_A__0.npy')
    assert not XD.is_normal('x/Bad.Boys.1995__#01-11-55_01-12-40_label_G-B2-B6__0.npy')
    assert XD.classes('x/Bad.Boys.1995__#01-11-55_01-12-40_label_G-B2-B6__0.npy') == ('G', 'B2', 'B6')
    assert XD.classes('x/v=S-7rRLrxnVQ__#1_label_B4-0-0__0.npy') == ('B4',)
    assert XD.classes('x/Up.2009__#00-00-00_00-01-00_label_A__0.npy') == ()
    assert SHANGHAI.classes('x/01_0014_i3d.npy') == () and UCF.classes('x/Abuse028_x264_i3d.npy') == ('Abuse',)
    assert [UCF.stratum('x/Abuse028_x264_i3d.npy'), UCF.stratum('x/Normal_Videos_003_x264_i3d.npy')] == \
        ['Abuse', 'Normal']


def test_file_names_carry_the_benchmark():
    assert (UCF.test_list, UCF.train_list(32), UCF.gt, UCF.pooled_dir, UCF.tag) == \
        ('list/ucf-i3d-test.list', 'list/pre-ucf-i3d-train-32.list', 'list/gt-ucf.npy', 'preformer_features', '')
    assert (XD.test_list, XD.train_list(32), XD.gt, XD.pooled_dir, XD.tag) == \
        ('list/xd-i3d-test.list', 'list/pre-xd-i3d-train-32.list', 'list/gt-xd.npy', 'preformer_features-xd', '-xd')
    assert (SHANGHAI.gt, SHANGHAI.tag) == ('list/gt-shanghai.npy', '-shanghai')


# ---------------------------------------------------------------------------------------------- ground truth
def sh_by_hand(mask, n_frames):
    return np.array([mask[f] if f < len(mask) else mask[-1] for f in range(n_frames)], float)


def test_shanghai_ground_truth_from_the_real_masks(tmp_path):
    masks = SHANGHAI.read_annotation(MASKS)
    assert len(masks) == 107 and all(m.dtype == np.uint8 for m in masks.values())
    exact = tmp_path / 'masks'  # a real mask cut to 16*18 frames: a video whose features cover it exactly
    shutil.copytree(MASKS, exact)
    np.save(exact / '01_0025.npy', masks['01_0025'][:16 * 18])
    masks = SHANGHAI.read_annotation(str(exact))
    videos = {  # name: snippets
        '01_0015': 28,    # 433 frames padded with its last label (0) to 448
        '01_0055': 20,    # 313 frames ending anomalous: padded with 1s to 320
        '01_0025': 18,    # exactly 288 frames
        '01_001': 5,      # normal: zeros
    }
    paths = [f'features/SH-Test/{name}_i3d.npy' for name in videos]
    gt = SHANGHAI.ground_truth(paths, list(videos.values()), masks)
    expected = np.concatenate([sh_by_hand(masks[n], 16 * T) if n in masks else np.zeros(16 * T)
                               for n, T in videos.items()])
    np.testing.assert_array_equal(gt, expected)
    assert gt.shape == (16 * 71,) and gt[448 + 313:448 + 320].tolist() == [1] * 7
    assert gt[:448].sum() == masks['01_0015'].sum()
    with pytest.raises(DataError, match=r'01_0055 \(19 snippets\): its frame mask has 313 frames, more than the 304'):
        SHANGHAI.ground_truth(['x/01_0055_i3d.npy'], [19], masks)
    with pytest.raises(DataError, match='no row for the anomalous test video 01_9999'):
        SHANGHAI.ground_truth(['x/01_9999_i3d.npy'], [3], masks)


def xd_by_hand(spans, n_frames):
    return np.array([1.0 if any(s <= f < e for s, e in spans) else 0.0 for f in range(n_frames)])


def test_xd_ground_truth_from_the_real_annotation():
    annotation = XD.read_annotation(XD_ANNOTATION)
    assert len(annotation) == 500
    one = 'v=u5SF4SlqNDQ__#00-02-39_00-03-41_label_G-0-0'          # 77 1430
    many = 'v=wVey5JDRf_g__#00-00-00_00-01-20_label_B6-0-0'       # 8 spans
    past = 'v=S-7rRLrxnVQ__#1_label_B4-0-0'                        # 0 1517 1970 3038, cut at 16*150 = 2400
    normal = 'A.Beautiful.Mind.2001__#00-25-20_00-29-20_label_A'
    assert annotation[one] == [(77, 1430)] and len(annotation[many]) == 8
    assert annotation[past] == [(0, 1517), (1970, 3038)]
    videos = {one: 100, many: 130, past: 150, normal: 6}
    gt = XD.ground_truth([f'f/{n}__0.npy' for n in videos], list(videos.values()), annotation)
    expected = np.concatenate([xd_by_hand(annotation.get(n, []), 16 * T) for n, T in videos.items()])
    np.testing.assert_array_equal(gt, expected)
    assert gt[76:78].tolist() == [0, 1] and gt[1429:1431].tolist() == [1, 0]  # s included, e excluded
    assert gt[:1600].sum() == 1430 - 77 and gt[1600 + 2080 + 1970:1600 + 2080 + 2400].sum() == 430
    with pytest.raises(DataError, match='no row for the anomalous test video Heat.1995'):
        XD.ground_truth(['f/Heat.1995__#00-00-01_00-00-09_label_B1-0-0__0.npy'], [3], annotation)


def test_xd_annotation_rows_must_pair(tmp_path):
    path = tmp_path / 'annotations.txt'
    path.write_text('a_label_B1-0-0 3 9\nb_label_G-0-0 1 2 5\n')
    with pytest.raises(DataError, match=r'annotations.txt, line 2: expected `name s1 e1 s2 e2 \.\.\.`'):
        XD.read_annotation(str(path))


# ---------------------------------------------------------------------------------------------- files
def write_crops(stem, crops):
    for i, x in enumerate(crops):
        np.save(f'{stem}__{i}.npy', x)


def test_xd_crop_files_are_one_video(tmp_path):
    rng = np.random.default_rng(0)
    crops = [rng.random((7, 6), dtype=np.float32) for _ in range(5)]
    write_crops(tmp_path / 'v_label_B1-0-0', crops)
    x = open_features(str(tmp_path / 'v_label_B1-0-0__0.npy'), 6)
    assert x.dtype == np.float32 and x.shape == (7, 5, 6)
    for i in range(5):
        np.testing.assert_array_equal(x[:, i], crops[i])
    pool = Pool([str(tmp_path / 'v_label_B1-0-0__0.npy')] * 2, 6, 'test')
    np.testing.assert_array_equal(pool[np.arange(14)], np.concatenate([x, x]))


@pytest.mark.parametrize('case', ['gap', 'shorter', 'not 2-D', 'integers'])
def test_xd_crop_file_errors_name_the_file(tmp_path, case):
    stem = str(tmp_path / 'v_label_A')
    crops = [np.ones((7, 6), np.float32) for _ in range(5)]
    bad = {'shorter': np.ones((6, 6), np.float32), 'not 2-D': np.ones((7, 1, 6), np.float32),
           'integers': np.ones((7, 6), np.int64)}.get(case)
    if bad is not None:
        crops[3] = bad
    write_crops(stem, crops)
    if case == 'gap':
        os.remove(f'{stem}__2.npy')
    message = {'gap': r'v_label_A__2.npy: no such file, but the video has crop files after it',
               'shorter': r'v_label_A__3.npy: 6 snippets, but .*v_label_A__0.npy has 7',
               'not 2-D': r'v_label_A__3.npy: expected float32 features \[T>0, 6\]',
               'integers': r'v_label_A__3.npy: expected float32 .* found int64 \[7, 6\]'}[case]
    with pytest.raises(DataError, match=message):
        open_features(stem + '__0.npy', 6)


def test_a_missing_last_crop_file_is_named_when_scanning(tmp_path):
    write_crops(tmp_path / 'v_label_A', [np.ones((7, 6), np.float32)] * 4)
    with pytest.raises(DataError, match=r'v_label_A__4.npy: no such file \(XD-Violence has 5 crop files per video'):
        XD.scan(str(tmp_path))


@pytest.mark.parametrize('dtype', [np.float16, np.float64])
def test_other_float_types_are_read_as_float32(tmp_path, dtype):
    x = np.random.default_rng(1).random((9, 2, 4)).astype(dtype)
    np.save(tmp_path / 'v_i3d.npy', x)
    read = open_features(str(tmp_path / 'v_i3d.npy'), 4)
    assert read.dtype == np.float32
    np.testing.assert_array_equal(read, np.array(x, dtype=np.float32))  # the original's conversion
    write_crops(tmp_path / 'w', [x[:, 0], x[:, 1]])
    np.testing.assert_array_equal(open_features(str(tmp_path / 'w__0.npy'), 4), np.array(x, dtype=np.float32))
    (tmp_path / 'test.list').write_text(f'{tmp_path}/v_i3d.npy\n{tmp_path}/w__0.npy\n')
    test_set = dataset.TestSet(str(tmp_path / 'test.list'), None, 4)
    np.testing.assert_array_equal(torch.cat(test_set.videos).numpy(), np.concatenate([np.array(x, dtype=np.float32)] * 2))


# ---------------------------------------------------------------------------------------------- AP
def test_frame_ap_is_sklearns_on_the_frames():
    rng = np.random.default_rng(4)
    for _ in range(20):
        n = int(rng.integers(2, 60))
        scores = rng.integers(0, 6, n).astype(np.float32) / 5  # many ties
        gt = np.zeros(16 * n)
        for _ in range(int(rng.integers(1, 4))):
            start = int(rng.integers(0, 16 * n))
            gt[start:start + int(rng.integers(1, 80))] = 1
        expected = average_precision_score(gt, np.repeat(scores, 16))
        assert frame_ap(scores, gt) == pytest.approx(expected, rel=1e-12, abs=0)


# ---------------------------------------------------------------------------------------------- end to end
SIZES = dict(n_train_abnormal=24, n_train_normal=24, n_test_abnormal=6, n_test_normal=6,
             train_snippets=48 * 40, test_snippets=12 * 60)
F = ['--feature-size', 32]


@pytest.mark.parametrize('key, annotation', [('shanghai', 'test_frame_mask'), ('xd', 'annotations.txt')])
def test_training_learns_on_each_benchmarks_synthetic_data(tmp_path, key, annotation):
    benchmark = BENCHMARKS[key]
    crops = 5 if key == 'xd' else 2  # XD-Violence's five crop files; fewer crops of the others' are quicker
    synthetic.generate(str(tmp_path), seed=2, snr=3, crops=crops, feature_size=32, dataset=key, progress=False,
                       **SIZES)
    run_script('preformer_feature.py', '--dataset', key, *F, '--annotation', annotation, cwd=tmp_path)
    run_script('train.py', '--dataset', key, *F, '--batch-size', 8, '--max-iters', 20, '--lr', 0.01,
               '--device', 'cpu', cwd=tmp_path)
    name = f'SelfAttention-{key}-da64-r3-T32-seed1111'
    history = np.genfromtxt(tmp_path / 'ckpt' / f'{name}.csv', delimiter=',', names=True)
    assert history.dtype.names == ('iteration', 'epoch', 'loss', benchmark.metric)
    printed = run_script('test.py', '--dataset', key, *F, '--device', 'cpu', cwd=tmp_path).stdout
    assert f'model : SelfAttention-da64-r3 , {benchmark.metric}_score : ' in printed
    score = float(printed.split(f'{benchmark.metric}_score : ')[1].split()[0])
    results = json.load(open(tmp_path / 'results' / f'{name}.json'))
    assert score == history[benchmark.metric].max() == results[benchmark.metric]
    assert score > history[benchmark.metric][0] + 0.15
    assert {'auc', 'ap', 'video_auc', 'per_class'} <= set(results)
    assert (results['per_class'] == {}) == (key == 'shanghai')
    assert not os.path.exists(tmp_path / 'list' / 'gt-ucf.npy')


def test_a_failed_preparation_leaves_the_previous_outputs(tmp_path):
    synthetic.generate(str(tmp_path), seed=2, crops=5, feature_size=8, dataset='xd', progress=False, **SIZES)
    run_script('preformer_feature.py', '--dataset', 'xd', '--feature-size', 8, '--annotation', 'annotations.txt',
               cwd=tmp_path)
    before = {p: p.read_bytes() for p in (tmp_path / 'list').iterdir()}
    before.update({p: p.read_bytes() for p in (tmp_path / 'preformer_features-xd').iterdir()})
    last_train = open(tmp_path / 'list' / 'pre-xd-i3d-train-32.list').read().split()[-1]
    crop = tmp_path / 'features' / 'XD-Train' / (os.path.basename(last_train)[:-len('_i3d.npy')] + '__2.npy')
    x = np.load(crop)
    x[0, 0] = np.nan
    np.save(crop, x)
    for f in (tmp_path / 'features' / 'XD-Test').iterdir():  # and the test set changes: a new list would differ
        if '_label_A' in f.name:
            os.remove(f)
    result = run_script('preformer_feature.py', '--dataset', 'xd', '--feature-size', 8, '--annotation',
                        'annotations.txt', cwd=tmp_path, check=False)
    video = crop.name[:-len('__2.npy')] + '__0.npy'  # the video's list entry
    assert result.returncode == 1 and result.stderr.strip().endswith(f'{video}: the features hold NaN or Inf values')
    after = {p: p.read_bytes() for p in (tmp_path / 'list').iterdir()}
    after.update({p: p.read_bytes() for p in (tmp_path / 'preformer_features-xd').iterdir()})
    assert after == before
    assert [p.name for p in tmp_path.iterdir() if '.tmp' in p.name] == []  # no staging left behind


# ---------------------------------------------------------------------------------------------- official videos
def test_a_folder_is_compared_with_the_official_videos_when_it_holds_more_than_half(tmp_path):
    official = [f'v{i:02d}' for i in range(30)]
    folder = str(tmp_path)

    def compare(names):
        return compare_with_official(official, folder, 'test', [os.path.join(folder, n + '_i3d.npy') for n in names])

    assert compare(official[:15] + ['mine']) == ('', '')  # half of them: a folder of one's own videos
    assert compare(official[::-1]) == (', the official list', '')
    assert compare(official[:18] + ['mine', 'v99']) == (
        ', not the official 30: 12 missing, 2 not official',
        f'{folder} holds 18 of the 30 official test videos; missing: {", ".join(official[18:28])} and 2 more; '
        'not official: mine, v99')
    assert compare(official[1:]) == (', not the official 30: 1 missing, 0 not official',
                                     f'{folder} holds 29 of the 30 official test videos; missing: v00')


def test_a_set_synthetic_py_wrote_is_not_compared(tmp_path):
    synthetic.generate(str(tmp_path), crops=1, feature_size=4, progress=False, n_train_abnormal=4, n_train_normal=4,
                       n_test_abnormal=2, n_test_normal=2, train_snippets=40, test_snippets=20)
    folder = str(tmp_path / 'features' / 'UCF-Test')
    paths = UCF.scan(folder)
    official = [dataset.video_name(p) for p in paths][1:] + ['Other001_x264']  # most names official, not all
    assert compare_with_official(official, folder, 'test', paths) == ('', '')
    np.save(paths[0], np.ones((3, 1, 4), np.float32))  # a download replaced one of its files: the folder is compared
    assert compare_with_official(official, folder, 'test', paths)[0] == \
        ', not the official 4: 1 missing, 1 not official'


def test_a_download_missing_official_videos_is_named_before_anything_is_written(tmp_path):
    train, test = official('shanghai', 'train'), official('shanghai', 'test')
    missing = {'Train': train[5:7], 'Test': [test[0], test[100], test[150]]}
    held = {'Train': [n for n in train if n not in missing['Train']],
            'Test': [n for n in test if n not in missing['Test']] + ['99_0999']}
    for split, names in held.items():
        os.makedirs(tmp_path / 'features' / f'SH-{split}')
        for name in names:
            np.save(tmp_path / 'features' / f'SH-{split}' / f'{name}_i3d.npy', np.ones((2, 1, 4), np.float32))
    flags = ['--dataset', 'shanghai', '--feature-size', 4]
    differences = [f'features/SH-Train holds 236 of the 238 official train videos; missing: '
                   f'{", ".join(missing["Train"])}',
                   f'features/SH-Test holds 196 of the 199 official test videos; missing: '
                   f'{", ".join(missing["Test"])}; not official: 99_0999']
    refused = run_script('preformer_feature.py', *flags, cwd=tmp_path, check=False)
    assert refused.returncode == 1 and refused.stderr == (
        f'preformer_feature.py: error: {"; ".join(differences)}. The lists would not be ShanghaiTech\'s official '
        'ones, nor the scores its own: complete the download, or pass --allow-missing to write them anyway\n')
    assert os.listdir(tmp_path) == ['features']  # nothing written

    allowed = run_script('preformer_feature.py', *flags, '--allow-missing', cwd=tmp_path)
    assert [line for line in allowed.stderr.splitlines() if 'warning' in line] == \
        [f'preformer_feature.py: warning: {line}' for line in differences]
    assert open(tmp_path / 'list' / 'shanghai-i3d-test.list').read().splitlines() == [
        f'features/SH-Test/{n}_i3d.npy' for n in dataset.official_order(held['Test'], SHANGHAI.is_normal)]
    assert ('list/shanghai-i3d-test.list: 197 ShanghaiTech test videos, not the official 199: 3 missing, '
            '1 not official') in allowed.stdout.splitlines()
    assert ('list/pre-shanghai-i3d-train-32.list: 236 pooled train videos in preformer_features-shanghai, not the '
            'official 238: 2 missing, 0 not official') in allowed.stdout.splitlines()
