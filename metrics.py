"""Frame-level metrics of the paper's protocol: every snippet's 16 frames share the snippet's score."""
import numpy as np
from sklearn.metrics import roc_auc_score

from dataset import FRAMES_PER_SNIPPET


def frame_auc(snippet_scores, gt):
    """ROC AUC over all frames: roc_auc_score(gt, np.repeat(snippet_scores, 16)).

    Computed on snippets: each enters once as a positive weighted by its anomalous frames and
    once as a negative weighted by its normal ones, which ranks 16x fewer items to the same value.
    """
    anomalous = gt.reshape(-1, FRAMES_PER_SNIPPET).sum(1)
    labels = np.repeat([1, 0], len(snippet_scores))
    weights = np.concatenate([anomalous, FRAMES_PER_SNIPPET - anomalous])
    return roc_auc_score(labels, np.tile(snippet_scores, 2), sample_weight=weights)
