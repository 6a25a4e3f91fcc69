"""metrics.all_metrics against independent computations on a small scored set with known answers,
and test.py's JSON against the same computations on the protocol's scores."""
import json
import os
import re

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

import dataset
from conftest import FEATURE_SIZE
from metrics import all_metrics, frame_auc
from model import VideoClassifier, load_checkpoint
from protocol import snippet_scores

# A hand-made test set, in list order: its videos, per-snippet scores and anomalous frame spans (inclusive).
VIDEOS = [  # name, snippet scores, anomalous frames
    ('Arrest001_x264', [0.9, 0.6, 0.6], [(0, 47)]),            # all its frames anomalous
    ('Explosion002_x264', [0.2, 0.8, 0.5, 0.1], [(20, 40)]),   # a span across a snippet border
    ('Explosion005_x264', [0.7, 0.3], [(0, 15)]),
    ('Stealing010_x264', [0.4, 0.2], []),                      # annotated without an anomalous frame
    ('Normal_Videos_003_x264', [0.1, 0.5, 0.6], []),
    ('Normal_Videos_010_x264', [0.2, 0.3], []),
]


def scored_set(videos=VIDEOS):
    paths = [f'features/UCF-Test/{name}_i3d.npy' for name, _, _ in videos]
    scores = np.concatenate([s for _, s, _ in videos])
    lengths = np.array([len(s) for _, s, _ in videos])
    gt = []
    for _, s, spans in videos:
        labels = np.zeros(16 * len(s))
        for start, end in spans:
            labels[start:end + 1] = 1
        gt.append(labels)
    return scores, np.concatenate(gt), lengths, paths


def pair_auc(positives, negatives):
    """ROC AUC by its definition: P(positive > negative) + P(tie) / 2 over all pairs."""
    p, n = np.asarray(positives)[:, None], np.asarray(negatives)[None, :]
    return ((p > n).sum() + 0.5 * (p == n).sum()) / (p.size * n.size)


def step_ap(labels, scores):
    """Average precision by its definition: sum over thresholds of (recall step) x precision."""
    ap, recall = 0.0, 0.0
    for t in sorted(set(scores), reverse=True):
        above = scores >= t
        tp = (labels[above] == 1).sum()
        ap += (tp / labels.sum() - recall) * tp / above.sum()
        recall = tp / labels.sum()
    return ap


def frames_of(names, videos=VIDEOS):
    """(labels, scores) of the frames of the named videos, as explicit frame arrays."""
    _, gt, lengths, paths = scored_set(videos)
    labels = np.split(gt, 16 * np.cumsum(lengths)[:-1])
    chosen = [i for i, (name, _, _) in enumerate(videos) if name in names]
    return (np.concatenate([labels[i] for i in chosen]),
            np.concatenate([np.repeat(videos[i][1], 16) for i in chosen]))


def reference_metrics(snippet_scores, gt, lengths, names):
    """The metrics straight from their definitions, on explicit frame arrays, video by video."""
    bounds = np.cumsum(np.concatenate([[0], lengths]))
    videos = [(name, np.repeat(snippet_scores[a:b], 16), gt[16 * a:16 * b])
              for name, a, b in zip(names, bounds[:-1], bounds[1:])]

    def frame_auc_of(chosen):
        labels = np.concatenate([v[2] for v in chosen])
        return roc_auc_score(labels, np.concatenate([v[1] for v in chosen])) if 0 < labels.mean() < 1 else None

    normal = [v for v in videos if v[0].startswith('Normal')]
    anomalous = [v for v in videos if not v[0].startswith('Normal')]

    def cls(v):
        return re.match('[A-Za-z]+', v[0]).group(0)

    classes = sorted({cls(v) for v in anomalous})
    return {
        'auc': frame_auc_of(videos),
        'ap': average_precision_score(np.concatenate([v[2] for v in videos]), np.concatenate([v[1] for v in videos])),
        'auc_abnormal': frame_auc_of(anomalous),
        'far_normal': np.mean(np.concatenate([v[1] for v in normal]) >= 0.5),
        'video_auc': roc_auc_score([not v[0].startswith('Normal') for v in videos], [v[1].max() for v in videos]),
        'per_class': {c: frame_auc_of([v for v in anomalous if cls(v) == c] + normal) for c in classes},
    }


def assert_same_metrics(results, expected, tolerance):
    """results (all_metrics or the JSON) hold expected's values; per_class's None (undefined) exactly."""
    for key, value in expected.items():
        if key == 'per_class':
            assert list(results[key]) == list(value)
            for cls, auc in value.items():
                assert results[key][cls] == (None if auc is None else pytest.approx(auc, abs=tolerance)), cls
        else:
            assert results[key] == pytest.approx(value, abs=tolerance), key


def test_every_metric_equals_its_definition():
    results = all_metrics(*scored_set())
    names = [name for name, _, _ in VIDEOS]
    normal = names[4:]
    reference = reference_metrics(*scored_set()[:3], names)
    assert_same_metrics(results, reference, 1e-12)

    labels, scores = frames_of(names)
    assert results['auc'] == pytest.approx(pair_auc(scores[labels == 1], scores[labels == 0]), abs=1e-12)
    assert results['auc'] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert results['ap'] == pytest.approx(step_ap(labels, scores), abs=1e-12)
    assert results['ap'] == pytest.approx(average_precision_score(labels, scores), abs=1e-12)

    labels, scores = frames_of(names[:4])
    assert results['auc_abnormal'] == pytest.approx(pair_auc(scores[labels == 1], scores[labels == 0]), abs=1e-12)

    # normal snippets scored 0.1 0.5 0.6 0.2 0.3: two of five are >= 0.5 (0.5 itself counts)
    assert results['far_normal'] == 0.4

    # video maxima: anomalous 0.9 0.8 0.7 0.4 against normal 0.6 0.3: 7 of 8 pairs ranked right
    assert results['video_auc'] == 7 / 8

    assert list(results['per_class']) == ['Arrest', 'Explosion', 'Stealing']
    for cls, members in (('Arrest', names[:1]), ('Explosion', names[1:3])):
        labels, scores = frames_of(members + normal)
        assert results['per_class'][cls] == pytest.approx(pair_auc(scores[labels == 1], scores[labels == 0]),
                                                          abs=1e-12)
    # Arrest: all 48 frames anomalous (0.9, 0.6, 0.6) against normal 0.1 0.5 0.6 0.2 0.3 -> by hand
    assert results['per_class']['Arrest'] == pytest.approx((1 * 5 + 2 * (4 + 0.5)) / 15, abs=1e-12)
    # Stealing: no anomalous frame among its frames and the normal ones -> undefined
    assert results['per_class']['Stealing'] is None


def test_frame_auc_is_the_frame_level_auc():
    scores, gt, _, _ = scored_set()
    assert frame_auc(scores, gt) == pytest.approx(roc_auc_score(gt, np.repeat(scores, 16)), abs=1e-12)


def test_undefined_metrics_are_none():
    # anomalous videos only, all of their frames anomalous: no negatives anywhere
    videos = [('Arrest001_x264', [0.9, 0.2], [(0, 31)]), ('Arson003_x264', [0.4], [(0, 15)])]
    results = all_metrics(*scored_set(videos))
    assert results['ap'] == pytest.approx(1.0, abs=1e-12)
    for key in ('auc', 'auc_abnormal', 'far_normal', 'video_auc'):
        assert results[key] is None
    assert results['per_class'] == {'Arrest': None, 'Arson': None}

    # normal videos only: no positives
    videos = [('Normal_Videos_001_x264', [0.7, 0.2], []), ('Normal_Videos_002_x264', [0.5], [])]
    results = all_metrics(*scored_set(videos))
    for key in ('auc', 'ap', 'auc_abnormal', 'video_auc'):
        assert results[key] is None
    assert results['far_normal'] == 2 / 3
    assert results['per_class'] == {}


def test_json_holds_the_metrics_of_the_protocol_scores(scored_test_run, monkeypatch):
    root, result = scored_test_run
    results = json.load(open(root / 'results' / 'model.json'))
    assert list(results) == ['auc', 'ap', 'auc_abnormal', 'far_normal', 'video_auc', 'per_class',
                             'test_split_size', 'videos', 'frames', 'checkpoint']
    assert (results['test_split_size'], results['videos'], results['frames'], results['checkpoint']) == \
        (32, 6, 16 * 300, 'model.pth')

    # the protocol's scores, computed here in-process, and every metric from its definition
    monkeypatch.chdir(root)
    test_set = dataset.TestSet('list/ucf-i3d-test.list', 'list/gt-ucf.npy', FEATURE_SIZE)
    model = load_checkpoint('model.pth', VideoClassifier(FEATURE_SIZE, 8, 2))
    scores = snippet_scores(model, test_set, 32)
    names = [os.path.basename(p)[:-len('_i3d.npy')] for p in test_set.paths]
    expected = reference_metrics(scores, test_set.gt, test_set.lengths, names)
    assert set(results['per_class']) == set(expected['per_class']) and len(expected['per_class']) == 3
    assert_same_metrics(results, expected, 1e-9)
    assert f'model : SelfAttention-da8-r2 , auc_score : {results["auc"]}\n' in result.stdout
