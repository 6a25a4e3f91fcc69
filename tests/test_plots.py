"""The figures: valid, non-blank PNGs from test.py --plot and train.py's history, and the attention they show."""
import importlib.util
import os

import numpy as np
import pytest
import torch

from conftest import FEATURE_SIZE, REPO, assert_png
from dataset import DataError
from model import VideoClassifier
from plots import plot_history, video_attention


def test_test_script_plots_roc_and_default_videos(scored_test_run):
    root, result = scored_test_run
    figures = sorted(f for f in os.listdir(root / 'results') if f.endswith('.png'))
    # by default the first 3 anomalous and the first 2 normal test videos, in list order
    names = [os.path.basename(line.strip())[:-len('_i3d.npy')] for line in open(root / 'list' / 'ucf-i3d-test.list')]
    assert figures == sorted(['model-roc.png'] + [f'model-{n}.png' for n in names[:3] + names[3:5]])
    for figure in figures:
        assert_png(root / 'results' / figure)
    assert result.stdout.count('scores and attention in results/model-') == 5
    assert 'ROC curve in results/model-roc.png' in result.stdout


def load_test_script():
    """test.py as a module (the name `test` is the standard library's)."""
    spec = importlib.util.spec_from_file_location('test_script', os.path.join(REPO, 'test.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_plot_videos_by_name():
    chosen_videos = load_test_script().chosen_videos
    paths = ['f/Abuse028_x264_i3d.npy', 'f/Arrest001_x264_i3d.npy', 'f/Normal_Videos_003_x264_i3d.npy']
    assert chosen_videos(paths, ['Normal_Videos_003_x264', 'Abuse028_x264.mp4']) == [2, 0]
    assert chosen_videos(paths, None, n_anomalous=1, n_normal=1) == [0, 2]
    with pytest.raises(DataError, match='Ghost001_x264 not among the test videos'):
        chosen_videos(paths, ['Ghost001_x264'])


def test_attention_follows_the_protocol_chunks():
    torch.manual_seed(0)
    model = VideoClassifier(FEATURE_SIZE, 8, 3).eval()
    features = torch.rand(23, 2, FEATURE_SIZE)  # 23 snippets, 2 crops: chunks of 10, 10 and 3
    attention = video_attention(model, features, 10)
    assert attention.shape == (23, 3)
    for start, end in ((0, 10), (10, 20), (20, 23)):
        np.testing.assert_allclose(attention[start:end].sum(0), 1, rtol=1e-5)  # each chunk's hops sum to 1
        per_crop = [torch.softmax(model.self_anttention(features[start:end, c]), 0) for c in range(2)]
        np.testing.assert_allclose(attention[start:end], ((per_crop[0] + per_crop[1]) / 2).detach(), rtol=1e-5)


def test_history_plot(tmp_path):
    header = ['iteration', 'epoch', 'loss', 'auc', 'val_auc']
    rows = [[0, '', '', 0.5, 0.4]] + [[i, 1, 0.7 - 0.01 * i, 0.5 + 0.01 * i if i % 2 else '', 0.6 if i % 2 else '']
                                      for i in range(1, 12)]
    plot_history(header, rows, str(tmp_path / 'h.png'), 'title')
    assert_png(tmp_path / 'h.png')
    assert os.listdir(tmp_path) == ['h.png']  # written atomically: no temporary file left
