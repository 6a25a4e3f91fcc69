"""extract_features.py and i3d.py: the features are the protocol's, computed plainly and independently.

The weights are random, made here in the key layout and shapes of pytorch-resnet3d's i3d_r50_kinetics.pth
(and, renamed back, of FAIR's Caffe2 pickle); the videos are encoded here with PyAV. The reference decodes
every frame, resizes and scales it, cuts the crops by their explicit coordinates and runs each crop alone
through a functional I3D written from the architecture's description, in the default memory layout.
"""
import io
import os
import pickle
import shutil
import struct
import subprocess
import sys
from math import prod

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from conftest import REPO, run_script
from dataset import DataError
from cli import parse_shard
from video import VIDEO_EXTENSIONS, extract_video, feature_path, find_videos, probe_video
from i3d import WHERE_FROM, load_i3d, read_weights

# the inflation pattern: per layer, the width and the temporal kernel of each block's first conv
LAYERS = {1: (64, [3, 3, 3]), 2: (128, [3, 1, 3, 1]), 3: (256, [3, 1, 3, 1, 3, 1]), 4: (512, [1, 3, 1])}
# (rows, columns) of the five crops of a 256 x 340 frame, in torchvision's five_crop order
BOXES = [(slice(0, 224), slice(0, 224)), (slice(0, 224), slice(116, 340)), (slice(32, 256), slice(0, 224)),
         (slice(32, 256), slice(116, 340)), (slice(16, 240), slice(58, 282))]
FPS = 25


# ---------------------------------------------------------------------------------------------- weights
def random_weights(seed=0):
    """A state dict with the keys and shapes of i3d_r50_kinetics.pth (no num_batches_tracked), random values
    that keep the activations' scale (He-initialised convs, BN statistics and affine maps near identity)."""
    g = torch.Generator().manual_seed(seed)
    state = {}

    def conv(name, out, inp, kernel):
        state[name + '.weight'] = torch.randn(out, inp, *kernel, generator=g) * (2 / (inp * prod(kernel))) ** 0.5

    def bn(name, channels, scale=1.0):
        state[name + '.weight'] = scale * (0.5 + torch.rand(channels, generator=g))
        state[name + '.bias'] = 0.1 * torch.randn(channels, generator=g)
        state[name + '.running_mean'] = 0.1 * torch.randn(channels, generator=g)
        state[name + '.running_var'] = 0.5 + torch.rand(channels, generator=g)

    conv('conv1', 64, 3, (5, 7, 7))
    bn('bn1', 64)
    inp = 64
    for layer, (width, kernels) in LAYERS.items():
        for block, k in enumerate(kernels):
            p = f'layer{layer}.{block}.'
            conv(p + 'conv1', width, inp, (k, 1, 1))
            bn(p + 'bn1', width)
            conv(p + 'conv2', width, width, (1, 3, 3))
            bn(p + 'bn2', width)
            conv(p + 'conv3', 4 * width, width, (1, 1, 1))
            bn(p + 'bn3', 4 * width, scale=0.3)
            if block == 0:
                conv(p + 'downsample.0', 4 * width, inp, (1, 1, 1))
                bn(p + 'downsample.1', 4 * width)
            inp = 4 * width
    state['fc.weight'] = 0.01 * torch.randn(400, 2048, generator=g)
    state['fc.bias'] = torch.zeros(400)
    return state


def caffe2_blob(key):
    """The Caffe2 blob name of a state-dict key: pytorch-resnet3d's convert_weights.py renaming, inverted."""
    stem = {'conv1.weight': 'conv1_w', 'bn1.weight': 'res_conv1_bn_s', 'bn1.bias': 'res_conv1_bn_b',
            'bn1.running_mean': 'res_conv1_bn_rm', 'bn1.running_var': 'res_conv1_bn_riv',
            'fc.weight': 'pred_w', 'fc.bias': 'pred_b'}
    if key in stem:
        return stem[key]
    layer, block, *module, param = key.split('.')
    suffix = {'weight': 's', 'bias': 'b', 'running_mean': 'rm', 'running_var': 'riv'}[param]
    prefix = f'res{int(layer[5:]) + 1}_{block}_'
    if module[0] == 'downsample':
        return prefix + ('branch1_w' if module[1] == '0' else f'branch1_bn_{suffix}')
    kind, number = module[0][:-1], int(module[0][-1])
    return prefix + f'branch2{"abc"[number - 1]}_' + ('w' if kind == 'conv' else f'bn_{suffix}')


class Python2Pickler(pickle._Pickler):
    """Pickles as Python 2 did: byte strings as str (BINSTRING), numpy's functions under numpy.core."""
    dispatch = pickle._Pickler.dispatch.copy()

    def save_str2(self, obj):
        self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj if len(obj) < 256
                   else pickle.BINSTRING + struct.pack('<i', len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_str2

    def save_global(self, obj, name=None):
        module = getattr(obj, '__module__', '')
        if module.startswith('numpy._core'):
            self.write(pickle.GLOBAL + f'numpy.core{module[11:]}\n{name or obj.__name__}\n'.encode())
            self.memoize(obj)
        else:
            super().save_global(obj, name)


def write_caffe2(path, state, extra=None):
    """A Caffe2 weights pickle as video-nonlocal-net wrote it: {'blobs': {name: array}} with momentum blobs,
    model_iter and lr beside the parameters, in Python 2's protocol 2."""
    blobs = {caffe2_blob(k): v.numpy() for k, v in state.items()}
    blobs.update({name + '_momentum': np.zeros_like(v) for name, v in list(blobs.items()) if name.endswith('_w')})
    blobs.update({'model_iter': 400000, 'lr': np.array(1e-4, np.float32)}, **(extra or {}))
    with open(path, 'wb') as f:
        Python2Pickler(f, protocol=2).dump({'blobs': blobs})


class Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}',)


@pytest.fixture(scope='module')
def weights(tmp_path_factory):
    """(state dict, its .pth path, the same weights as a Caffe2 .pkl)"""
    folder = tmp_path_factory.mktemp('weights')
    state = random_weights()
    torch.save(state, folder / 'i3d_r50_kinetics.pth')
    write_caffe2(folder / 'i3d_baseline_32x2_IN_pretrain_400k.pkl', state)
    return state, str(folder / 'i3d_r50_kinetics.pth'), str(folder / 'i3d_baseline_32x2_IN_pretrain_400k.pkl')


@pytest.fixture(scope='module')
def network(weights):
    return load_i3d(weights[1], 'cpu')


# ---------------------------------------------------------------------------------------------- videos
def write_video(path, n_frames, seed=0, width=320, height=240):
    """A video of coloured 16-pixel squares, a different random pattern per region, moving 3 pixels per frame."""
    rng = np.random.default_rng(seed)
    pattern = np.kron(rng.integers(0, 256, (height // 16, width // 16 + 32, 3), dtype=np.uint8),
                      np.ones((16, 16, 1), np.uint8))
    with av.open(str(path), 'w') as container:
        stream = container.add_stream('mpeg4', rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, 'yuv420p'
        for t in range(n_frames):
            shift = 3 * t % (pattern.shape[1] - width)
            frame = np.ascontiguousarray(pattern[:, shift:shift + width])
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format='rgb24')))
        container.mux(stream.encode())
    return str(path)


@pytest.fixture(scope='module')
def video40(tmp_path_factory):
    """40 frames: two snippets and a dropped tail of 8 frames."""
    return write_video(tmp_path_factory.mktemp('videos') / 'Clip040_x264.mp4', 40)


# ---------------------------------------------------------------------------------------------- the reference
def reference_network(state, clip):
    """I3D ResNet-50 on one clip [1, 3, 16, 224, 224], functionally, from the architecture's description."""
    def bn(x, name):
        return F.batch_norm(x, state[name + '.running_mean'], state[name + '.running_var'], state[name + '.weight'],
                            state[name + '.bias'], training=False, eps=1e-5)

    def conv(x, name, stride=(1, 1, 1), padding=(0, 0, 0)):
        return F.conv3d(x, state[name + '.weight'], stride=stride, padding=padding)

    x = F.relu(bn(conv(clip, 'conv1', (2, 2, 2), (2, 3, 3)), 'bn1'))
    x = F.max_pool3d(x, (2, 3, 3), (2, 2, 2))
    for layer, (_, kernels) in LAYERS.items():
        for block, k in enumerate(kernels):
            p = f'layer{layer}.{block}.'
            s = 2 if layer > 1 and block == 0 else 1
            out = F.relu(bn(conv(x, p + 'conv1', padding=(k // 2, 0, 0)), p + 'bn1'))
            out = F.relu(bn(conv(out, p + 'conv2', (1, s, s), (0, 1, 1)), p + 'bn2'))
            out = bn(conv(out, p + 'conv3'), p + 'bn3')
            shortcut = bn(conv(x, p + 'downsample.0', (1, s, s)), p + 'downsample.1') if block == 0 else x
            x = F.relu(out + shortcut)
        if layer == 1:
            x = F.max_pool3d(x, (2, 1, 1), (2, 1, 1))
    return x.mean((2, 3, 4))[0]


def reference_features(video, state, snippets=None, crops=range(10)):
    """The protocol, plainly: all frames decoded, resized, scaled; each crop by its coordinates, alone.
    Returns [len(snippets), len(crops), 2048] (default: every snippet)."""
    with av.open(video) as container:
        frames = [f.to_ndarray(format='rgb24') for f in container.decode(video=0)]
    frames = np.stack([np.asarray(Image.fromarray(f).resize((340, 256), Image.Resampling.LANCZOS)) for f in frames])
    frames = (frames.astype(np.float64) * 2 / 255 - 1).astype(np.float32)
    snippets = range((len(frames) - 16) // 16 + 1) if snippets is None else snippets
    features = np.zeros((len(snippets), len(crops), 2048), np.float32)
    with torch.no_grad():
        for i, t in enumerate(snippets):
            snippet = frames[16 * t:16 * t + 16]  # [16, 256, 340, 3]
            for j, k in enumerate(crops):
                rows, cols = BOXES[k % 5]
                crop = (snippet[:, :, ::-1] if k >= 5 else snippet)[:, rows, cols]
                clip = torch.from_numpy(crop.transpose(3, 0, 1, 2).copy())[None]
                features[i, j] = reference_network(state, clip).numpy()
    return features


def assert_close(actual, expected):
    """Equal up to float32 rounding: the extractor batches and lays out the convolutions differently."""
    assert actual.shape == expected.shape and actual.dtype == np.float32
    scale = np.abs(expected).max()
    assert np.abs(actual - expected).max() <= 1e-4 * scale, np.abs(actual - expected).max() / scale


@pytest.fixture(scope='module')
def features40(video40, network):
    """extract_video on the 40-frame video, 10 crops, one snippet per batch."""
    return extract_video(video40, network, crops=10, batch_size=1, progress=False)


# ---------------------------------------------------------------------------------------------- features
def test_features_are_the_protocol(video40, weights, features40):
    """All ten crops of the first snippet, and a flipped crop of the second, against the plain computation."""
    features, n_frames, fps = features40
    assert (n_frames, fps) == (40, FPS) and features.shape == (2, 10, 2048)
    first = reference_features(video40, weights[0], snippets=[0])[0]
    second = reference_features(video40, weights[0], snippets=[1], crops=[7])[0]
    # every crop and both snippets see different pixels: a crop in the wrong place or order would show
    scale = np.abs(first).max()
    assert (np.abs(first[:, None] - first[None]).max(-1) + np.eye(10) * scale).min() > 0.01 * scale
    assert np.abs(first[7] - second[0]).max() > 0.01 * scale
    assert_close(features[0], first)
    assert_close(features[1, 7:8], second)


def test_probe_counts_the_frames(video40):
    assert probe_video(video40) == (40, FPS)


def test_crops_1_is_the_center_crop_and_the_tail_is_dropped(tmp_path, weights, video40, features40):
    """T = (n - 16) // 16 + 1 and the frames after the last snippet are unused; --crops 1 is crop 4 of 10."""
    folder = tmp_path / 'videos'
    folder.mkdir()
    shutil.copy(video40, folder / 'Clip040_x264.mp4')
    for n in (16, 31, 32):
        write_video(folder / f'Clip{n:03d}_x264.avi', n, seed=n)
    result = run_script('extract_features.py', 'videos', '--weights', weights[1], '--crops', 1, '--out-dir', 'out',
                        cwd=tmp_path)
    assert '4 extracted, 0 skipped, 0 failed' in result.stdout, result.stdout
    shapes = {n: np.load(tmp_path / 'out' / f'Clip{n:03d}_x264_i3d.npy').shape for n in (16, 31, 32, 40)}
    assert shapes == {16: (1, 1, 2048), 31: (1, 1, 2048), 32: (2, 1, 2048), 40: (2, 1, 2048)}
    center = np.load(tmp_path / 'out' / 'Clip040_x264_i3d.npy')
    assert_close(center, features40[0][:, 4:5])
    # the one snippet of the 31-frame video is its first 16 frames
    short = str(folder / 'Clip031_x264.avi')
    assert_close(np.load(tmp_path / 'out' / 'Clip031_x264_i3d.npy'), reference_features(short, weights[0], crops=[4]))


def test_streaming_equals_decoding_everything(tmp_path, network):
    """Batches of 2 snippets (the last one short) give the features of one batch of all 3 snippets.
    (test_features_are_the_protocol streams one snippet at a time against a reference that decodes all.)"""
    video = write_video(tmp_path / 'v.mp4', 3 * 16 + 9, seed=5)
    whole = extract_video(video, network, crops=1, batch_size=3, progress=False)
    streamed = extract_video(video, network, crops=1, batch_size=2, progress=False)
    assert streamed[1:] == whole[1:] == (57, FPS)
    assert_close(streamed[0], whole[0])


MEASURE = """
import resource, sys, torch
from video import extract_video
network = lambda x: x.mean((2, 3, 4)).repeat(1, 683)[:, :2048]  # a stand-in: the decoding is what is measured
features, n, fps = extract_video(sys.argv[1], network, crops=1, batch_size=1, progress=False)
print(len(features), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def test_memory_does_not_grow_with_the_video(tmp_path):
    """A video 12 times longer peaks at the same memory: the frames are decoded snippet by snippet."""
    peaks = {}
    for n in (2, 24):
        video = write_video(tmp_path / f'{n}.mp4', 16 * n, seed=n)
        out = subprocess.run([sys.executable, '-c', MEASURE, video], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.split()
        assert int(out[0]) == n
        peaks[n] = int(out[1]) * 1024
    # holding the long video's frames would take 24 * 16 * 256 * 340 * 3 = 100 MB more (four times that in float32)
    assert peaks[24] < peaks[2] + 30e6, peaks


# ---------------------------------------------------------------------------------------------- weights
def test_caffe2_pickle_gives_the_same_weights_and_features(tmp_path, weights, network):
    state, _, pkl = weights
    from_pickle = read_weights(pkl)
    assert from_pickle.keys() == state.keys()
    for key, value in state.items():
        assert torch.equal(from_pickle[key], value), key
    video = write_video(tmp_path / 'v.mp4', 16)
    features = [extract_video(video, net, crops=1, progress=False)[0] for net in (network, load_i3d(pkl, 'cpu'))]
    assert features[0].tobytes() == features[1].tobytes()


def test_a_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pkl'
    path.write_bytes(pickle.dumps({'blobs': {'conv1_w': Exploit(marker)}}, protocol=2))
    with pytest.raises(DataError, match='asks for posix.system'):
        load_i3d(str(path), 'cpu')
    assert not marker.exists()
    pickle.loads(path.read_bytes())  # the file is a real exploit: a plain unpickler runs its command
    assert marker.exists()


def broken_state(edit):
    def make(folder, state):
        state = dict(state)
        edit(state)
        torch.save(state, folder / 'w.pth')
        return 'w.pth'
    return make


def with_file(name, content):
    def make(folder, state):
        (folder / name).write_bytes(content(folder) if callable(content) else content)
        return name
    return make


def torch_bytes(obj):
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def non_local(folder, state):
    write_caffe2(folder / 'w.pkl', {'conv1.weight': state['conv1.weight']},
                 {'nonlocal_conv3_1_theta_w': np.zeros((512, 1024, 1, 1, 1), np.float32)})
    return 'w.pkl'


WEIGHT_CASES = {  # id: (how the weights file is made, words the message must hold)
    'missing file': (lambda folder, state: 'i3d_r50_kinetics.pth',
                     ['i3d_r50_kinetics.pth: no such file', 'i3d_baseline_32x2_IN_pretrain_400k.pkl',
                      'convert_weights']),
    'not a checkpoint': (with_file('w.pth', b'<html>Not Found</html>'), ['w.pth', 'not a readable PyTorch checkpoint']),
    'a .pth that runs code': (with_file('w.pth', lambda folder: torch_bytes({'x': Exploit(folder / 'pwned')})),
                              ['w.pth', 'not a readable PyTorch checkpoint']),
    'missing keys': (broken_state(lambda s: [s.pop(k) for k in list(s) if k.startswith('layer3.')]),
                     ['w.pth', '95 keys missing (layer3.0.conv1.weight, layer3.0.bn1.weight, layer3.0.bn1.bias, ...)']),
    'unexpected keys': (broken_state(lambda s: s.update({'layer1.0.nl.theta.weight': torch.zeros(1)})),
                        ['w.pth', '1 unexpected (layer1.0.nl.theta.weight)']),
    'wrong shape': (broken_state(lambda s: s.update({'layer4.1.conv1.weight': torch.zeros(512, 2048, 1, 1, 1)})),
                    ['w.pth', 'layer4.1.conv1.weight has shape [512, 2048, 1, 1, 1]', '[512, 2048, 3, 1, 1]']),
    'a .pkl that runs code': (with_file('w.pkl', lambda folder: pickle.dumps({'blobs': Exploit(folder / 'pwned')})),
                              ['w.pkl', 'asks for posix.system']),
    'a non-local .pkl': (non_local, ['w.pkl', 'nonlocal_conv3_1_theta_w', 'non-local models are not supported']),
    'a .pkl of something else': (with_file('w.pkl', pickle.dumps([1, 2])), ['w.pkl', "{'blobs': {name: array}}"]),
}
THROUGH_THE_SCRIPT = ('missing file', 'a .pkl that runs code')  # the others: read_weights' messages alone


@pytest.mark.parametrize('case', WEIGHT_CASES)
def test_bad_weights(tmp_path, weights, case):
    make, words = WEIGHT_CASES[case]
    path = make(tmp_path, weights[0])
    if case in THROUGH_THE_SCRIPT:
        write_video(tmp_path / 'v.mp4', 16)
        result = run_script('extract_features.py', 'v.mp4', '--weights', path, cwd=tmp_path, check=False)
        assert result.returncode == 1
        assert result.stderr.startswith('extract_features.py: error: ') and result.stderr.count('\n') == 1
        message = result.stderr
    else:
        with pytest.raises(DataError) as error:
            read_weights(str(tmp_path / path))
        message = str(error.value)
        assert '\n' not in message
    for word in words:
        assert word in message, (word, message)
    assert not (tmp_path / 'pwned').exists()


# ---------------------------------------------------------------------------------------------- the script
def test_shards_together_equal_one_run(tmp_path, weights):
    (tmp_path / 'videos' / 'sub').mkdir(parents=True)
    for name, n in (('A.mkv', 16), ('sub/B.mkv', 20), ('C.mkv', 17)):
        write_video(tmp_path / 'videos' / name, n, seed=n)
    # sorted: videos/A.mkv, videos/C.mkv, videos/sub/B.mkv; shard 0/2 takes the first and the third
    common = ['videos', '--weights', weights[1], '--crops', 1]
    first = run_script('extract_features.py', *common, '--out-dir', 'shards', '--shard', '0/2', cwd=tmp_path)
    assert sorted(os.listdir(tmp_path / 'shards')) == ['A_i3d.npy', 'B_i3d.npy'], first.stdout
    run_script('extract_features.py', *common, '--out-dir', 'shards', '--shard', '1/2', cwd=tmp_path)
    # one run, over an output that --overwrite replaces
    (tmp_path / 'one').mkdir()
    shutil.copy(tmp_path / 'shards' / 'A_i3d.npy', tmp_path / 'one' / 'B_i3d.npy')
    run_script('extract_features.py', *common, '--out-dir', 'one', '--overwrite', cwd=tmp_path)
    names = sorted(os.listdir(tmp_path / 'one'))
    assert names == sorted(os.listdir(tmp_path / 'shards')) == ['A_i3d.npy', 'B_i3d.npy', 'C_i3d.npy']
    for name in names:
        assert (tmp_path / 'one' / name).read_bytes() == (tmp_path / 'shards' / name).read_bytes(), name
    # without --overwrite what exists is skipped (the weights file is still checked: test_checked_before_any_work)
    again = run_script('extract_features.py', *common, '--out-dir', 'one', cwd=tmp_path)
    assert '3 done before, 0 to extract' in again.stdout, again.stdout


def test_help_gives_every_argument_a_help_and_shows_the_defaults(monkeypatch):
    from extract_features import build_parser
    monkeypatch.setenv('COLUMNS', '1000')  # no line breaks inside an entry
    parser = build_parser()
    assert all(action.help for action in parser._actions)
    text = ' '.join(parser.format_help().split())
    for entry in ('--out-dir OUT_DIR where <video stem>_i3d.npy go (default: features/videos)',
                  '--crops {10,1} 10: TenCrop (RTFM-style); 1: the center crop only, 10x faster (default: 10) ',
                  '--batch-size BATCH_SIZE snippets decoded and run through the network at a time (default: 2 '
                  'snippets with 10 crops, 20 with 1) ',
                  '--device {auto,cpu,cuda} auto: CUDA when present (default: auto) ',
                  '--shard K/N every N-th video from the K-th, 0 <= K < N (default: 0/1, every video) '):
        assert entry in text, entry


@pytest.mark.parametrize('text', ['1-4', '0/0', '-1/2', '1/2/3', '2/2', 'a/b'])
def test_bad_shards(text):
    with pytest.raises(DataError, match=f'--shard {text}: expected K/N with 0 <= K < N'):
        parse_shard(text)


def test_find_videos(tmp_path):
    for name in ('b/x.MP4', 'b/c/y.avi', 'a.webm', 'b/notes.txt', 'b/z_i3d.npy'):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b'')
    found = find_videos([str(tmp_path / 'b'), str(tmp_path / 'a.webm')])
    assert found == sorted(str(tmp_path / n) for n in ('a.webm', 'b/c/y.avi', 'b/x.MP4'))
    # a file given is taken as it is (check_videos says it is not a video), a missing one ends the run
    assert find_videos([str(tmp_path / 'b' / 'notes.txt')]) == [str(tmp_path / 'b' / 'notes.txt')]
    with pytest.raises(DataError, match=r'ghost.mp4: no such file or folder'):
        find_videos([str(tmp_path / 'a.webm'), str(tmp_path / 'ghost.mp4')])
    assert feature_path('out', 'videos/Abuse028_x264.mp4') == os.path.join('out', 'Abuse028_x264_i3d.npy')


def damaged_video(path):
    """A video whose container opens, and whose frames stop decoding after the sixth: the middle third zeroed."""
    data = bytearray(open(write_video(path, 40, width=64, height=48), 'rb').read())
    data[len(data) // 3:2 * len(data) // 3] = bytes(len(data) // 3)
    path.write_bytes(data)
    return str(path)


def sound_only(path):
    """A Matroska file with a sound track and no picture."""
    with av.open(str(path), 'w') as container:
        stream = container.add_stream('pcm_s16le', rate=8000, layout='mono')
        sound = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), 's16', 'mono')
        sound.sample_rate = 8000
        container.mux(stream.encode(sound))


BROKEN = b'\x00\x00\x00\x18ftypmp42' + bytes(100)  # an MP4 header and nothing more


def test_every_bad_video_is_named_up_front_and_the_others_extracted(tmp_path, monkeypatch, capsys, weights):
    """Six inputs: one good; four that cannot be extracted, each named before any work (not a video, FFmpeg cannot
    open it, no video stream, too short); one that fails while decoding (its small picture warned about first).
    The good one is written, a last line names the five, exit status 1. A shard names only its own."""
    folder = tmp_path / 'videos'
    folder.mkdir()
    write_video(folder / 'good.mp4', 16)
    write_video(folder / 'tiny.mp4', 10)
    damaged_video(folder / 'damaged.mp4')
    (folder / 'broken.mp4').write_bytes(BROKEN)
    sound_only(folder / 'sound.mkv')
    (tmp_path / 'notes.txt').write_text('not a video')
    arguments = ['videos', 'notes.txt', '--weights', weights[1], '--crops', 1]
    result = run_script('extract_features.py', *arguments, cwd=tmp_path, check=False)
    assert result.returncode == 1
    lines = [
        "extract_features.py: warning: videos/damaged.mp4: 64 x 48 pixels, smaller than the network's 224 x 224 "
        'crop: its frames are enlarged to 340 x 256, and the scores of so few pixels may mean little',
        f'extract_features.py: error: notes.txt: not a video, by its extension ({" ".join(VIDEO_EXTENSIONS)})',
        'extract_features.py: error: videos/broken.mp4: cannot be decoded (Invalid data found when processing input)',
        'extract_features.py: error: videos/sound.mkv: no video stream in it',
        'extract_features.py: error: videos/tiny.mp4: 10 frames, fewer than the 16 of one snippet',
        'extract_features.py: error: videos/damaged.mp4: cannot be decoded (Invalid data found when processing input)',
    ]
    assert result.stderr.strip().splitlines() == lines + [
        'extract_features.py: error: 5 of 6 videos failed (above): notes.txt, videos/broken.mp4, videos/damaged.mp4, '
        'videos/sound.mkv, videos/tiny.mp4; the others are extracted']
    assert os.listdir(tmp_path / 'features' / 'videos') == ['good_i3d.npy']
    assert '6 videos: 0 done before, 2 to extract, 4 that cannot be (above)' in result.stdout
    assert '1 extracted, 0 skipped, 5 failed' in result.stdout
    # a shard of the sorted list: notes.txt, videos/broken.mp4, videos/damaged.mp4, videos/good.mp4, ...
    from extract_features import build_parser, main
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    with pytest.raises(DataError) as error:  # shard 0/2: notes.txt, videos/damaged.mp4, videos/sound.mkv
        main(build_parser().parse_args([*map(str, arguments), '--out-dir', 'shard', '--shard', '0/2']))
    assert str(error.value) == '3 of 3 videos failed (above): notes.txt, videos/damaged.mp4, videos/sound.mkv'
    assert capsys.readouterr().err.splitlines() == lines[:2] + [lines[3], lines[5]]
    assert not os.path.exists(tmp_path / 'shard')


def test_a_video_that_states_no_frame_count_is_counted_up_front(tmp_path):
    """MPEG-TS states no frame count: the first frames are decoded to tell a too short one."""
    from video import check_videos
    for name, n_frames in (('short.ts', 15), ('long.ts', 16)):
        with av.open(str(tmp_path / name), 'w', format='mpegts') as container:
            stream = container.add_stream('mpeg2video', rate=FPS)
            stream.width, stream.height = 224, 224
            for _ in range(n_frames):
                container.mux(stream.encode(av.VideoFrame.from_ndarray(np.zeros((224, 224, 3), np.uint8), 'rgb24')))
            container.mux(stream.encode())
        with av.open(str(tmp_path / name)) as container:
            assert container.streams.video[0].frames == 0  # none stated
    short, long = str(tmp_path / 'short.ts'), str(tmp_path / 'long.ts')
    warnings = []
    assert check_videos([short, long], warnings.append) == {
        short: f'{short}: 15 frames, fewer than the 16 of one snippet'}
    assert warnings == []  # 224 x 224: not smaller than the crop


@pytest.mark.parametrize('width, height, warned', [(1, 1, True), (2, 2, True), (223, 480, True), (640, 223, True),
                                                   (224, 224, False), (320, 240, False), (0, 0, False)])
def test_small_picture_warning(width, height, warned):
    from video import small_picture_warning
    warning = small_picture_warning('cam', width, height)
    assert (warning == f"cam: {width} x {height} pixels, smaller than the network's 224 x 224 crop: its frames are "
                       'enlarged to 340 x 256, and the scores of so few pixels may mean little') if warned else (
        warning is None)


UP_FRONT = {  # id: (arguments, the message): each stops the run before the weights (an HTML page) are read
    '--out-dir a file': (['videos', '--weights', 'html.pth', '--out-dir', 'notes.txt'],
                         '--out-dir notes.txt: HERE/notes.txt is a file, not a folder'),
    '--out-dir that cannot be made': (['videos', '--weights', 'html.pth', '--out-dir', '/proc/nope'],
                                      '--out-dir /proc/nope: cannot be created in /proc (No such file or directory)'),
    'missing weights, all done': (['videos', '--weights', 'absent.pth', '--out-dir', 'done'],
                                  f'--weights absent.pth: no such file; {WHERE_FROM}'),
    'empty weights, all done': (['videos', '--weights', 'empty.pth', '--out-dir', 'done'],
                                f'--weights empty.pth: an empty file (an interrupted download?); {WHERE_FROM}'),
}


@pytest.mark.parametrize('case', UP_FRONT)
def test_checked_before_any_work(tmp_path, monkeypatch, case):
    from extract_features import build_parser, main
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'videos').mkdir()
    write_video(tmp_path / 'videos' / 'a.mp4', 16, width=64, height=48)
    (tmp_path / 'notes.txt').write_text('not a video')
    (tmp_path / 'html.pth').write_text('<html>Not Found</html>')
    (tmp_path / 'empty.pth').write_bytes(b'')
    (tmp_path / 'done').mkdir()
    (tmp_path / 'done' / 'a_i3d.npy').write_bytes(b'')  # a.mp4 is done
    arguments, message = UP_FRONT[case]
    with pytest.raises(DataError) as error:
        main(build_parser().parse_args([*arguments, '--device', 'cpu']))
    assert str(error.value) == message.replace('HERE', os.getcwd())
    assert not os.path.exists('features')


FLAG_CASES = {  # id: (videos to make, arguments, words the message must hold)
    'too short alone': (['short.mp4'], ['short.mp4'], ['short.mp4: 10 frames', 'fewer than the 16']),
    'shard K >= N': ([], ['v.mp4', '--shard', '2/2'], ['--shard 2/2', '0 <= K < N']),
    'batch size': ([], ['v.mp4', '--batch-size', '0'], ['--batch-size must be positive, got 0']),
    'missing input': ([], ['v.mp4', 'nothing.mp4'], ['nothing.mp4: no such file or folder']),
    'folder without videos': ([], ['empty'], ['empty: no videos in it', '.mp4']),
    'same stem twice': (['a/v.mp4', 'b/v.avi'], ['a', 'b'], ['a/v.mp4 and b/v.avi would both write', 'v_i3d.npy']),
    'half on the CPU': ([], ['v.mp4', '--half', '--device', 'cpu'], ['--half needs a CUDA device']),
}


@pytest.mark.parametrize('case', FLAG_CASES)
def test_bad_flags_and_videos(tmp_path, weights, case):
    videos, arguments, words = FLAG_CASES[case]
    (tmp_path / 'empty').mkdir()
    write_video(tmp_path / 'v.mp4', 16)
    for name in videos:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        write_video(tmp_path / name, 10 if 'short' in name else 16)
    result = run_script('extract_features.py', *arguments, '--weights', weights[1], cwd=tmp_path, check=False)
    assert result.returncode == 1
    assert result.stderr.startswith('extract_features.py: error: ') and result.stderr.count('\n') == 1, result.stderr
    for word in words:
        assert word in result.stderr, (word, result.stderr)
