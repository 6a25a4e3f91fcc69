"""Figures, written as PNG files without a display: the training history, the ROC curve, and where a model fires."""
import io

import numpy as np
import torch
from matplotlib.figure import Figure  # no pyplot: no display, no global state (PNGs are drawn by Agg)
from sklearn.metrics import roc_curve

from dataset import FRAMES_PER_SNIPPET, write_atomic
from metrics import THRESHOLD, weighted_frames


def save_png(fig, path):
    png = io.BytesIO()
    fig.savefig(png, format='png', dpi=110, bbox_inches='tight')
    write_atomic(path, lambda f: f.write(png.getvalue()))


def plot_history(header, rows, path, title):
    """train.py's history (its CSV's header and rows; '' where not evaluated): AUCs above, each best
    one marked (the first of equals), loss below."""
    columns = {name: [row[i] for row in rows] for i, name in enumerate(header)}
    fig = Figure(figsize=(8, 5.5))
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    for name, label in (('auc', 'test AUC (frames)'), ('val_auc', 'validation AUC (videos)')):
        if name in columns:
            points = [(i, v) for i, v in zip(columns['iteration'], columns[name]) if v != '']
            line, = top.plot(*zip(*points), label=label, lw=1)
            top.plot(*max(points, key=lambda p: p[1]), 'o', color=line.get_color(), ms=4)  # the best
    top.set_ylabel('AUC')
    top.legend(loc='lower right')
    top.grid(alpha=0.3)
    top.set_title(title)
    trained = [(i, v) for i, v in zip(columns['iteration'], columns['loss']) if v != '']
    if trained:
        bottom.plot(*zip(*trained), color='tab:gray', lw=0.8)
    bottom.set_xlabel('iteration')
    bottom.set_ylabel('BCE loss')
    bottom.grid(alpha=0.3)
    save_png(fig, path)


def plot_roc(snippet_scores, gt, auc, path, title):
    labels, scores, weights = weighted_frames(snippet_scores, gt)
    fpr, tpr, _ = roc_curve(labels, scores, sample_weight=weights)
    fig = Figure(figsize=(4.5, 4.5))
    ax = fig.subplots()
    ax.plot(fpr, tpr, label=f'frame-level AUC {auc:.4f}')
    ax.plot([0, 1], [0, 1], ls=':', color='gray')
    ax.set(xlabel='false positive rate (frames)', ylabel='true positive rate (frames)', title=title,
           xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc='lower right')
    save_png(fig, path)


@torch.no_grad()
def video_attention(model, features, split_size):
    """The attention weights of one video's snippets [T, crops, F] -> numpy [T, r].

    As in the test protocol the video is cut into chunks of split_size snippets and each crop of a
    chunk is one input; a snippet's weight is the mean over crops (each chunk's weights sum to 1 per hop).
    """
    chunks = [model.attention(chunk.transpose(0, 1)).mean(0) for chunk in features.split(split_size)]
    return torch.cat(chunks).cpu().numpy()


def plot_scores(title, frame_scores, shaded, attention, split_size, path, threshold=THRESHOLD, fps=None):
    """One video: its score over frames (over seconds, given fps) with the spans of frames in shaded shaded and
    the threshold dotted, and below it the r attention weights of its snippets (the salient snippets the model
    looks at), the test protocol's chunk borders dotted."""
    unit = 1 / fps if fps else 1  # the x axis's unit in frames
    fig = Figure(figsize=(9, 5))
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    for start, end in shaded:
        for ax in (top, bottom):
            ax.axvspan(start * unit, end * unit, color='tab:red', alpha=0.15, lw=0)
    top.plot(np.arange(len(frame_scores)) * unit, frame_scores, color='tab:blue', lw=1.2, label='anomaly score')
    top.axhline(threshold, color='gray', ls=':', lw=0.8, label=f'threshold {threshold:g}')
    top.set(ylim=(-0.02, 1.02), ylabel='score', title=title)
    top.legend(loc='upper right')
    snippet_frames = FRAMES_PER_SNIPPET * np.arange(len(attention)) + FRAMES_PER_SNIPPET / 2
    for j in range(attention.shape[1]):
        bottom.plot(snippet_frames * unit, attention[:, j], lw=1, label=f'hop {j + 1}')
    for border in range(split_size, len(attention), split_size):
        bottom.axvline(FRAMES_PER_SNIPPET * border * unit, color='gray', ls=':', lw=0.6)
    bottom.set(xlabel='time (s)' if fps else 'frame', ylabel='attention', xlim=(0, len(frame_scores) * unit))
    bottom.legend(loc='upper right', ncol=attention.shape[1], fontsize='small')
    save_png(fig, path)
