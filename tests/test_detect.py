"""detect.py: per-frame scores equal to the test protocol computed by hand, events on hand-made score sequences,
the CSV, JSON, PNG and MP4 it writes, a generated video end to end, and one clear line for every bad input."""
import json
import os
import shutil

import av
import numpy as np
import pytest
import torch

from conftest import assert_png, run_script
from dataset import DataError
from results import Events, find_events
from detect import build_parser, main
from model import VideoClassifier, save_checkpoint
from video import VIDEO_EXTENSIONS, frame_scores
from video_out import BACKGROUND, DIM, GREEN, LINE, RED, timeline, write_scored_video

FPS = 25  # the generated videos' rate: not the default 30, so that a wrong time axis shows


def encode_video(path, n_frames, width=65, height=49, fps=FPS, seed=0):
    """A video of moving random blocks (odd sizes: libx264 in yuv444p takes them, as users' files may have)."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    with av.open(str(path), 'w') as container:
        stream = container.add_stream('libx264', rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, 'yuv444p'
        for i in range(n_frames):
            picture = np.roll(blocks.repeat(8, 0).repeat(8, 1)[:height, :width], 2 * i, axis=1)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(picture), format='rgb24')))
        container.mux(stream.encode(None))
    return path


def decode(path):
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format='rgb24') for frame in container.decode(video=0)]


def save_model(path, feature_size, da=8, r=2, seed=0):
    torch.manual_seed(seed)
    model = VideoClassifier(feature_size, da, r).eval()
    save_checkpoint(model, str(path))
    return model


@torch.no_grad()
def protocol_by_hand(model, features, split_size, n_frames):
    """Per chunk of split_size snippets: the model on its crops, the mean over crops, on 16 frames each;
    the frames after the last full snippet take the last snippet's score. float32 [n_frames]."""
    x = torch.from_numpy(features)
    snippets = []
    for start in range(0, len(x), split_size):
        chunk = x[start:start + split_size]
        score = model(torch.stack([chunk[:, crop] for crop in range(x.shape[1])])).mean().item()
        snippets += [np.float32(score)] * len(chunk)
    frames = [snippets[min(f // 16, len(snippets) - 1)] for f in range(n_frames)]
    return np.array(frames, np.float32)


def events_by_hand(scores, threshold):
    events, start = [], None
    for f, score in enumerate(list(scores) + [-1.0]):
        if score >= threshold and start is None:
            start = f
        elif score < threshold and start is not None:
            events.append((start, f, float(max(scores[start:f]))))
            start = None
    return events


def read_csv(path):
    lines = open(path).read().splitlines()
    assert lines[0] == 'frame,time,score'
    rows = [line.split(',') for line in lines[1:]]
    return [int(r[0]) for r in rows], [r[1] for r in rows], np.array([np.float32(r[2]) for r in rows])


@pytest.fixture(scope='session')
def i3d_weights(tmp_path_factory):
    """Random I3D ResNet-50 weights under the real file's key names (never real weights in the repo)."""
    from i3d import I3DResNet50
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp('i3d') / 'i3d_random.pth'
    torch.save(I3DResNet50().state_dict(), path)
    return path


# ---------------------------------------------------------------------------------------------- events
@pytest.mark.parametrize('scores, threshold, events', [
    # from frame 0, a single frame equal to the threshold, a single frame, to the last frame
    ([0.7, 0.6, 0.2, 0.5, 0.49, 0.9, 0.1, 0.8], 0.5, [(0, 2, 0.7), (3, 4, 0.5), (5, 6, 0.9), (7, 8, 0.8)]),
    ([0.1, 0.6, 0.95, 0.6, 0.2], 0.5, [(1, 4, 0.95)]),
    ([0.2, 0.3, 0.1], 0.5, []),
    ([0.5, 0.5, 0.5], 0.5, [(0, 3, 0.5)]),             # all equal to the threshold: one event, the whole video
    ([0.25], 0.25, [(0, 1, 0.25)]),                    # a one-frame video
    ([0.3, 0.8, 0.3], 0.0, [(0, 3, 0.8)]),
    ([0.3, 0.99, 0.3], 1.0, []),
], ids=['edges', 'one inside', 'none', 'all at the threshold', 'one frame', 'threshold 0', 'threshold 1'])
def test_events_are_the_maximal_runs_at_or_above_the_threshold(scores, threshold, events):
    scores = np.array(scores, np.float32)
    expected = [(s, e, float(np.float32(peak))) for s, e, peak in events]
    assert find_events(scores, threshold) == expected == events_by_hand(scores, threshold)
    for block in (1, 2, 3):  # fed block by block as live.py does: the same events, each start said once
        events, changes = Events(threshold), []
        for first in range(0, len(scores), block):
            changes += events.add(first, scores[first:first + block])
        changes += events.end(len(scores))
        assert [c[1:] for c in changes if c[0] == 'end'] == expected
        assert [c[1:] for c in changes if c[0] == 'start'] == [(s, float(scores[s])) for s, _, _ in expected]


def test_frames_after_the_last_snippet_carry_its_score():
    snippets = np.array([0.25, 0.75], np.float32)
    np.testing.assert_array_equal(frame_scores(snippets, 32), [0.25] * 16 + [0.75] * 16)
    np.testing.assert_array_equal(frame_scores(snippets, 47), [0.25] * 16 + [0.75] * 31)


# ---------------------------------------------------------------------------------------------- feature files
def test_feature_file_gets_the_test_protocol_scores(tmp_path):
    model = save_model(tmp_path / 'model.pth', feature_size=16)
    features = np.random.default_rng(1).random((37, 3, 16), dtype=np.float32) * 2  # chunks of 10, 10, 10, 7
    np.save(tmp_path / 'Arrest001_x264_i3d.npy', features)
    expected = protocol_by_hand(model, features, 10, 16 * 37)
    threshold = float(np.unique(expected)[-2])  # the second highest chunk's score: equality counts
    events = events_by_hand(expected, threshold)
    assert len(events) in (1, 2) and sum(e - s for s, e, _ in events) > 16 * 7

    result = run_script('detect.py', 'Arrest001_x264_i3d.npy', '--ckpt', 'model.pth', '--test-split-size', 10,
                        '--threshold', repr(threshold), '--fps', FPS, '--device', 'cpu', cwd=tmp_path)
    out = tmp_path / 'results' / 'videos'
    assert sorted(os.listdir(out)) == ['Arrest001_x264.csv', 'Arrest001_x264.json', 'Arrest001_x264.png',
                                      'index.html']
    frames, times, scores = read_csv(out / 'Arrest001_x264.csv')
    assert frames == list(range(16 * 37))
    assert times == [f'{f / FPS:.4f}' for f in frames]
    np.testing.assert_array_equal(scores, expected)
    report = json.load(open(out / 'Arrest001_x264.json'))
    assert report == {
        'video': 'Arrest001_x264_i3d.npy', 'features': 'Arrest001_x264_i3d.npy', 'fps': FPS, 'frames': 16 * 37,
        'snippets': 37, 'crops': 3, 'checkpoint': 'model.pth', 'test_split_size': 10, 'threshold': threshold,
        'max_score': float(expected.max()),
        'events': [{'start_frame': s, 'end_frame': e, 'start_time': round(s / FPS, 4), 'end_time': round(e / FPS, 4),
                    'peak_score': peak} for s, e, peak in events], 'cwd': str(tmp_path)}
    assert_png(out / 'Arrest001_x264.png')
    for s, e, peak in events:
        assert f'\n  {s / FPS:.1f} s - {e / FPS:.1f} s  peak {peak:.2f}\n' in result.stdout
    assert 'written: results/videos/Arrest001_x264.csv, results/videos/Arrest001_x264.json' in result.stdout


def test_feature_file_time_axis_defaults_to_30_fps(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    save_model('model.pth', feature_size=16)
    np.save('clip_i3d.npy', np.ones((3, 1, 16), np.float32))
    main(build_parser().parse_args(['clip_i3d.npy', '--ckpt', 'model.pth', '--device', 'cpu', '--out-dir', '.']))
    assert json.load(open('clip.json'))['fps'] == 30
    assert read_csv('clip.csv')[1][-1] == f'{47 / 30:.4f}'


# ---------------------------------------------------------------------------------------------- warnings
SHORT = ('detect.py: warning: clip_i3d.npy: 5 snippets, fewer than one chunk of --test-split-size 8: the whole video '
         'gets one score; a smaller --test-split-size scores it in parts')
ONE = ('detect.py: warning: clip_i3d.npy: 1 snippets, fewer than one chunk of --test-split-size 8: the whole video '
       'gets one score')
SATURATED = ('detect.py: warning: clip_i3d.npy: every score is below 1e-06 or above 1 - 1e-06 (from {:.3g} to {:.3g}): '
             'the checkpoint and the features most likely do not fit each other (a model trained on synthetic '
             "features, as the Quick start's, scoring real I3D features?)")


@pytest.mark.parametrize('snippets, split_size, bias, threshold, warnings, title', [
    (8, 8, None, '0', [], 'clip (shaded: the events, score ≥ 0)'),
    (5, 8, None, '1', [SHORT], 'clip (no events: no frame scored ≥ 1)'),
    (1, 8, None, '1', [ONE], 'clip (no events: no frame scored ≥ 1)'),  # no smaller chunk to suggest
    (12, 4, -40.0, '0', [SATURATED], 'clip (shaded: the events, score ≥ 0)'),
    (12, 4, -10.0, '0.5', [], 'clip (no events: no frame scored ≥ 0.5)'),
], ids=['one chunk', 'shorter than a chunk', 'one snippet', 'saturated scores', 'low scores'])
def test_warnings_and_the_title(tmp_path, monkeypatch, capsys, snippets, split_size, bias, threshold, warnings,
                                title):
    """bias: the last layer's, set to make every score tiny (a model that does not fit the features)."""
    import plots
    monkeypatch.chdir(tmp_path)
    titles = []
    monkeypatch.setattr(plots, 'plot_scores', lambda title, *rest: titles.append(title))
    model = save_model('model.pth', feature_size=16)
    if bias is not None:
        model.fc2.bias.data.fill_(bias)
        save_checkpoint(model, 'model.pth')
    features = np.random.default_rng(2).standard_normal((snippets, 2, 16), dtype=np.float32)
    np.save('clip_i3d.npy', features)
    scores = protocol_by_hand(model, features, split_size, 16 * snippets)
    assert np.all((scores < 1e-6) | (scores > 1 - 1e-6)) == (SATURATED in warnings)  # the cases are what they say
    main(build_parser().parse_args(['clip_i3d.npy', '--ckpt', 'model.pth', '--test-split-size', str(split_size),
                                    '--threshold', threshold, '--device', 'cpu']))
    expected = [w.format(scores.min(), scores.max()) for w in warnings]
    assert capsys.readouterr().err.splitlines() == expected
    assert titles == [title] and os.path.isfile('results/videos/clip.json')  # warned, and the run went on


def test_help_gives_every_argument_a_help_and_shows_the_defaults(monkeypatch):
    monkeypatch.setenv('COLUMNS', '1000')  # no line breaks inside an entry
    parser = build_parser()
    assert all(action.help for action in parser._actions)
    text = ' '.join(parser.format_help().split())
    for entry in ('--test-split-size TEST_SPLIT_SIZE snippets per scored chunk, which gets one score (default: 32) ',
                  '--threshold THRESHOLD an event is a run of frames scored >= this (default: 0.5) ',
                  "--out-dir OUT_DIR where each input's CSV, JSON, PNG (and MP4) go (default: results/videos) ",
                  "--features-dir FEATURES_DIR where videos' features are saved, and found again (default: "
                  'features/videos) ',
                  "--fps FPS frames per second of the time axis (default: the video's own; 30, UCF-Crime's, for a "
                  'feature file) ',
                  '--crops {10,1} 10: TenCrop (RTFM-style); 1: the center crop only, 10x faster (default: 10) ',
                  '--batch-size BATCH_SIZE snippets decoded and run through the network at a time (default: 2 '
                  'snippets with 10 crops, 20 with 1) ',
                  '--device {auto,cpu,cuda} auto: CUDA when present (default: auto)'):
        assert entry in text, entry


# ---------------------------------------------------------------------------------------------- the scored video
def test_timeline_pixels():
    scores = np.array([0.2] * 10 + [0.9] * 10 + [0.5] * 2, np.float32)  # 22 frames on 11 columns, 2 each
    picture, starts = timeline(scores, 0.5, 11, 11)
    np.testing.assert_array_equal(starts, np.arange(0, 22, 2))
    expected = np.empty((11, 11, 3), np.uint8)
    expected[:] = BACKGROUND
    for x, (top, color) in enumerate([(8, GREEN)] * 5 + [(1, RED)] * 5 + [(5, RED)]):  # 0.5: red, as >= 0.5
        expected[top + 1:, x] = np.multiply(color, DIM).astype(np.uint8)  # the bar, dimmed
        expected[top, x] = color  # its top
    expected[5, [0, 1, 2, 3, 8, 9, 10]] = LINE  # the threshold, dashed 4 on, 4 off
    np.testing.assert_array_equal(picture, expected)


@pytest.mark.parametrize('codec', ['libx264', 'mpeg4'])
def test_scored_video_has_every_frame_at_even_size(tmp_path, monkeypatch, codec):
    import video_out
    if codec == 'mpeg4':  # an FFmpeg without libx264
        monkeypatch.setattr(video_out.av, 'codecs_available', video_out.av.codecs_available - {'libx264'})
    encode_video(tmp_path / 'in.mp4', 20)
    scores = np.linspace(0, 1, 20, dtype=np.float32)
    write_scored_video(str(tmp_path / 'in.mp4'), str(tmp_path / 'out.mp4'), scores, FPS, 0.5)
    assert sorted(os.listdir(tmp_path)) == ['in.mp4', 'out.mp4']  # written atomically: no temporary file left
    with av.open(str(tmp_path / 'out.mp4')) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == ('h264' if codec == 'libx264' else 'mpeg4')
        assert stream.average_rate == FPS
        frames = [frame.to_ndarray(format='rgb24') for frame in container.decode(stream)]
    assert len(frames) == 20 and frames[0].shape == (50 + 32, 66, 3)  # 65 x 49 padded, a 32-row strip below


# ---------------------------------------------------------------------------------------------- bad input
def write_bad_inputs(root):
    """The files the cases below name, in root."""
    save_model(root / 'model16.pth', feature_size=16)
    save_model(root / 'model.pth', feature_size=2048)
    torch.save({'weight': torch.ones(3)}, root / 'other.pth')
    state = torch.load(root / 'model16.pth')
    state['fc1.weight'] = torch.ones(32, 48)
    torch.save(state, root / 'damaged.pth')
    (root / 'notes.txt').write_text('not a video')
    os.makedirs(root / 'empty')
    np.save(root / 'clip_i3d.npy', np.ones((5, 2, 16), np.float32))
    np.save(root / 'flat_i3d.npy', np.ones((40, 16), np.float32))
    np.save(root / 'narrow_i3d.npy', np.ones((40, 2, 8), np.float32))
    (root / 'html_i3d.npy').write_text('<html>quota exceeded</html>')
    np.save(root / 'nan_i3d.npy', np.full((5, 2, 16), np.nan, np.float32))
    encode_video(root / 'clip.mp4', 40)
    encode_video(root / 'short.mp4', 10)
    (root / 'broken.mp4').write_bytes(b'\x00\x00\x00\x18ftypmp42' + bytes(100))
    os.makedirs(root / 'stale')
    np.save(root / 'stale' / 'clip_i3d.npy', np.ones((5, 1, 2048), np.float32))  # 40 frames make 2 snippets
    os.makedirs(root / 'mixed')
    shutil.copy(root / 'clip.mp4', root / 'mixed' / 'a.mp4')
    shutil.copy(root / 'broken.mp4', root / 'mixed' / 'b.mp4')


M16 = ['--ckpt', 'model16.pth']
M = ['--ckpt', 'model.pth']
WEIGHTS = 'WEIGHTS'  # the random I3D weights of the fixture
CASES = {  # id: (arguments, words the message must hold)
    'missing input': (['ghost.mp4', *M16], ['ghost.mp4', 'no such file or folder']),
    'unknown extension': (['notes.txt', *M16], ['notes.txt', 'neither a video', '.mp4', '*_i3d.npy']),
    '--out-dir a file': (['clip_i3d.npy', *M16, '--out-dir', 'notes.txt'], ['--out-dir notes.txt', 'is a file']),
    '--out-dir that cannot be made': (['clip_i3d.npy', *M16, '--out-dir', '/proc/nope'],
                                      ['--out-dir /proc/nope: cannot be created in /proc']),
    '--features-dir a file': (['clip.mp4', *M, '--weights', WEIGHTS, '--features-dir', 'notes.txt'],
                              ['--features-dir notes.txt', 'is a file']),
    'folder without videos': (['empty', *M16], ['empty: no videos in it', '.mp4']),
    'features without the crop axis': (['flat_i3d.npy', *M16], ['flat_i3d.npy', '[40, 16]', 'crops']),
    'features of another size': (['narrow_i3d.npy', *M16], ['narrow_i3d.npy', '[40, 2, 8]', '16]']),
    'not an npy file': (['html_i3d.npy', *M16], ['html_i3d.npy', 'not a readable .npy']),
    'NaN features': (['nan_i3d.npy', *M16], ['nan_i3d.npy', 'NaN']),
    'missing checkpoint': (['clip_i3d.npy', '--ckpt', 'ghost.pth'], ['ghost.pth', 'checkpoint not found']),
    'not a checkpoint': (['clip_i3d.npy', '--ckpt', 'notes.txt'], ['notes.txt', 'not a readable PyTorch checkpoint']),
    "another model's weights": (['clip_i3d.npy', '--ckpt', 'other.pth'], ['other.pth', 'not a SelfAttention']),
    'damaged checkpoint': (['clip_i3d.npy', '--ckpt', 'damaged.pth'], ['damaged.pth', 'fc1.weight', '[32, 48]']),
    'video without --weights': (['clip.mp4', *M], ['clip.mp4', 'no features in features/videos', '--weights']),
    'video and a checkpoint of other features': (['clip.mp4', *M16], ['model16.pth', 'size 16', '2048']),
    'missing weights file': (['clip.mp4', *M, '--weights', 'ghost.pth'], ['--weights ghost.pth: no such file']),
    'missing weights file, unneeded': (['clip_i3d.npy', *M16, '--weights', 'ghost.pth'],
                                       ['--weights ghost.pth: no such file']),
    'too short video': (['short.mp4', *M, '--weights', WEIGHTS], ['short.mp4', '10 frames', 'fewer than the 16']),
    'undecodable video': (['broken.mp4', *M, '--weights', WEIGHTS], ['broken.mp4', 'cannot be decoded']),
    'a video to extract among bad ones, no --weights': (['mixed', *M], [
        'mixed/a.mp4 has no features in features/videos yet', '--weights']),
    '--half without CUDA': (['clip_i3d.npy', *M16, '--half'], ['--half', 'CUDA']),
    'features of another video': (['clip.mp4', *M, '--features-dir', 'stale'],
                                  ['stale/clip_i3d.npy', '5 snippets', '40 frames', 'make 2']),
    'threshold above 1': (['clip_i3d.npy', *M16, '--threshold', '1.5'], ['--threshold', '1.5']),
    'threshold NaN': (['clip_i3d.npy', *M16, '--threshold', 'nan'], ['--threshold', 'nan']),
    'negative threshold': (['clip_i3d.npy', *M16, '--threshold', '-0.1'], ['--threshold', '-0.1']),
    'zero split size': (['clip_i3d.npy', *M16, '--test-split-size', '0'], ['--test-split-size', '0']),
    'zero fps': (['clip_i3d.npy', *M16, '--fps', '0'], ['--fps', '0']),
    'zero batch size': (['clip_i3d.npy', *M16, '--batch-size', '0'], ['--batch-size', '0']),
    '--video-out on features': (['clip_i3d.npy', *M16, '--video-out'], ['--video-out', 'clip_i3d.npy']),
    'two inputs of one name': (['clip_i3d.npy', 'stale/clip_i3d.npy', *M16],
                               ['clip_i3d.npy and stale/clip_i3d.npy', 'both named clip']),
}


@pytest.mark.parametrize('case', CASES)
def test_bad_input_is_one_clear_error(tmp_path, monkeypatch, i3d_weights, case):
    monkeypatch.chdir(tmp_path)
    write_bad_inputs(tmp_path)
    arguments, words = CASES[case]
    arguments = [str(i3d_weights) if a == WEIGHTS else a for a in arguments]
    with pytest.raises(DataError) as error:
        main(build_parser().parse_args([*arguments, '--device', 'cpu']))
    for word in words:
        assert word in str(error.value), f'{word!r} not in {str(error.value)!r}'
    assert not os.path.exists('results') and not os.path.exists('features')  # nothing written


@pytest.mark.parametrize('name, message', [('ghost_i3d.npy', 'ghost_i3d.npy: no such file or folder'),
                                           ('nan_i3d.npy', 'nan_i3d.npy: the features hold NaN or Inf values')],
                         ids=['before any work', 'while scoring'])
def test_bad_input_ends_the_script_in_one_line(tmp_path, name, message):
    save_model(tmp_path / 'model.pth', feature_size=16)
    np.save(tmp_path / 'nan_i3d.npy', np.full((4, 2, 16), np.nan, np.float32))
    result = run_script('detect.py', name, '--ckpt', 'model.pth', cwd=tmp_path, check=False)
    assert result.returncode == 1
    assert result.stderr == f'detect.py: error: {message}\n'


def test_one_failed_input_leaves_the_others_done(tmp_path):
    save_model(tmp_path / 'model.pth', feature_size=16)
    for name, value in (('a', 1.0), ('b', np.nan), ('c', 2.0)):
        np.save(tmp_path / f'{name}_i3d.npy', np.full((4, 2, 16), value, np.float32))
    result = run_script('detect.py', 'a_i3d.npy', 'b_i3d.npy', 'c_i3d.npy', '--ckpt', 'model.pth',
                        '--test-split-size', 4, cwd=tmp_path, check=False)
    assert result.returncode == 1
    assert result.stderr.splitlines() == ['detect.py: error: b_i3d.npy: the features hold NaN or Inf values',
                                          'detect.py: error: 1 of 3 inputs failed (above); the others are done']
    assert sorted(os.listdir(tmp_path / 'results' / 'videos')) == [f'{name}.{ext}' for name in 'ac'
                                                                   for ext in ('csv', 'json', 'png')] + ['index.html']


# ---------------------------------------------------------------------------------------------- a video, end to end
def test_video_end_to_end_then_rescored_from_its_features(tmp_path, i3d_weights):
    encode_video(tmp_path / 'Clip.mp4', 40)  # 2 snippets and 8 frames more, 65 x 49 at 25 fps
    first = save_model(tmp_path / 'first.pth', feature_size=2048)
    result = run_script('detect.py', 'Clip.mp4', '--ckpt', 'first.pth', '--weights', i3d_weights, '--crops', 1,
                        '--test-split-size', 1, '--video-out', '--device', 'cpu', cwd=tmp_path)
    assert '(features extracted to features/videos/Clip_i3d.npy)' in result.stdout
    features = np.load(tmp_path / 'features' / 'videos' / 'Clip_i3d.npy')
    assert features.shape == (2, 1, 2048)
    expected = protocol_by_hand(first, features, 1, 40)
    assert expected[0] != expected[-1]  # each snippet its own chunk: the last 8 frames must take the second's

    out = tmp_path / 'results' / 'videos'
    assert sorted(os.listdir(out)) == ['Clip-scored.mp4', 'Clip.csv', 'Clip.json', 'Clip.png', 'index.html']
    frames, times, scores = read_csv(out / 'Clip.csv')
    assert frames == list(range(40)) and times == [f'{f / FPS:.4f}' for f in frames]
    np.testing.assert_array_equal(scores, expected)
    report = json.load(open(out / 'Clip.json'))
    assert {k: report[k] for k in ('video', 'features', 'fps', 'frames', 'snippets', 'crops')} == {
        'video': 'Clip.mp4', 'features': 'features/videos/Clip_i3d.npy', 'fps': FPS, 'frames': 40, 'snippets': 2,
        'crops': 1}
    assert_png(out / 'Clip.png')
    scored, original = decode(out / 'Clip-scored.mp4'), decode(tmp_path / 'Clip.mp4')
    assert len(scored) == 40 and scored[0].shape == (50 + 32, 66, 3)
    for i in (0, 17, 39):  # the video itself, frame for frame, above the strip
        distance = [np.abs(scored[i][:49, :65].astype(int) - frame).mean() for frame in original]
        assert np.argmin(distance) == i and distance[i] < 20

    # another checkpoint: the features are found again, without --weights, and not rewritten
    modified = os.stat(tmp_path / 'features' / 'videos' / 'Clip_i3d.npy').st_mtime_ns
    second = save_model(tmp_path / 'second.pth', feature_size=2048, da=4, r=3, seed=1)
    result = run_script('detect.py', 'Clip.mp4', '--ckpt', 'second.pth', '--test-split-size', 1, '--threshold', 0,
                        '--device', 'cpu', cwd=tmp_path)
    assert '(features found in features/videos/Clip_i3d.npy)' in result.stdout
    assert os.stat(tmp_path / 'features' / 'videos' / 'Clip_i3d.npy').st_mtime_ns == modified
    expected = protocol_by_hand(second, features, 1, 40)
    np.testing.assert_array_equal(read_csv(out / 'Clip.csv')[2], expected)
    assert json.load(open(out / 'Clip.json'))['events'] == [
        {'start_frame': 0, 'end_frame': 40, 'start_time': 0.0, 'end_time': 1.6, 'peak_score': float(expected.max())}]
    assert '\n  0.0 s - 1.6 s  peak' in result.stdout


def test_inputs_in_order_folders_expanded_and_repeats_dropped(tmp_path, monkeypatch):
    from detect import list_inputs
    monkeypatch.chdir(tmp_path)
    os.makedirs('videos/sub')
    for name in ('videos/b.mp4', 'videos/sub/a.MKV', 'videos/notes.txt', 'x_i3d.npy', 'list.txt'):
        open(name, 'w').close()
    assert list_inputs(['x_i3d.npy', 'videos', './videos/b.mp4', 'list.txt', 'x_i3d.npy']) == (
        [('x_i3d.npy', True), ('videos/b.mp4', False), ('videos/sub/a.MKV', False)],
        {'list.txt': f'list.txt: neither a video ({" ".join(VIDEO_EXTENSIONS)}) nor a *_i3d.npy feature file'})


def test_bad_inputs_are_named_up_front_and_the_others_scored(tmp_path):
    """Several inputs, four bad in four ways: one line each before any work (the 1 x 1 video's warning first),
    the good feature file and the good video (its features found) scored, a last line, exit status 1."""
    save_model(tmp_path / 'model.pth', feature_size=2048)
    np.save(tmp_path / 'good_i3d.npy', np.ones((4, 1, 2048), np.float32))
    np.save(tmp_path / 'narrow_i3d.npy', np.ones((4, 1, 8), np.float32))
    encode_video(tmp_path / 'dot.mp4', 20, width=1, height=1)
    os.makedirs(tmp_path / 'features' / 'videos')
    np.save(tmp_path / 'features' / 'videos' / 'dot_i3d.npy', np.ones((1, 1, 2048), np.float32))
    encode_video(tmp_path / 'tiny.mp4', 10)
    (tmp_path / 'broken.mp4').write_bytes(b'\x00\x00\x00\x18ftypmp42' + bytes(100))
    (tmp_path / 'notes.txt').write_text('not a video')
    result = run_script('detect.py', 'good_i3d.npy', 'tiny.mp4', 'notes.txt', 'dot.mp4', 'broken.mp4',
                        'narrow_i3d.npy', '--ckpt', 'model.pth', '--test-split-size', 1, cwd=tmp_path, check=False)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "detect.py: warning: dot.mp4: 1 x 1 pixels, smaller than the network's 224 x 224 crop: its frames are "
        'enlarged to 340 x 256, and the scores of so few pixels may mean little',
        f'detect.py: error: notes.txt: neither a video ({" ".join(VIDEO_EXTENSIONS)}) nor a *_i3d.npy feature file',
        'detect.py: error: tiny.mp4: 10 frames, fewer than the 16 of one snippet',
        'detect.py: error: broken.mp4: cannot be decoded (Invalid data found when processing input)',
        'detect.py: error: narrow_i3d.npy: expected float32 features [T>0, crops, 2048] (pooled: [crops, T, 2048]) '
        '(float16 and float64 are converted), found float32 [4, 1, 8]',
        'detect.py: error: 4 of 6 inputs failed (above); the others are done']
    assert sorted(os.listdir(tmp_path / 'results' / 'videos')) == [
        f'{name}.{ext}' for name in ('dot', 'good') for ext in ('csv', 'json', 'png')] + ['index.html']
