"""Metrics of the paper's protocol, all from the same per-snippet scores: every snippet's 16 frames share its score.

    auc           frame-level ROC AUC over all test frames (the paper's number)
    ap            frame-level average precision over all test frames
    auc_abnormal  frame-level ROC AUC over the frames of the anomalous test videos only
    far_normal    share of the frames of the normal test videos scored >= 0.5 (false-alarm rate)
    video_auc     ROC AUC of each test video's highest frame score against its label (anomalous: 1)
    per_class     {class: frame-level ROC AUC over that class's test videos and all normal test videos}
                  (a video of several classes, as XD-Violence's G-B2-B6, counts in each; {} for ShanghaiTech)

A metric that is undefined on the given set (an AUC without positive or without negative frames, AP
without positives, far_normal without normal videos) is None, null in JSON.
"""
import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from benchmarks import UCF
from dataset import FRAMES_PER_SNIPPET

THRESHOLD = 0.5


def weighted_frames(snippet_scores, gt):
    """The frames as (labels, scores, weights) on snippets, 16x fewer items than frames.

    Each snippet enters once as a positive weighted by its anomalous frames and once as a negative
    weighted by its normal ones: any weighted ranking metric then equals its value on
    (gt, np.repeat(snippet_scores, 16)).
    """
    anomalous = gt.reshape(-1, FRAMES_PER_SNIPPET).sum(1)
    labels = np.repeat([1, 0], len(snippet_scores))
    weights = np.concatenate([anomalous, FRAMES_PER_SNIPPET - anomalous])
    return labels, np.tile(snippet_scores, 2), weights


def frame_auc(snippet_scores, gt):
    """ROC AUC over all frames: roc_auc_score(gt, np.repeat(snippet_scores, 16))."""
    labels, scores, weights = weighted_frames(snippet_scores, gt)
    return roc_auc_score(labels, scores, sample_weight=weights)


def frame_metric(metric, snippet_scores, gt):
    """metric (roc_auc_score or average_precision_score) over the frames, or None where undefined."""
    labels, scores, weights = weighted_frames(snippet_scores, gt)
    positives = gt.sum()
    if positives == 0 or (metric is roc_auc_score and positives == gt.size):
        return None
    return float(metric(labels, scores, sample_weight=weights))


def frame_ap(snippet_scores, gt):
    """Average precision over all frames: average_precision_score(gt, np.repeat(snippet_scores, 16))."""
    labels, scores, weights = weighted_frames(snippet_scores, gt)
    return average_precision_score(labels, scores, sample_weight=weights)


def video_auc(video_scores, paths, is_normal=UCF.is_normal):
    """ROC AUC of one score per video against its label (anomalous 1, normal 0), or None where undefined."""
    labels = [not is_normal(p) for p in paths]
    return float(roc_auc_score(labels, video_scores)) if 0 < sum(labels) < len(labels) else None


def all_metrics(snippet_scores, gt, lengths, paths, benchmark=UCF):
    """Every metric of the module docstring from the per-snippet scores of the test videos (in list order),
    their frame labels, the videos' lengths in snippets and their paths (named as the benchmark's)."""
    of_snippet = np.repeat(np.arange(len(paths)), lengths)  # the video of each snippet
    of_frame = np.repeat(of_snippet, FRAMES_PER_SNIPPET)
    normal = np.array([benchmark.is_normal(p) for p in paths])
    classes = [benchmark.classes(p) for p in paths]

    def auc_on(videos):
        """Frame-level AUC on the videos where the boolean mask videos holds."""
        return frame_metric(roc_auc_score, snippet_scores[videos[of_snippet]], gt[videos[of_frame]])

    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    normal_scores = snippet_scores[normal[of_snippet]]  # each snippet stands for 16 frames alike
    return {
        'auc': frame_metric(roc_auc_score, snippet_scores, gt),  # = frame_auc where defined
        'ap': frame_metric(average_precision_score, snippet_scores, gt),
        'auc_abnormal': auc_on(~normal),
        'far_normal': float(np.mean(normal_scores >= THRESHOLD)) if len(normal_scores) else None,
        'video_auc': video_auc(np.maximum.reduceat(snippet_scores, starts), paths, benchmark.is_normal),
        'per_class': {c: auc_on(np.array([c in of for of in classes]) | normal)
                      for c in dict.fromkeys(c for of in classes for c in of)},
    }
