"""watch.py: two cameras on one network score as detect.py does; segments whose scores and features, concatenated,
are one run's; an event across a segment boundary; clock times against this process's clock; the scheduler's
fairness under overload.

The cameras are MPEG-TS files test_live encodes, played as files or in real time; the I3D weights are random in
the real key layout; every run has a time limit."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from types import SimpleNamespace

import av
import numpy as np
import pytest
import torch

from backend import load_network
from camera import State
from conftest import REPO
from protocol import video_scores
from results import find_events, read_score_rows, utc_seconds
from scheduler import Scheduler
from stream import End, Gap, Snippet
from test_alerts import Subscriber, broker, free_port, mosquitto  # noqa: F401 (broker, mosquitto: fixtures)
from test_detect import i3d_weights, save_model  # noqa: F401 (i3d_weights: a fixture)
from test_live import FPS, causal_scores, encode_ts
from test_serve import get
from video import extract_video, frame_scores

LIMIT = 300  # seconds any one run may take
WINDOW = 2

@pytest.fixture(scope='module')
def cams(tmp_path_factory, i3d_weights):  # noqa: F811
    """A folder with weights.pth, model.pth, a.ts (6 snippets and 5 frames) and b.ts (5 snippets and 3 frames)."""
    root = tmp_path_factory.mktemp('watch')
    os.symlink(i3d_weights, root / 'weights.pth')
    model = save_model(root / 'model.pth', feature_size=2048)
    encode_ts(root / 'a.ts', 16 * 6 + 5)
    encode_ts(root / 'b.ts', 16 * 5 + 3, seed=1)
    return root, model


@pytest.fixture(scope='module')
def extracted(cams):
    """{'a': a.ts's features, 'b': b.ts's}, as extract_features.py gives them one snippet at a time on the default
    backend, as watch.py's."""
    root, _ = cams
    network = load_network(str(root / 'weights.pth'), torch.device('cpu'))
    return {name: extract_video(str(root / f'{name}.ts'), network, crops=1, batch_size=1, progress=False)[:2]
            for name in ('a', 'b')}


def config_text(root, out_dir, cameras, detect='', record='', more=''):
    """more: further sections (mqtt, http), as lines of YAML."""
    return (f'model: {{ckpt: {root}/model.pth, weights: {root}/weights.pth, crops: 1, device: cpu}}\n'
            f'detect: {{test_split_size: {WINDOW}, {detect}}}\n'
            f'record: {{out_dir: {out_dir}, pre_roll: 1, {record}}}\n' + more +
            'cameras:\n' + ''.join(f'  {name}: {{{camera}}}\n' for name, camera in cameras.items()))


def start_watch(root, text):
    (root / 'cams.yaml').write_text(text)
    return subprocess.Popen([sys.executable, os.path.join(REPO, 'watch.py'), 'cams.yaml'], cwd=root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def lines_as_they_come(process):
    """(the JSON lines, the time.time() each came at, stderr) of a run to its end."""
    lines, arrivals = [], []
    try:
        for line in process.stdout:
            lines.append(json.loads(line))
            arrivals.append(time.time())
        log = process.stderr.read()
        assert process.wait(LIMIT) == 0, log
    finally:
        process.kill()
    return lines, arrivals, log


def segments(out_dir, camera):
    """The camera's segment reports (with their 'stem'), in order of their first frame."""
    reports = []
    for day in sorted(os.listdir(out_dir / camera)):
        for name in sorted(os.listdir(out_dir / camera / day)):
            if name.endswith('.json'):
                reports.append({**json.load(open(out_dir / camera / day / name)),
                                'stem': str(out_dir / camera / day / name[:-5])})
    return sorted(reports, key=lambda report: report['first_frame'])


def per_frame(rows):
    """A score-rows CSV's (start_frame, end_frame, score) as a score per frame."""
    starts, ends, scores = rows
    assert starts[0] == 0 and (starts[1:] == ends[:-1]).all()
    return np.repeat(scores, ends - starts)


def test_two_cameras_on_one_network_score_as_detect(cams, extracted):
    """Files, hop = window, batches of one snippet (the default on OpenVINO): each camera's scores, events and
    features are those of detect.py and extract_features.py on its file (the very same float32 computation)."""
    root, model = cams
    expected = {name: (features, frame_scores(video_scores(model, torch.from_numpy(features), WINDOW), frames))
                for name, (features, frames) in extracted.items()}
    threshold = float(np.median(expected['a'][1]))  # some chunks of a.ts below it, some at or above
    out = root / 'two'
    lines, _, log = lines_as_they_come(start_watch(
        root, config_text(root, out, {'a': 'source: a.ts', 'b': 'source: b.ts'}, detect=f'hop: {WINDOW}, '
                          f'threshold: {threshold!r}', record='features: true')))
    for name in ('a', 'b'):
        features, scores = expected[name]
        (report,) = segments(out, name)
        np.testing.assert_array_equal(np.load(report['features']), features)
        np.testing.assert_array_equal(per_frame(read_score_rows(report['stem'] + '.csv')), scores)
        assert report['frames'] == len(scores) and report['snippets'] == len(features)
        assert report['ended'] and report['end_reason'] == 'end of stream' and report['dropped_frames'] == 0
        events = [(e['start_frame'], e['end_frame'], e['peak_score']) for e in report['events']]
        assert events == find_events(scores, threshold)
        end = [line for line in lines if line['type'] == 'end' and line['camera'] == name]
        assert end == [{'type': 'end', 'camera': name, 'frames': len(scores), 'start_utc': report['start_utc'],
                        'end_utc': report['end_utc'], 'snippets': len(features), 'dropped_frames': 0,
                        'reason': 'end of stream'}]
    assert segments(out, 'a')[0]['events']  # the threshold is a's median score
    assert all(line['camera'] in ('a', 'b') for line in lines)
    assert all(line.startswith('watch.py: a: ') or line.startswith('watch.py: b: ') for line in log.splitlines())


def test_segments_concatenated_are_one_run_and_an_event_across_them_is_whole(cams, extracted):
    """a.ts in real time (4.04 s) in segments of 1.5 s, hop 1, threshold 0 (one event, the whole stream)."""
    root, model = cams
    out = root / 'segmented'
    lines, arrivals, _ = lines_as_they_come(start_watch(
        root, config_text(root, out, {'a': 'source: a.ts, realtime: true, max_lag: 1000'}, detect='hop: 1, '
                          'threshold: 0', record='features: true, segment_minutes: 0.025')))
    reports = segments(out, 'a')
    assert len(reports) == 2  # from frames 0 and 48 (1.92 s: the first score 1.5 s or more after 0)
    features = np.concatenate([np.load(report['features']) for report in reports])
    np.testing.assert_array_equal(features, extracted['a'][0])
    rows = [read_score_rows(report['stem'] + '.csv') for report in reports]
    starts, ends, scores = (np.concatenate(column) for column in zip(*rows))
    by_hand = causal_scores(model, features, WINDOW, 1)
    assert starts.tolist() == [16 * first for first, _, _ in by_hand] + [16 * 6]
    assert ends.tolist() == [16 * (first + n) for first, n, _ in by_hand] + [16 * 6 + 5]
    np.testing.assert_array_equal(scores, [score for _, _, score in by_hand] + [by_hand[-1][2]])
    assert [report['first_frame'] for report in reports] == [0, 48]  # the next would start at 96, after
    assert [report['frames'] for report in reports] == [48, 53]      # the last snippet: the rest stays here
    assert [report['end_reason'] for report in reports] == ['segment', 'end of stream']
    for earlier, later in zip(reports, reports[1:]):
        assert utc_seconds(later['start_utc']) - utc_seconds(earlier['start_utc']) == \
            pytest.approx((later['first_frame'] - earlier['first_frame']) / FPS, abs=0.002)
    # the event: in the first segment's report and its day's events.jsonl, whole, and its clip plays
    (event,) = reports[0]['events']
    assert not reports[1]['events']
    assert (event['start_frame'], event['end_frame'], event['reason'], event['camera']) == (0, 101, 'end of stream',
                                                                                         'a')
    assert event['id'] == 'a-' + ''.join(filter(str.isdigit, reports[0]['start_utc']))
    day = os.path.dirname(reports[0]['stem'])
    assert [json.loads(line) for line in open(os.path.join(day, 'events.jsonl'))] == [event]
    assert event['clip'] == os.path.relpath(reports[0]['stem'], out) + '-' + \
        reports[0]['start_utc'][11:23].replace(':', '-') + '.mp4'
    with av.open(str(out / event['clip'])) as container:
        assert sum(1 for _ in container.decode(video=0)) == 101
    # clock time: each score line was written latency seconds after its last frame, in real time its end_utc
    for line, arrival in zip(lines, arrivals):
        if line['type'] == 'score':
            assert abs(arrival - line['latency'] - utc_seconds(line['end_utc'])) < 1.0, line


def test_a_restart_after_sigkill_mid_event_repairs_and_loses_nothing(cams):
    """a.ts in real time, threshold 0 (an event from the first score), killed after its second score line; then
    started again, and stopped by SIGTERM after its first score line."""
    root, _ = cams
    out = root / 'killed'
    text = config_text(root, out, {'a': 'source: a.ts, realtime: true, max_lag: 1000'}, detect='hop: 1, threshold: 0',
                       record='features: true')
    process = start_watch(root, text)
    try:
        scores = 0
        for line in process.stdout:
            scores += json.loads(line)['type'] == 'score'
            if scores == 2:
                break
        process.kill()
        process.wait(LIMIT)
    finally:
        process.kill()
    (killed,) = segments(out, 'a')
    stem = killed['stem']
    assert not killed['ended'] and killed['open_event']['start_frame'] == 0
    day = os.path.dirname(stem)
    before = {name: open(os.path.join(day, name), 'rb').read() for name in os.listdir(day)}
    assert not os.path.exists(os.path.join(day, 'events.jsonl'))  # the event is still open
    starts, ends, scores = read_score_rows(stem + '.csv')
    assert len(ends) >= 1  # the line comes before its row: the second row may be there or not
    process = start_watch(root, text)
    try:
        while json.loads(process.stdout.readline())['type'] != 'event_start':
            pass
        process.send_signal(signal.SIGTERM)
        lines, _, log = lines_as_they_come(process)  # exit status 0
    finally:
        process.kill()
    assert f'watch.py: {os.path.relpath(stem, out)}: cut short by a hard stop, repaired' in log
    for name, data in before.items():
        if name.endswith('.csv'):  # the scores keep every byte
            assert open(os.path.join(day, name), 'rb').read() == data
    repaired, *new = segments(out, 'a')
    assert repaired['stem'] == stem and len(new) == 1 and new[0]['end_reason'] == 'stopped'
    assert [e['reason'] for e in new[0]['events']] == ['stopped'] and lines[-1]['reason'] == 'stopped'
    assert repaired['ended'] and repaired['end_reason'] == 'interrupted' and repaired['open_event'] is None
    assert repaired['frames'] == ends[-1] and repaired['snippets'] == ends[-1] // 16
    assert repaired['end_utc'] == open(stem + '.csv').read().splitlines()[len(ends)].split(',')[5]
    assert np.load(repaired['features']).shape[0] in (len(ends), len(ends) + 1)  # a row's features come first
    (event,) = repaired['events']
    assert (event['start_frame'], event['end_frame'], event['reason']) == (0, int(ends[-1]), 'interrupted')
    assert event['clip_offset'] == killed['open_event']['clip_offset'] == 0.0  # the clip starts at frame 0 too
    assert event['peak_score'] == float(scores.max())
    with av.open(str(out / event['clip'])) as container:  # the clip plays up to the kill
        assert sum(1 for _ in container.decode(video=0)) > 0
    jsonl = [json.loads(line) for line in open(os.path.join(day, 'events.jsonl'))]
    assert jsonl[0] == event and len(jsonl) == 1 + sum(len(report['events']) for report in new)


def test_a_configuration_mistake_is_one_line_and_status_2_with_nothing_written(cams):
    root, _ = cams
    out = root / 'mistaken'
    process = start_watch(root, config_text(root, out, {'a': 'source: a.ts'}, detect='treshold: 0.5'))
    stdout, stderr = process.communicate(timeout=LIMIT)
    assert process.returncode == 2 and stdout == ''
    assert stderr == 'watch.py: error: cams.yaml: detect.treshold: unknown key; did you mean threshold?\n'
    assert not out.exists()


def test_a_port_in_use_is_one_line_and_status_2_before_anything_is_written(cams):
    root, _ = cams
    out = root / 'refused'
    with socket.socket() as taken:
        taken.bind(('127.0.0.1', 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = start_watch(root, config_text(root, out, {'a': 'source: a.ts'}, more=f'http: {{port: {port}}}\n'))
        stdout, stderr = process.communicate(timeout=LIMIT)
    assert process.returncode == 2 and stdout == '' and len(stderr.splitlines()) == 1
    assert stderr.startswith(f'watch.py: error: http: cannot listen on 127.0.0.1:{port}: ')
    assert not out.exists()


def test_alerts_on_a_real_broker_and_the_page_served_while_it_runs(cams, broker):
    """Three snippets in real time, threshold 0 (one event, the whole stream), with an mqtt section (mosquitto on
    127.0.0.1) and an http one (a free port): the event's start and end and the camera's states arrive, and
    state.json lists the camera as streaming while it runs (after its first score, as the next snippets come)."""
    root, _ = cams
    encode_ts(root / 'short.ts', 16 * 3)
    port = free_port()
    mosquitto = broker()
    subscriber = Subscriber(mosquitto.port, ['anomaly/a/events', 'anomaly/a/state'])
    process = start_watch(root, config_text(
        root, root / 'alerted', {'a': 'source: short.ts, realtime: true, max_lag: 1000'}, detect='hop: 1, threshold: 0',
        more=f'mqtt: {{host: 127.0.0.1, port: {mosquitto.port}}}\nhttp: {{port: {port}}}\n'))
    try:
        while json.loads(process.stdout.readline())['type'] != 'score':
            pass
        status, _, body = get(SimpleNamespace(port=port), '/state.json')
        lines, _, log = lines_as_they_come(process)
        start, end = [json.loads(payload) for payload in subscriber.wait('anomaly/a/events', 2)]
        subscriber.wait_for_state('anomaly/a/state', 'stopped')
    finally:
        process.kill()
        subscriber.close()
    assert status == 200
    (camera,) = json.loads(body)['cameras']
    assert camera['name'] == 'a' and camera['state'] == 'streaming', camera
    (event,) = [line for line in lines if line['type'] == 'event_end']
    assert start['type'] == 'start' and start['id'] == event['id'] and start['start_utc'] == event['start_utc']
    assert end == {'type': 'end', **{key: value for key, value in event.items() if key != 'type'}}
    states = [json.loads(payload) for payload in subscriber.payloads('anomaly/a/state')]
    assert states[0]['state'] == 'streaming' and states[-1]['state'] == 'stopped', states
    last_score = [line for line in lines if line['type'] == 'score'][-1]
    assert states[-1]['utc'] == last_score['end_utc'] and states[-1]['dropped_frames'] == 0


def test_a_state_change_is_published_once_and_reconnecting_holds_until_the_reconnections_gap():
    published = []
    state = State('a', SimpleNamespace(state=lambda name, current: published.append((name, current['state']))))
    state.flowing('streaming')
    state.flowing('streaming')
    state.update(state='reconnecting')  # the reader's thread
    state.flowing('streaming')          # snippets read before the source broke
    state.update(state='streaming', dropped_frames=48)  # the reconnection's gap
    state.flowing('behind')
    state.update(state='stopped')
    assert published == [('a', 'streaming'), ('a', 'reconnecting'), ('a', 'streaming'), ('a', 'behind'),
                         ('a', 'stopped')]
    assert state.current == {'state': 'stopped', 'utc': None, 'score': None, 'dropped_frames': 48}


class FakeCamera:
    """A camera of the scheduler's: a reader of the given items, and what it was handed."""

    def __init__(self, items):
        self.reader = FakeReader(items)
        self.added, self.taken = [], []

    def add(self, snippets, rows):
        self.added.append([snippet.index for snippet in snippets])

    def take(self, item):
        self.taken.append(item)


class FakeReader:
    def __init__(self, items):
        self.items, self.network_seconds = list(items), 0.0

    def get(self, n, timeout):
        taken = []
        while self.items and len(taken) < n and isinstance(self.items[0], Snippet):
            taken.append(self.items.pop(0))
        if not taken and self.items:
            taken.append(self.items.pop(0))
        return taken


def snippets(indices):
    return [Snippet(i, np.zeros((16, 1, 1, 3), np.uint8), 0.0, 0.0, 0.0) for i in indices]


def test_the_scheduler_takes_every_camera_in_turn_and_hands_each_its_own():
    """Batches of 4 over three cameras, one flooding: rounds of one snippet per camera, each batch from the
    camera after the last one served; a Gap or an End is handed over after the camera's snippets before it are
    scored, and costs the camera no turn."""
    batches = []

    def extract(frames):
        batches.append(len(frames) // 16)
        return np.zeros((len(frames) // 16, 1, 2048), np.float32)

    flood = FakeCamera(snippets(range(10)))
    calm = FakeCamera(snippets([0, 1]) + [Gap(32, 48, 'behind', 0.0, 0.0)] + snippets([3]) + [End(64, 'x', False)])
    slow = FakeCamera(snippets([0]))
    scheduler = Scheduler(extract, 4)
    cameras = [flood, calm, slow]
    while scheduler.step(cameras):
        pass
    # flood 0, calm 0, slow 0, flood 1 | from calm: calm 1, flood 2 | calm's Gap, then (in the same turn) calm 3,
    # flood 3 | calm's End | flood 4 to 7 | flood 8, 9
    assert calm.added == [[0], [1], [3]] and calm.taken[0] == Gap(32, 48, 'behind', 0.0, 0.0)
    assert isinstance(calm.taken[1], End) and slow.added == [[0]]
    assert sum(flood.added, []) == list(range(10))
    assert batches == [4, 2, 2, 4, 2]


def test_under_overload_every_camera_gets_an_equal_share(tmp_path):
    """Three cameras in real time (20 snippets each in 4 s) on a network made slow (0.1 s a snippet: 10 a
    second for 15 coming): each drops its own oldest, and the shares dropped are within 15 points."""
    from stream import SnippetReader, open_source
    encode_ts(tmp_path / 'fast.ts', 16 * 20, fps=80)

    class Counted:
        def __init__(self):
            container, stream = open_source(str(tmp_path / 'fast.ts'))
            self.reader = SnippetReader(str(tmp_path / 'fast.ts'), None, container, stream, 80, live=True,
                                        realtime=True, max_lag=1.0, batch=2)
            self.scored, self.dropped, self.ended = 0, 0, False

        def add(self, snippets, rows):
            self.scored += len(snippets)

        def take(self, item):
            if isinstance(item, Gap):
                self.dropped += (item.end_frame - item.start_frame) // 16
            else:
                self.ended = True

    def slow(frames):
        time.sleep(0.1 * (len(frames) // 16))
        return np.zeros((len(frames) // 16, 1, 2048), np.float32)

    cameras = [Counted() for _ in range(3)]
    scheduler = Scheduler(slow, 2)
    deadline = time.monotonic() + LIMIT
    while not all(camera.ended for camera in cameras) and time.monotonic() < deadline:
        scheduler.step(cameras)
    assert all(camera.ended and camera.scored + camera.dropped == 20 for camera in cameras)
    shares = [camera.dropped / 20 for camera in cameras]
    assert max(shares) > 0 and max(shares) - min(shares) <= 0.15, shares
