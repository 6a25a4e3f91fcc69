"""live.py: a stream's scores are the test protocol's on its causal windows, computed independently from the
features it saves; through a pipe they are detect.py's and its features extract_features.py's; dropping,
gaps, a cut, garbled bytes, a TCP source that breaks and comes back, SIGTERM, clips and every bad input.

The streams are MPEG-TS files the tests encode, fed through a pipe or a TCP server on 127.0.0.1; the I3D
weights are random in the real key layout (test_detect's fixture); every run has a time limit."""
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import av
import numpy as np
import pytest
import torch

from conftest import REPO, run_script
from camera import State
from dataset import DataError
from live import Scorer, build_parser, main
from results import utc_seconds
from windows import Windows
from stream import Snippet, SnippetReader, open_source
from test_alerts import Subscriber, broker, mosquitto  # noqa: F401 (broker, mosquitto: fixtures)
from test_detect import i3d_weights, save_model  # noqa: F401 (i3d_weights: a fixture)

FPS = 25
WINDOW = 2
SNIPPETS = 6  # cam.ts: 6 snippets and 5 frames more, 3 chunks of WINDOW
LIMIT = 300  # seconds any one run may take


def encode_ts(path, n_frames, fps=FPS, width=64, height=48, seed=0, gop=8):
    """MPEG-TS H.264 of moving random blocks whose pattern changes every 40 frames (so that windows score apart),
    a keyframe every gop frames."""
    rng = np.random.default_rng(seed)
    patterns = rng.integers(0, 256, (n_frames // 40 + 1, height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    with av.open(str(path), 'w', format='mpegts') as container:
        stream = container.add_stream('libx264', rate=fps, options={'g': str(gop)})
        stream.width, stream.height, stream.pix_fmt = width, height, 'yuv420p'
        for i in range(n_frames):
            picture = np.roll(patterns[i // 40].repeat(8, 0).repeat(8, 1)[:height, :width], 2 * i, axis=1)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(picture), format='rgb24')))
        container.mux(stream.encode(None))
    return path


def live(root, source, *flags, stdin=None, check=True):
    """live.py on source (1 crop, batches of 1 snippet, windows of WINDOW) in root; (returncode, JSON lines, stderr)."""
    result = subprocess.run([sys.executable, os.path.join(REPO, 'live.py'), str(source), '--ckpt', 'model.pth',
                             '--weights', 'weights.pth', '--crops', '1', '--batch-size', '1', '--test-split-size',
                             str(WINDOW), '--device', 'cpu', *map(str, flags)],
                            cwd=root, stdin=stdin, capture_output=True, text=True, timeout=LIMIT)
    if check and result.returncode != 0:
        raise AssertionError(result.stderr)
    return result.returncode, [json.loads(line) for line in result.stdout.splitlines()], result.stderr


class Arrivals(io.StringIO):
    """Standard output that notes the time.time() at which each line was written."""

    def __init__(self):
        super().__init__()
        self.arrivals = []

    def write(self, text):
        self.arrivals.extend([time.time()] * text.count('\n'))
        return super().write(text)


def live_here(root, source, *flags, out=None):
    """live.py's main in this process, as live() runs it (no interpreter to start): (status, JSON lines, log);
    out: its standard output (an Arrivals), or None."""
    from contextlib import redirect_stderr, redirect_stdout
    out, err, status = out or io.StringIO(), io.StringIO(), 0
    arguments = [str(source), '--ckpt', 'model.pth', '--weights', 'weights.pth', '--crops', '1', '--batch-size', '1',
                 '--test-split-size', str(WINDOW), '--device', 'cpu', *map(str, flags)]
    here = os.getcwd()
    os.chdir(root)
    try:
        with redirect_stdout(out), redirect_stderr(err):
            main(build_parser().parse_args(arguments))
    except DataError as e:
        status = 1
        err.write(f'live.py: error: {e}\n')
    finally:
        os.chdir(here)
    return status, [json.loads(line) for line in out.getvalue().splitlines()], err.getvalue()


@torch.no_grad()
def causal_scores(model, features, window, hop):
    """Independently: [(first snippet, n, score)]: every hop snippets (and the rest at the end), the model on each
    crop of the last `window` snippets (hop = window: the chunk of the hop snippets), the mean over crops."""
    x, out = torch.from_numpy(features), []
    for end in list(range(hop, len(x) + 1, hop)) + ([len(x)] if len(x) % hop else []):
        first = end - hop if end % hop == 0 else end - len(x) % hop
        chunk = x[first:end] if hop == window else x[max(0, end - window):end]
        score = torch.stack([model(chunk[:, crop][None])[0] for crop in range(x.shape[1])]).mean()
        out.append((first, end - first, np.float32(score.item())))
    return out


def read_csv(path):
    """(frames, times, float32 scores: NaN where the row's score is empty) of a CSV of live.py or detect.py."""
    lines = open(path).read().splitlines()
    assert lines[0] == 'frame,time,score'
    rows = [line.split(',') for line in lines[1:]]
    return [int(r[0]) for r in rows], [r[1] for r in rows], np.array([r[2] or 'nan' for r in rows], np.float32)


def frames_of(lines, kind):
    return [line for line in lines if line['type'] == kind]


@pytest.fixture(scope='session')
def stream_set(tmp_path_factory, i3d_weights):  # noqa: F811
    """A folder with weights.pth, model.pth, cam.ts (SNIPPETS snippets and 5 frames), extract_features.py's features of
    it, a threshold between its chunk scores, and live.py's run on it through a pipe (hop = window, clips with a
    pre-roll of 1 s)."""
    root = tmp_path_factory.mktemp('live')
    os.symlink(i3d_weights, root / 'weights.pth')
    model = save_model(root / 'model.pth', feature_size=2048)
    encode_ts(root / 'cam.ts', 16 * SNIPPETS + 5)
    run_script('extract_features.py', 'cam.ts', '--weights', 'weights.pth', '--crops', 1, '--batch-size', 1,
               '--out-dir', 'extracted', '--device', 'cpu', cwd=root)
    extracted = np.load(root / 'extracted' / 'cam_i3d.npy')
    chunk_scores = sorted({score for _, _, score in causal_scores(model, extracted, WINDOW, WINDOW)})
    threshold = float(chunk_scores[len(chunk_scores) // 2])  # some chunks below, some at or above
    with open(root / 'cam.ts', 'rb') as pipe:
        piped = live(root, '-', '--name', 'cam', '--threshold', repr(threshold), '--clips', '--pre-roll', 1,
                     stdin=pipe)
    return root, model, extracted, threshold, piped


# ---------------------------------------------------------------------------------------------- the protocol
def test_pipe_with_hop_equal_to_window_is_detect_and_extract_features(stream_set):
    root, model, extracted, threshold, (_, lines, _) = stream_set
    out = root / 'results' / 'live'
    # batches of one snippet in both: the very same float32 computation (other batch sizes: float32 noise, README)
    np.testing.assert_array_equal(np.load(out / 'cam_i3d.npy'), extracted)
    run_script('detect.py', 'cam.ts', '--ckpt', 'model.pth', '--features-dir', 'extracted', '--test-split-size',
               WINDOW, '--threshold', repr(threshold), '--out-dir', 'detected', '--device', 'cpu', cwd=root)
    assert (out / 'cam.csv').read_text() == (root / 'detected' / 'cam.csv').read_text()
    report, detected = json.load(open(out / 'cam.json')), json.load(open(root / 'detected' / 'cam.json'))
    assert report['events'] and [{k: e[k] for k in detected['events'][0]} for e in report['events']] == \
        detected['events']
    assert {k: report[k] for k in ('fps', 'frames', 'snippets', 'crops', 'max_score')} == \
        {k: detected[k] for k in ('fps', 'frames', 'snippets', 'crops', 'max_score')}
    assert report['ended'] is True and report['dropped_frames'] == 0 and report['hop'] == WINDOW
    # the lines: a score per chunk, as soon as its last snippet is, events as detect's, the end
    expected = causal_scores(model, extracted, WINDOW, WINDOW)
    assert [(s['start_frame'], s['end_frame'], s['score']) for s in frames_of(lines, 'score')] == \
        [(16 * first, 16 * (first + n), float(score)) for first, n, score in expected]
    ends = frames_of(lines, 'event_end')
    assert [{k: e[k] for k in detected['events'][0]} for e in ends] == detected['events']
    assert [e['frame'] for e in frames_of(lines, 'event_start')] == [e['start_frame'] for e in ends]
    assert lines[-1] == {'type': 'end', 'frames': 16 * SNIPPETS + 5, 'snippets': SNIPPETS, 'dropped_frames': 0,
                         'realtime_factor': lines[-1]['realtime_factor'], 'reason': 'end of stream',
                         'start_utc': lines[0]['start_utc'], 'end_utc': lines[-1]['end_utc']}
    assert all(s['latency'] >= 0 for s in frames_of(lines, 'score'))


def test_hop_below_window_scores_each_causal_window_once(stream_set):
    root, model, extracted, threshold, _ = stream_set
    _, lines, _ = live_here(root, 'cam.ts', '--hop', 1, '--threshold', repr(threshold), '--name', 'hop1')
    out = root / 'results' / 'live'
    np.testing.assert_array_equal(np.load(out / 'hop1_i3d.npy'), extracted)
    expected = causal_scores(model, extracted, WINDOW, 1)  # a window ends at every snippet
    scores = frames_of(lines, 'score')
    assert [(s['start_frame'], s['end_frame'], s['score']) for s in scores] == \
        [(16 * first, 16 * (first + n), float(score)) for first, n, score in expected]
    # never revised: each frame is in one score line and one CSV row, in order; the 5 last carry the last score
    frames, _, csv_scores = read_csv(out / 'hop1.csv')
    assert frames == list(range(16 * SNIPPETS + 5))
    by_hand = np.concatenate([[score] * 16 * n for _, n, score in expected] + [[expected[-1][2]] * 5])
    np.testing.assert_array_equal(csv_scores, by_hand.astype(np.float32))


def test_windows_restart_after_a_gap():
    torch.manual_seed(0)
    from model import VideoClassifier
    model = VideoClassifier(4, 3, 2).eval()
    x = torch.rand(5, 2, 4)
    windows = Windows(model, 3, 1)
    for row in x[:3]:
        windows.add(row)
        windows.score()
    windows.restart()
    assert windows.add(x[3])
    score, n = windows.score()
    expected = torch.stack([model(x[3:4, crop][None])[0] for crop in range(2)]).mean()
    assert n == 1 and score == np.float32(expected.item())


# ---------------------------------------------------------------------------------------------- keeping up
def test_a_live_queue_holds_at_most_max_lag_and_gaps_are_exactly_the_dropped_snippets(tmp_path):
    """Nothing takes the snippets until the stream ends: the queue holds max_lag seconds, the rest are gaps."""
    encode_ts(tmp_path / 'long.ts', 16 * 20 + 7, fps=32)
    container, stream = open_source(str(tmp_path / 'long.ts'))
    reader = SnippetReader(str(tmp_path / 'long.ts'), None, container, stream, 32, live=True, max_lag=1.5)
    reader.thread.join(LIMIT)
    held = [item for item in reader.items if isinstance(item, Snippet)]
    assert [s.index for s in held] == [17, 18, 19]  # 1.5 s at 32 fps: 3 snippets of 16 frames
    (gap,) = list(reader.items)[:-len(held) - 1]
    assert gap[:3] == (0, 16 * 17, 'behind') and gap.start_clock < gap.end_clock
    assert reader.items[-1].frames == 16 * 20 + 7 and reader.items[-1].reason == 'end of stream'


def test_slow_network_drops_whole_snippets_marked_by_gaps_and_empty_rows(stream_set, tmp_path):
    """200 fps in real time: a snippet every 0.08 s, far faster than the network takes them."""
    root, model, *_ = stream_set
    encode_ts(tmp_path / 'fast.ts', 16 * 16, fps=200)
    _, lines, log = live_here(root, tmp_path / 'fast.ts', '--realtime', '--max-lag', '0.1', '--hop', 1,
                         '--name', 'fast', '--threshold', 1)
    gaps, scores = frames_of(lines, 'gap'), frames_of(lines, 'score')
    assert gaps and all(g['reason'] == 'behind' and g['start_frame'] % 16 == 0 == g['end_frame'] % 16 for g in gaps)
    assert 'behind real time' in log
    out = root / 'results' / 'live'
    frames, _, csv_scores = read_csv(out / 'fast.csv')
    assert frames == list(range(16 * 16))
    dropped = np.zeros(16 * 16, bool)
    for g in gaps:
        dropped[g['start_frame']:g['end_frame']] = True
    np.testing.assert_array_equal(np.isnan(csv_scores), dropped)
    assert lines[-1]['dropped_frames'] == dropped.sum() == json.load(open(out / 'fast.json'))['dropped_frames']
    # the snippets kept are scored as the causal windows of their runs between gaps, on the saved features
    features, kept = np.load(out / 'fast_i3d.npy'), np.flatnonzero(~dropped[::16])
    assert len(features) == len(kept) == lines[-1]['snippets']
    runs = np.split(np.arange(len(kept)), np.flatnonzero(np.diff(kept) > 1) + 1)
    expected = [(kept[run[0] + first], n, score) for run in runs
                for first, n, score in causal_scores(model, features[run], WINDOW, 1)]
    assert [(s['start_frame'], s['end_frame'], s['score']) for s in scores] == \
        [(16 * first, 16 * (first + n), float(score)) for first, n, score in expected]


# ---------------------------------------------------------------------------------------------- faults
def test_a_stream_cut_mid_snippet_and_garbled_bytes_end_cleanly(stream_set, tmp_path):
    root = stream_set[0]
    data = (root / 'cam.ts').read_bytes()
    cut = data[:len(data) * 2 // 3 // 188 * 188 + 100]  # in the middle of a TS packet
    garbled = bytearray(data)
    garbled[len(data) // 2:len(data) // 2 + 400] = np.random.default_rng(0).integers(0, 256, 400, np.uint8).tobytes()
    for name, content in (('cut', cut), ('garbled', bytes(garbled))):
        (tmp_path / f'{name}.ts').write_bytes(content)
        if name == 'cut':  # through a pipe that closes mid-snippet
            with open(tmp_path / f'{name}.ts', 'rb') as pipe:
                _, lines, _ = live(root, '-', '--name', name, stdin=pipe)
        else:
            _, lines, _ = live_here(root, tmp_path / f'{name}.ts', '--name', name)
        end = lines[-1]
        assert end['type'] == 'end' and end['reason'] == 'end of stream' and end['dropped_frames'] == 0, name
        assert 32 < end['frames'] <= 16 * SNIPPETS + 5 and end['snippets'] == end['frames'] // 16, (name, end)
        frames, _, scores = read_csv(root / 'results' / 'live' / f'{name}.csv')
        assert frames == list(range(end['frames'])) and not np.isnan(scores).any(), name
        assert np.load(root / 'results' / 'live' / f'{name}_i3d.npy').shape == (end['snippets'], 1, 2048), name


class Server:
    """A TCP server on 127.0.0.1 that sends each connection the next of its payloads and closes it; when they are
    sent, it closes, and further connections are refused."""

    def __init__(self, payloads):
        self.payloads = payloads
        self.socket = socket.create_server(('127.0.0.1', 0))
        self.socket.settimeout(LIMIT)
        self.url = f'tcp://127.0.0.1:{self.socket.getsockname()[1]}'
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        for payload in self.payloads:
            connection, _ = self.socket.accept()
            connection.sendall(payload)
            connection.close()
        self.socket.close()


def test_tcp_source_that_breaks_without_reconnect_ends_with_status_1_and_everything_written(stream_set):
    root = stream_set[0]
    data = (root / 'cam.ts').read_bytes()
    server = Server([data[:len(data) // 2 // 188 * 188]])
    status, lines, log = live_here(root, server.url, '--name', 'tcp')
    assert status == 1
    assert log.splitlines()[-1] == f'live.py: error: {server.url}: the stream ended (no --reconnect); ' \
                                   'everything scored is written'
    report = json.load(open(root / 'results' / 'live' / 'tcp.json'))
    assert report['ended'] and report['frames'] == lines[-1]['frames'] > 16
    assert np.load(root / 'results' / 'live' / 'tcp_i3d.npy').shape == (lines[-1]['snippets'], 1, 2048)
    assert read_csv(root / 'results' / 'live' / 'tcp.csv')[0] == list(range(report['frames']))


def test_tcp_source_that_comes_back_is_reconnected_after_one_gap(stream_set):
    """The first connection breaks off mid-stream, the second sends the whole stream, then none is accepted."""
    root = stream_set[0]
    data = (root / 'cam.ts').read_bytes()
    server = Server([data[:len(data) // 2 // 188 * 188], data])
    status, lines, log = live_here(root, server.url, '--reconnect', 1, '--name', 'back')
    assert status == 1 and log.splitlines()[-1] == \
        f'live.py: error: {server.url}: the stream ended and 1 try to reopen it; everything scored is written'
    (gap,) = frames_of(lines, 'gap')
    assert gap['reason'] == 'reconnected after: the stream ended'
    assert gap['start_frame'] % 16 == 0 == gap['end_frame'] % 16 and gap['start_frame'] < 16 * 4
    frames, _, scores = read_csv(root / 'results' / 'live' / 'back.csv')
    assert frames == list(range(gap['end_frame'] + 16 * SNIPPETS + 5))  # the second stream whole, after the gap
    assert np.isnan(scores[gap['start_frame']:gap['end_frame']]).all()
    assert not np.isnan(scores[:gap['start_frame']]).any() and not np.isnan(scores[gap['end_frame']:]).any()
    # after the gap the windows start afresh: the second stream's scores are the first run's
    first_run = read_csv(root / 'results' / 'live' / 'cam.csv')[2]
    np.testing.assert_array_equal(scores[gap['end_frame']:], first_run)


def test_sigterm_mid_stream_leaves_valid_outputs(stream_set):
    root = stream_set[0]
    data = (root / 'cam.ts').read_bytes()
    process = subprocess.Popen([sys.executable, os.path.join(REPO, 'live.py'), '-', '--ckpt', 'model.pth',
                                '--weights', 'weights.pth', '--crops', '1', '--batch-size', '1', '--test-split-size',
                                '1', '--device', 'cpu', '--name', 'term'],
                               cwd=root, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        process.stdin.write(data[:len(data) // 2])  # half the stream, and the pipe stays open
        process.stdin.flush()
        first = json.loads(process.stdout.readline())
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=LIMIT)
    finally:
        process.kill()
    lines = [first] + [json.loads(line) for line in out.splitlines()]
    assert process.returncode == 0 and lines[-1]['type'] == 'end' and lines[-1]['reason'] == 'stopped'
    out_dir = root / 'results' / 'live'
    report = json.load(open(out_dir / 'term.json'))
    assert report['ended'] and report['frames'] == lines[-1]['frames'] >= 16
    features = np.load(out_dir / 'term_i3d.npy')
    assert features.shape == (lines[-1]['snippets'], 1, 2048) and np.isfinite(features).all()
    frames, _, scores = read_csv(out_dir / 'term.csv')
    assert frames == list(range(report['frames'])) and not np.isnan(scores).any()
    assert not os.path.exists(out_dir / 'term_i3d.npy.part')


# ---------------------------------------------------------------------------------------------- clips
def test_clips_cover_the_pre_roll_and_the_event(stream_set):
    root, *_, (_, lines, _) = stream_set
    ends = frames_of(lines, 'event_end')
    assert ends and len(os.listdir(root / 'results' / 'live' / 'clips')) == len(ends)
    with av.open(str(root / 'cam.ts')) as container:
        source = [(frame.key_frame, frame.to_ndarray(format='rgb24')) for frame in container.decode(video=0)]
    for event in ends:
        assert event['clip'] == f'results/live/clips/cam-{event["start_frame"] / FPS:.2f}s.mp4'
        with av.open(str(root / event['clip'])) as container:
            clip = [frame.to_ndarray(format='rgb24') for frame in container.decode(video=0)]
        pre_roll_start = max(0, event['start_frame'] - FPS)
        first = max(i for i in range(pre_roll_start + 1) if source[i][0])  # the keyframe at or before it
        assert len(clip) == event['end_frame'] - first
        for i in (0, len(clip) - 1):  # copied, not re-encoded: the same pictures
            np.testing.assert_array_equal(clip[i], source[first + i][1])


# ---------------------------------------------------------------------------------------------- bad input
CASES = {  # id: (arguments, words the message must hold)
    'hop above the window': (['cam.ts', '--hop', '4', '--test-split-size', '3'], ['--hop', '4']),
    'hop zero': (['cam.ts', '--hop', '0'], ['--hop', '0']),
    'max lag zero': (['cam.ts', '--max-lag', '0'], ['--max-lag', '0']),
    'negative pre-roll': (['cam.ts', '--pre-roll', '-1'], ['--pre-roll', '-1']),
    'missing checkpoint': (['cam.ts', '--ckpt', 'ghost.pth'], ['ghost.pth', 'checkpoint not found']),
    'foreign checkpoint': (['cam.ts', '--ckpt', 'other.pth'], ['other.pth', 'not a SelfAttention']),
    'missing weights': (['cam.ts', '--weights', 'ghost.pth'], ['ghost.pth', 'no such file']),
    'foreign weights': (['cam.ts', '--weights', 'other.pth'], ['other.pth', 'not the weights of the I3D']),
    'missing source': (['ghost.ts'], ['ghost.ts', 'cannot be opened']),
    'not a video': (['notes.txt'], ['notes.txt', 'cannot be opened']),
    'no video stream': (['sound.wav'], ['sound.wav', 'no video stream']),
    'refused connection': (['tcp://127.0.0.1:PORT'], ['tcp://127.0.0.1:', 'cannot be opened', 'refused']),
    'out-dir a file': (['cam.ts', '--out-dir', 'notes.txt'], ['--out-dir notes.txt', 'is a file']),
    'out-dir in /proc': (['cam.ts', '--out-dir', '/proc/nope'], ['--out-dir /proc/nope', 'cannot be created']),
    'unknown format': (['cam.ts', '--format', 'nosuchfmt'], ['--format nosuchfmt', 'not an input format']),
    'shorter than a snippet': (['tiny.ts'], ['tiny.ts', '10 frames', 'one snippet', 'nothing written']),
}


@pytest.mark.parametrize('case', CASES)
def test_bad_input_is_one_clear_error_before_any_output(stream_set, tmp_path, monkeypatch, case):
    root = stream_set[0]
    monkeypatch.chdir(tmp_path)
    for name in ('model.pth', 'weights.pth', 'cam.ts'):
        os.symlink(root / name, name)
    torch.save({'weight': torch.ones(3)}, 'other.pth')
    open('notes.txt', 'w').write('not a video')
    encode_ts('tiny.ts', 10)
    with av.open('sound.wav', 'w') as container:
        stream = container.add_stream('pcm_s16le', rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format='s16', layout='mono')
        frame.sample_rate = 8000
        container.mux(stream.encode(frame))
    closed = socket.create_server(('127.0.0.1', 0))
    port = closed.getsockname()[1]
    closed.close()
    arguments, words = CASES[case]
    arguments = [a.replace('PORT', str(port)) for a in arguments]
    defaults = {'--ckpt': 'model.pth', '--weights': 'weights.pth'}
    arguments += [x for flag, value in defaults.items() if flag not in arguments for x in (flag, value)]
    with pytest.raises(DataError) as error:
        main(build_parser().parse_args([*arguments, '--device', 'cpu', '--crops', '1']))
    for word in words:
        assert word in str(error.value), f'{word!r} not in {str(error.value)!r}'
    assert '\n' not in str(error.value) and not os.path.exists('results')


# ---------------------------------------------------------------------------------------------- a new user's input
def test_an_mp4_with_its_index_at_the_end_on_a_pipe_is_refused_and_nothing_written(stream_set, tmp_path):
    root = stream_set[0]
    rng = np.random.default_rng(0)
    with av.open(str(tmp_path / 'moov.mp4'), 'w', format='mp4') as container:  # the index (moov) comes last
        stream = container.add_stream('libx264', rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 64, 48, 'yuv420p'
        for _ in range(48):  # noise: 48 frames are far more than FFmpeg's read buffer, which could seek back
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rng.integers(0, 256, (48, 64, 3), np.uint8),
                                                                  format='rgb24')))
        container.mux(stream.encode(None))
    cat = subprocess.Popen(['cat', str(tmp_path / 'moov.mp4')], stdout=subprocess.PIPE)
    status, lines, log = live(root, '-', '--out-dir', tmp_path / 'out', stdin=cat.stdout, check=False)
    cat.wait(LIMIT)
    assert status == 1 and lines == []
    assert log.splitlines()[-1] == ('live.py: error: -: an MP4 whose index (moov atom) is at its end cannot be read '
                                    'from a pipe: pass the file itself, or remux it to MPEG-TS (ffmpeg -i in.mp4 -c '
                                    'copy -f mpegts -); nothing written')
    assert not (tmp_path / 'out').exists()


def test_reconnect_retries_the_first_opening(stream_set, tmp_path):
    """Nothing listens at the port when live.py starts; a server opens there 0.5 s later (live.py tries again
    1 s after its start) and sends a stream of 2 snippets and 5 frames."""
    root = stream_set[0]
    data = encode_ts(tmp_path / 'late.ts', 16 * 2 + 5).read_bytes()
    closed = socket.create_server(('127.0.0.1', 0))
    port = closed.getsockname()[1]
    closed.close()

    def serve_later():
        time.sleep(0.5)
        with socket.create_server(('127.0.0.1', port)) as server:
            server.settimeout(LIMIT)
            connection, _ = server.accept()
            connection.sendall(data)
            connection.close()

    threading.Thread(target=serve_later, daemon=True).start()
    url = f'tcp://127.0.0.1:{port}'
    status, lines, log = live_here(root, url, '--reconnect', 1, '--name', 'late')
    assert f'live.py: {url}: cannot be opened' in log and 'trying again in 1 s (1 of 1)' in log
    assert status == 1 and log.splitlines()[-1] == \
        f'live.py: error: {url}: the stream ended and 1 try to reopen it; everything scored is written'
    assert lines[-1]['frames'] == 16 * 2 + 5 and lines[-1]['dropped_frames'] == 0


def test_event_lines_on_stderr_name_the_script(stream_set):
    log = stream_set[-1][2]
    events = [line for line in log.splitlines() if 'event' in line]
    assert events and all(line.startswith('live.py: ') for line in events)


def test_a_picture_smaller_than_the_networks_crop_is_warned_about(stream_set):
    """cam.ts is 64 x 48: its frames are enlarged to 340 x 256 (video.small_picture_warning)."""
    log = stream_set[-1][2]
    assert '\nlive.py: warning: -: 64 x 48 pixels, smaller than the network\'s 224 x 224 crop' in log


def test_mqtt_gets_the_events_and_the_states(stream_set, broker, tmp_path):  # noqa: F811 (broker: a fixture)
    """live.py --mqtt in this process on two snippets, threshold 0 (one event, the whole stream), against
    mosquitto on 127.0.0.1: the event's start and end and the camera's states, under the run's name."""
    root = stream_set[0]
    encode_ts(tmp_path / 'short.ts', 32)
    mosquitto = broker()
    subscriber = Subscriber(mosquitto.port, ['anomaly/mq/events', 'anomaly/mq/state'])
    try:
        _, lines, _ = live_here(root, tmp_path / 'short.ts', '--name', 'mq', '--no-page', '--threshold', 0,
                                '--mqtt', f'127.0.0.1:{mosquitto.port}')
        start, end = [json.loads(payload) for payload in subscriber.wait('anomaly/mq/events', 2)]
        subscriber.wait_for_state('anomaly/mq/state', 'stopped')
        states = [json.loads(payload)['state'] for payload in subscriber.payloads('anomaly/mq/state')]
    finally:
        subscriber.close()
    (event,) = frames_of(lines, 'event_end')
    assert (start['type'], start['camera'], start['start_utc']) == ('start', 'mq', event['start_utc'])
    assert end == {'type': 'end', 'id': start['id'], 'camera': 'mq',
                   **{key: value for key, value in event.items() if key != 'type'}}
    assert states[0] == 'streaming' and states[-1] == 'stopped', states


class FakeReader:
    source, live, behind = 'cam', False, 0.0

    def __init__(self, decoded, busy_seconds):
        self.decoded, self.busy_seconds = decoded, busy_seconds


def test_realtime_factor_is_the_slower_of_the_two_threads_and_the_status_line_adds_up(capsys):
    from types import SimpleNamespace
    scorer = Scorer(None, None, 32.0, None, State('cam'))
    scorer.work = 4.0  # the network: 20 snippets (10 s of video) in 4 s: 2.5 x real time
    scorer.camera = SimpleNamespace(snippets=20, written=32 * 18, dropped=32 * 10,
                                    files=SimpleNamespace(report={'events': []}))
    assert scorer.realtime_factor(FakeReader(640, 5.0)) == 2.5  # the reader: 20 s in 5 s; the network is slower
    assert scorer.realtime_factor(FakeReader(640, 16.0)) == 1.25  # 20 s in 16 s: now the reader is slower
    assert scorer.realtime_factor(FakeReader(0, 0.0)) == 2.5  # no decoding time said: the network's
    scorer.status(FakeReader(0, 0.0))
    assert capsys.readouterr().err == 'live.py: 18 s written: 8 s scored (16 snippets), 10 s dropped; 0 events\n'


# ---------------------------------------------------------------------------------------------- clock time, names
def test_clock_times_of_a_realtime_file_follow_its_frames_and_the_wall_clock(stream_set):
    """Each score line, read as it comes, against this process's clock: it was written latency seconds after its
    last frame was decoded, which in real time is its end_utc. Every clock time is the first frame's plus the
    frame's time; events and the end carry the clock times of their frames."""
    root, _, _, threshold, _ = stream_set
    out = Arrivals()
    status, lines, _ = live_here(root, 'cam.ts', '--realtime', '--hop', 1, '--max-lag', 100, '--threshold',
                                 repr(threshold), '--name', 'clock', '--no-page', out=out)
    arrivals = out.arrivals
    assert status == 0 and len(arrivals) == len(lines)
    scores = frames_of(lines, 'score')
    assert len(scores) == SNIPPETS
    for score, arrival in zip(lines, arrivals):
        if score['type'] == 'score':
            assert abs(arrival - score['latency'] - utc_seconds(score['end_utc'])) < 1.0, score
    first = utc_seconds(scores[0]['start_utc'])
    for score in scores:
        assert abs(utc_seconds(score['start_utc']) - first - score['start_frame'] / FPS) < 0.002
        assert abs(utc_seconds(score['end_utc']) - first - score['end_frame'] / FPS) < 0.002
    starts = {s['start_frame']: s['start_utc'] for s in scores}
    ends = {s['end_frame']: s['end_utc'] for s in scores} | {lines[-1]['frames']: lines[-1]['end_utc']}
    events = frames_of(lines, 'event_end')
    assert events and all(e['start_utc'] == starts[e['start_frame']] and e['end_utc'] == ends[e['end_frame']]
                          for e in events)
    assert [e['utc'] for e in frames_of(lines, 'event_start')] == [e['start_utc'] for e in events]
    assert lines[-1]['start_utc'] == scores[0]['start_utc']
    assert abs(utc_seconds(lines[-1]['end_utc']) - first - (16 * SNIPPETS + 5) / FPS) < 0.002
    report = json.load(open(root / 'results' / 'live' / 'clock.json'))
    assert (report['start_utc'], report['end_utc']) == (lines[-1]['start_utc'], lines[-1]['end_utc'])
    assert [{k: e[k] for k in ('start_utc', 'end_utc')} for e in report['events']] == \
        [{k: e[k] for k in ('start_utc', 'end_utc')} for e in events]


def test_a_second_run_with_the_same_name_is_refused_and_the_first_loses_nothing(stream_set):
    root = stream_set[0]
    out = root / 'results' / 'live'
    before = {path: path.read_bytes() for path in out.glob('cam*')}
    status, lines, log = live_here(root, 'cam.ts', '--name', 'cam')
    assert status == 1 and lines == []
    assert log == f'live.py: error: results/live/cam.csv exists, an earlier run\'s: give another --name, or ' \
                  '--overwrite to replace that run\'s outputs\n'
    assert {path: path.read_bytes() for path in out.glob('cam*')} == before
