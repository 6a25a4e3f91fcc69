"""calibrate.py: the threshold is the lowest at which normal footage, and every higher threshold, gives at most the
rate asked (counted here independently, frame by frame, on scores computed here from the features); the scores
are live.py's windows; and on footage of the same scene with an event, the threshold finds the event and nothing
else (detect.py on it, whose chunks are live.py's windows with hop = window)."""
import json

import av
import numpy as np
import pytest
import torch

import detect
from calibrate import fit_threshold
from conftest import run_script
from dataset import DataError
from i3d import load_i3d
from model import VideoClassifier, save_checkpoint
from test_detect import i3d_weights, save_model  # noqa: F401 (i3d_weights: a fixture)
from video import VIDEO_EXTENSIONS, extract_video

FPS = 25


@torch.no_grad()
def windows_by_hand(model, features, window, hop):
    """Each snippet's score, as live.py gives them: every hop snippets (and what is left at the end), the model on
    each crop of the last `window` snippets (hop = window: the hop snippets' own chunk), the mean over crops."""
    x, scores = torch.from_numpy(features), np.empty(len(features), np.float32)
    model.eval()
    ends = list(range(hop, len(x) + 1, hop)) + ([len(x)] if len(x) % hop else [])
    for previous, end in zip([0] + ends, ends):
        chunk = x[previous:end] if hop == window else x[max(0, end - window):end]
        scores[previous:end] = torch.stack([model(chunk[:, crop][None])[0] for crop in range(x.shape[1])]).mean()
    return scores


def count_events(scores, threshold):
    """Runs of frames scored >= threshold, counted one frame at a time."""
    count, inside = 0, False
    for score in scores.tolist():
        count += score >= threshold and not inside
        inside = score >= threshold
    return count


def check_fit(streams, allowed, threshold):
    """threshold and every higher one give at most `allowed` events; the float32 below it gives more (or it is 0)."""
    for t in [threshold] + sorted({float(s) for scores in streams for s in scores if s >= threshold}):
        assert sum(count_events(scores, np.float32(t)) for scores in streams) <= allowed, t
    below = np.nextafter(np.float32(threshold), np.float32(-1))
    assert threshold == 0 or sum(count_events(scores, below) for scores in streams) > allowed


@pytest.mark.parametrize('scores, allowed, expected', [
    # one event at 0.5, two at 0.6 (the peaks 0.9 and 0.8), one at 0.85: one allowed needs above 0.8
    ([[0.2, 0.9, 0.5, 0.8, 0.2]], 1, np.nextafter(np.float32(0.8), np.float32(1))),
    ([[0.2, 0.9, 0.5, 0.8, 0.2]], 2, 0.0),                      # never more than two events
    ([[0.2, 0.9, 0.5, 0.8, 0.2]], 0.5, np.nextafter(np.float32(0.9), np.float32(1))),  # none: above the highest
    ([[0.3, 0.7], [0.7, 0.3], [0.6]], 2, np.nextafter(np.float32(0.6), np.float32(1))),  # a stream's start starts one
    ([[0.5, 1.0]], 0, None),                                    # no threshold up to 1 keeps 1.0 out
], ids=['split by a higher threshold', 'all allowed', 'none allowed', 'streams apart', 'impossible'])
def test_fit_threshold(scores, allowed, expected):
    streams = [np.array(s, np.float32) for s in scores]
    threshold = fit_threshold(streams, allowed)
    assert threshold == (None if expected is None else float(expected))
    if threshold is not None:
        check_fit(streams, allowed, threshold)


def test_fit_threshold_on_random_scores():
    rng = np.random.default_rng(0)
    for allowed in (0, 1, 3, 10, 40):
        streams = [rng.choice(np.float32([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]), rng.integers(1, 60)) for _ in range(4)]
        check_fit(streams, allowed, fit_threshold(streams, allowed))


def test_normal_footage_as_feature_files_gets_at_most_the_rate(tmp_path):
    """Three feature files of a stationary scene, 16 frames a second (a snippet a second), windows of 4 every
    snippet: 0.25 h and 20 events an hour allow 5 events."""
    model = save_model(tmp_path / 'model.pth', feature_size=16, seed=3)
    rng = np.random.default_rng(5)
    snippet_scores = []
    for name in ('a', 'b', 'c'):
        features = rng.standard_normal((300, 1, 16), dtype=np.float32)
        np.save(tmp_path / f'{name}_i3d.npy', features)
        snippet_scores.append(windows_by_hand(model, features, 4, 1))
    streams = [np.repeat(scores, 16) for scores in snippet_scores]  # 16 frames a snippet
    result = run_script('calibrate.py', 'a_i3d.npy', 'b_i3d.npy', 'c_i3d.npy', '--ckpt', 'model.pth', '--hop', 1,
                        '--test-split-size', 4, '--fps', 16, '--false-alarms-per-hour', 20, '--out', 'cam.json',
                        '--device', 'cpu', cwd=tmp_path)
    assert result.stderr == ''  # no warning: 0.25 h is more than 1 / 20 h
    report = json.load(open(tmp_path / 'cam.json'))
    check_fit(snippet_scores, 5, report['threshold'])  # a snippet's 16 frames: the same runs, 16 times as long
    scores = np.concatenate(streams)
    events = sum(count_events(s, np.float32(report['threshold'])) for s in snippet_scores)
    assert {k: v for k, v in report.items() if k not in ('threshold', 'quantiles', 'inputs')} == {
        'false_alarms_per_hour': 20, 'events': events, 'events_per_hour': events / 0.25, 'hours': 0.25,
        'frames': 3 * 300 * 16, 'events_at_0.5': sum(count_events(s, 0.5) for s in snippet_scores),
        'checkpoint': 'model.pth', 'test_split_size': 4, 'hop': 1}
    assert report['quantiles'] == dict(zip(['50%', '90%', '99%', '99.9%', 'max'],
                                           np.quantile(scores, [0.5, 0.9, 0.99, 0.999, 1]).tolist()))
    assert report['inputs'][1] == {'path': 'b_i3d.npy', 'frames': 4800, 'fps': 16, 'snippets': 300, 'crops': 1,
                                   'max_score': float(streams[1].max())}
    assert f"threshold {report['threshold']!r}: {events} events" in result.stdout
    assert f"live.py --threshold {report['threshold']!r}" in result.stdout


# ---------------------------------------------------------------------------------------------- video
def scene(i):
    """Frame i of the normal scene: coloured 8-pixel blocks moving 2 pixels a frame, 64 x 48."""
    blocks = np.random.default_rng(0).integers(0, 256, (6, 40, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    return np.ascontiguousarray(np.roll(blocks, 2 * i, axis=1)[:, :64])


def incident(i):
    """Frame i of the event: large flashing blocks of other colours."""
    blocks = np.random.default_rng(1 + i % 2).integers(0, 256, (3, 4, 3), dtype=np.uint8).repeat(16, 0).repeat(16, 1)
    return np.ascontiguousarray(blocks)


def encode_lossless(path, frames):
    """H.264 with qp 0 in 4:4:4: the same picture decodes the same in every file."""
    with av.open(str(path), 'w') as container:
        stream = container.add_stream('libx264', rate=FPS, options={'qp': '0'})
        stream.width, stream.height, stream.pix_fmt = 64, 48, 'yuv444p'
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format='rgb24')))
        container.mux(stream.encode(None))


def decode(path):
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format='rgb24') for frame in container.decode(video=0)])


def standing_out(normal, event):
    """A da=1, r=1 model with even attention whose score is a logistic of the window's mean feature along the
    direction from the normal snippets' mean to the event snippets': about 0.02 for normal windows, 0.98 for the
    event's."""
    model = VideoClassifier(2048, 1, 1)
    direction = torch.from_numpy(event.mean(0) - normal.mean(0))
    low, high = (torch.from_numpy(x.mean(0)) @ direction for x in (normal, event))
    scale = 8 / (high - low)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        model.fc1.weight[0] = scale * direction
        model.fc1.bias[0] = -scale * (low + high) / 2
        model.fc2.weight[0, 0] = 1
    return model.eval()


def test_video_threshold_finds_the_event_where_it_stands_out(tmp_path, monkeypatch, capsys, i3d_weights):  # noqa: F811
    """normal.mp4: 2 snippets of the scene; with-event.mp4: the same 2, 1 of an incident, the scene's first again.
    Windows of 1 snippet. calibrate.py on normal.mp4 (1.28 s: no event allowed) puts the threshold just above its
    highest score; detect.py at that threshold finds the incident, frames 32 to 48, and nothing else."""
    from calibrate import build_parser, main
    monkeypatch.chdir(tmp_path)
    encode_lossless('normal.mp4', [scene(i) for i in range(32)])
    encode_lossless('with-event.mp4', [scene(i) for i in range(32)] + [incident(i) for i in range(16)]
                    + [scene(i) for i in range(16)])
    assert np.array_equal(decode('with-event.mp4')[:32], decode('normal.mp4'))
    features, frames, fps = extract_video('with-event.mp4', load_i3d(str(i3d_weights), 'cpu'), 1, 1, progress=False)
    assert features.shape == (4, 1, 2048) and frames == 64 and fps == FPS
    (tmp_path / 'features').mkdir()
    np.save('features/with-event_i3d.npy', features)
    model = standing_out(features[[0, 1, 3], 0], features[[2], 0])
    save_checkpoint(model, 'model.pth')

    main(build_parser().parse_args(['normal.mp4', '--ckpt', 'model.pth', '--weights', str(i3d_weights), '--crops',
                                    '1', '--batch-size', '1', '--test-split-size', '1', '--device', 'cpu', '--out',
                                    'normal.json']))
    normal = np.repeat(windows_by_hand(model, features[:2], 1, 1), 16)  # the same frames: the same features
    assert capsys.readouterr().err.splitlines() == [
        "calibrate.py: warning: normal.mp4: 64 x 48 pixels, smaller than the network's 224 x 224 crop: its frames "
        'are enlarged to 340 x 256, and the scores of so few pixels may mean little',
        'calibrate.py: warning: the footage covers 0.000356 h, less than the 10 h in which 0.1 events an hour is one '
        'event: it allows none, and the threshold is just above its highest score; more hours of the normal scene '
        'give a surer threshold']
    report = json.load(open('normal.json'))
    assert report['threshold'] == float(np.nextafter(normal.max(), np.float32(1)))
    assert report['quantiles']['max'] == float(normal.max()) and report['events'] == 0
    assert report['inputs'] == [{'path': 'normal.mp4', 'frames': 32, 'fps': FPS, 'snippets': 2, 'crops': 1,
                                 'max_score': float(normal.max())}]
    check_fit([normal], 0, report['threshold'])

    detect.main(detect.build_parser().parse_args([
        'with-event.mp4', '--ckpt', 'model.pth', '--features-dir', 'features', '--test-split-size', '1',
        '--threshold', repr(report['threshold']), '--no-page', '--device', 'cpu']))
    events = json.load(open('results/videos/with-event.json'))['events']
    assert [(e['start_frame'], e['end_frame']) for e in events] == [(32, 48)]
    assert events[0]['peak_score'] > 0.9 > 0.1 > normal.max()


# ---------------------------------------------------------------------------------------------- bad input
CASES = {  # id: (arguments, the message)
    'hop above the window': (['a_i3d.npy', '--hop', '5', '--test-split-size', '4'],
                             '--hop must be from 1 to the window (--test-split-size 4), got 5'),
    'rate zero': (['a_i3d.npy', '--false-alarms-per-hour', '0'],
                  '--false-alarms-per-hour must be a positive number of events an hour, got 0.0'),
    '--out a folder': (['a_i3d.npy', '--out', 'sub'], "--out sub: a folder; give the JSON file's name"),
    '--out where nothing can be made': (['a_i3d.npy', '--out', '/proc/nope/cam.json'],
                                        '--out /proc/nope: cannot be created in /proc (No such file or directory)'),
    'one bad input': (['a_i3d.npy', 'notes.txt'],
                      f'notes.txt: neither a video ({" ".join(VIDEO_EXTENSIONS)}) nor a *_i3d.npy feature file'),
    'two bad inputs': (['a_i3d.npy', 'broken.mp4', 'narrow_i3d.npy'],
                       '2 of 3 inputs cannot be used (above): nothing is calibrated'),
    'a video without --weights': (['a_i3d.npy', 'clip.mp4'],
                                  'clip.mp4: scoring a video needs --weights i3d_r50_kinetics.pth (where it comes '
                                  'from: README.md, "Your own videos")'),
}


@pytest.mark.parametrize('case', CASES)
def test_bad_input_is_one_clear_error_before_any_work(tmp_path, monkeypatch, capsys, case):
    from calibrate import build_parser, main
    monkeypatch.chdir(tmp_path)
    save_model('model.pth', feature_size=2048)
    np.save('a_i3d.npy', np.ones((4, 1, 2048), np.float32))
    np.save('narrow_i3d.npy', np.ones((4, 1, 8), np.float32))
    open('notes.txt', 'w').write('not a video')
    open('broken.mp4', 'wb').write(b'\x00\x00\x00\x18ftypmp42' + bytes(100))
    encode_lossless('clip.mp4', [scene(i) for i in range(16)])
    (tmp_path / 'sub').mkdir()
    arguments, message = CASES[case]
    with pytest.raises(DataError) as error:
        main(build_parser().parse_args([*arguments, '--ckpt', 'model.pth', '--device', 'cpu']))
    assert str(error.value) == message
    if case == 'two bad inputs':  # each named on its line first
        assert capsys.readouterr().err.splitlines() == [
            'calibrate.py: error: broken.mp4: cannot be decoded (Invalid data found when processing input)',
            'calibrate.py: error: narrow_i3d.npy: expected float32 features [T>0, crops, 2048] (pooled: [crops, T, '
            '2048]) (float16 and float64 are converted), found float32 [4, 1, 8]']
    assert not (tmp_path / 'results').exists()
