"""backend.py's OpenVINO I3D against PyTorch's, its cache, the --backend flag and export.py.

The weights are random in the real key layout (test_detect's fixture, which the video tests convert with the
default backend too: one conversion per session, in the session's cache); the videos are encoded here, with
libx264 (test_detect's) and MPEG-4 (test_extract's). Equal means within 1e-5 of the largest feature or score.
"""
import json
import os

import numpy as np
import onnx
import openvino
import pytest
import torch

import backend
import detect
import export
import extract_features
import live
import video
from backend import COMPILE_CONFIG, OpenVINONetwork, cached_model, load_network
from dataset import DataError
from i3d import load_i3d
from model import save_checkpoint
from protocol import video_scores
from test_detect import encode_video, i3d_weights, read_csv, save_model  # noqa: F401 (i3d_weights: a fixture)
from test_extract import write_video
from video import extract_video, network_input

CPU = torch.device('cpu')


def assert_equal_features(actual, expected):
    assert actual.shape == expected.shape and actual.dtype == np.float32
    assert np.abs(actual - expected).max() <= 1e-5 * np.abs(expected).max()


@pytest.fixture(scope='module')
def torch_network(i3d_weights):  # noqa: F811
    return load_i3d(str(i3d_weights), CPU)


@pytest.fixture(scope='module')
def openvino_network(i3d_weights):  # noqa: F811
    return load_network(str(i3d_weights), CPU, 'openvino')


@pytest.fixture(scope='module')
def h264_video(tmp_path_factory):
    """libx264, yuv444p, 65 x 49: 3 snippets and 8 frames more."""
    return str(encode_video(tmp_path_factory.mktemp('h264') / 'Clip.mp4', 56))


@pytest.fixture(scope='module')
def one_crop_features(h264_video, torch_network):
    """PyTorch's features of h264_video, 1 crop, one batch."""
    return extract_video(h264_video, torch_network, crops=1, batch_size=3, progress=False)


def test_auto_is_openvino_on_the_cpu_and_pytorch_on_cuda(monkeypatch, i3d_weights):  # noqa: F811
    assert isinstance(load_network(str(i3d_weights), CPU), OpenVINONetwork)
    monkeypatch.setattr(backend, 'load_i3d', lambda path, device: ('the PyTorch network', path, device))
    assert load_network('w.pth', torch.device('cuda')) == ('the PyTorch network', 'w.pth', torch.device('cuda'))


def test_a_live_source_takes_one_snippet_at_a_time_on_openvino_and_extraction_batches_on_pytorch(
        torch_network, openvino_network):
    assert [video.live_batch_size(openvino_network, crops) for crops in (1, 10)] == [1, 1]
    assert [video.live_batch_size(torch_network, crops) for crops in (1, 10)] == [20, 2]


def test_one_crop_features_equal_pytorchs_at_every_batch_size(h264_video, one_crop_features, openvino_network):
    """Batches of 1 and of 2 snippets (a full batch, then a shorter one): one dynamic-batch model for all."""
    expected, n_frames, fps = one_crop_features
    assert expected.shape == (3, 1, 2048) and n_frames == 56
    for batch_size in (1, 2):
        features, *rest = extract_video(h264_video, openvino_network, crops=1, batch_size=batch_size, progress=False)
        assert_equal_features(features, expected)
        assert rest == [n_frames, fps]


def test_ten_crop_features_equal_pytorchs(tmp_path, torch_network, openvino_network):
    mpeg4 = write_video(tmp_path / 'Clip.avi', 20)  # 1 snippet: a batch of 10 clips
    expected = extract_video(mpeg4, torch_network, crops=10, progress=False)[0]
    scale = np.abs(expected).max()  # the crops differ: one out of place would show
    assert (np.abs(expected[0, :, None] - expected[0, None]).max(-1) + np.eye(10) * scale).min() > 0.01 * scale
    assert_equal_features(extract_video(mpeg4, openvino_network, crops=10, progress=False)[0], expected)


def test_detect_scores_and_events_equal_across_backends(tmp_path, monkeypatch, h264_video, i3d_weights,  # noqa: F811
                                                       one_crop_features):
    """A snippet per score, the threshold between the lowest snippet score and the next: an event in the video."""
    monkeypatch.chdir(tmp_path)
    model = save_model(tmp_path / 'model.pth', feature_size=2048)
    features = torch.from_numpy(one_crop_features[0])
    logits = torch.logit(torch.from_numpy(video_scores(model, features, 1)).double())
    with torch.no_grad():  # the snippets' logits 2000 times as far from their mean, which becomes 0: apart
        model.fc2.bias.copy_(-2000 * (logits.mean() - model.fc2.bias))
        model.fc2.weight.mul_(2000)
    save_checkpoint(model, str(tmp_path / 'model.pth'))
    snippet_scores = np.sort(video_scores(model, features, 1))
    assert np.diff(snippet_scores).min() > 1e-3
    threshold = (snippet_scores[0] + snippet_scores[1]) / 2
    runs = {}
    for name in ('torch', 'openvino'):
        detect.main(detect.build_parser().parse_args(
            [h264_video, '--ckpt', 'model.pth', '--weights', str(i3d_weights), '--backend', name, '--crops', '1',
             '--device', 'cpu', '--test-split-size', '1', '--threshold', str(threshold), '--out-dir', name,
             '--features-dir', name, '--no-page']))
        runs[name] = read_csv(f'{name}/Clip.csv')[2], json.load(open(f'{name}/Clip.json'))
    (torch_scores, torch_report), (scores, report) = runs['torch'], runs['openvino']
    assert len(scores) == 56 and np.abs(scores - torch_scores).max() <= 1e-5
    assert np.abs(torch_scores - threshold).min() > 1e-5  # none at the threshold, where float32 noise may decide
    assert torch_report['events'] and len(report['events']) == len(torch_report['events'])
    for event, torch_event in zip(report['events'], torch_report['events']):
        assert abs(event.pop('peak_score') - torch_event.pop('peak_score')) <= 1e-5 and event == torch_event


@pytest.mark.parametrize('script, arguments', [
    (extract_features, ['v.mp4', '--weights', 'w.pth']),
    (detect, ['v.mp4', '--ckpt', 'model.pth']),
    (live, ['v.mp4', '--ckpt', 'model.pth', '--weights', 'w.pth'])])
def test_openvino_on_cuda_is_refused_in_one_line(monkeypatch, tmp_path, script, arguments):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(video, 'pick_device', lambda name: torch.device('cuda'))  # as on a machine with CUDA
    with pytest.raises(DataError) as error:
        script.main(script.build_parser().parse_args(arguments + ['--backend', 'openvino', '--device', 'cuda']))
    assert str(error.value) == ('--backend openvino runs on the CPU only, not --device cuda: pass --device cpu, '
                                'or --backend torch')
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize('damage', ['truncated .bin', 'garbage .xml', 'foreign digests'])
def test_a_damaged_cache_entry_is_converted_again(tmp_path, monkeypatch, i3d_weights, damage):  # noqa: F811
    model = cached_model(str(i3d_weights))  # the session's conversion, converted here again each time asked
    conversions = []
    monkeypatch.setattr(backend, 'convert', lambda network: conversions.append(network) or model)
    monkeypatch.setenv('ANOMALY_OPENVINO_CACHE', str(tmp_path / 'cache'))
    cached_model(str(i3d_weights))
    cached_model(str(i3d_weights))
    assert len(conversions) == 1  # converted once, then read from the cache
    [entry] = [e.path for e in os.scandir(tmp_path / 'cache')]
    if damage == 'truncated .bin':
        os.truncate(os.path.join(entry, 'i3d.bin'), os.path.getsize(os.path.join(entry, 'i3d.bin')) // 2)
    elif damage == 'garbage .xml':
        with open(os.path.join(entry, 'i3d.xml'), 'wb') as f:
            f.write(os.urandom(1000))
    else:  # the entry of other weights: its digests are its files', its description not these weights'
        digests = json.load(open(os.path.join(entry, 'digests.json')))
        json.dump({**digests, 'weights_sha256': '0' * 64}, open(os.path.join(entry, 'digests.json'), 'w'))
    converted = cached_model(str(i3d_weights))
    assert len(conversions) == 2 and converted is model
    cached_model(str(i3d_weights))
    assert len(conversions) == 2 and os.listdir(tmp_path / 'cache') == [os.path.basename(entry)]


def test_export_writes_ir_and_onnx_that_openvino_reads_back_to_the_same_features(tmp_path, h264_video, torch_network,
                                                                                  i3d_weights):  # noqa: F811
    export.main(export.build_parser().parse_args([str(i3d_weights), '--crops', '1', '--out', str(tmp_path / 'out')]))
    assert sorted(os.listdir(tmp_path / 'out')) == ['i3d.bin', 'i3d.onnx', 'i3d.xml']
    onnx.checker.check_model(str(tmp_path / 'out' / 'i3d.onnx'))
    container_frames = video.decoded_frames(h264_video)
    next(container_frames)
    frames = np.stack([video.resized(frame) for _, frame in zip(range(16), container_frames)])
    clips = network_input(frames, 1, CPU)  # the first snippet's center crop
    with torch.inference_mode():
        expected = torch_network(clips).numpy()
    for name in ('i3d.xml', 'i3d.onnx'):
        model = openvino.Core().read_model(str(tmp_path / 'out' / name))
        assert list(model.input().shape) == [1, 16, 224, 224, 3] and list(model.output().shape) == [1, 2048]
        compiled = openvino.Core().compile_model(model, 'CPU', COMPILE_CONFIG)
        features = compiled(clips.permute(0, 2, 3, 4, 1).contiguous().numpy())[0]
        assert_equal_features(features, expected)
