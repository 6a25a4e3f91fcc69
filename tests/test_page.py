"""page.py: the review page of a results folder. Its data against the files and a plain computation; then, in
headless Chromium (Playwright), on pages made from detect.py's runs: the rows and events equal the JSON files, a
click plays the moment, a 24-hour series keeps a one-frame spike, 1,000 videos stay small, a hostile file name
stays text, a live result is followed over HTTP, and no request leaves the machine."""
import argparse
import base64
import contextlib
import functools
import hashlib
import http.server
import json
import os
import re
import shutil
import threading
from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import pytest
import torch

import page
from browser import open_page
from conftest import run_script
from dataset import DataError, write_atomic
from model import load_checkpoint
from protocol import video_scores
from results import (CSV_HEADER, SCORE_ROWS_HEADER, csv_rows, event_record, find_events, score_row, utc_seconds,
                     utc_text)
from test_detect import FPS, encode_video, save_model

HOSTILE = '<img src=x onerror=alert(1)>'
DAY = 24 * 3600 * 30  # the frames of a 24-hour stream at 30 fps: 2,592,000
SPIKE = 1_234_567     # its one frame scored high
PAGE_OF_1000 = 8e6    # bytes: the stated bound of the page of 1,000 five-minute results (README, Reviewing results)


def page_data(path):
    """The data embedded in a written page, as the page's script reads it."""
    return json.loads(page.DATA.search(open(path, encoding='utf-8').read())[1])


def steps_by_hand(scores, bins):
    """The maximum of each of min(bins, n) equal spans of frames, NaN where all are NaN: a plain loop."""
    n = min(bins, len(scores))
    bounds = [i * len(scores) // n for i in range(n + 1)]
    spans = [scores[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    return np.array([np.nan if np.isnan(s).all() else np.nanmax(s) for s in spans], np.float32), bounds[:-1]


def assert_steps(points, scores, threshold):
    """A timeline's steps, expanded back to one value per span of frames, are each span's maximum: to 4 decimals,
    or exact, and on the same side of the threshold in float32 (as the events were found)."""
    expected, firsts = steps_by_hand(scores, page.BINS)
    values = np.array([np.nan if v is None else v for v in points['scores']])
    values = values[np.searchsorted(points['starts'], firsts, side='right') - 1]
    assert points['frames'] == len(scores) and len(points['starts']) <= page.BINS
    assert all(a != b for a, b in zip(points['scores'], points['scores'][1:]))  # a step only where it changes
    np.testing.assert_array_equal(np.isnan(values), np.isnan(expected))
    values, expected = values[~np.isnan(values)], expected[~np.isnan(expected)]
    assert all(v == round(float(e), 4) or np.float32(v) == e for v, e in zip(values, expected))
    np.testing.assert_array_equal(values.astype(np.float32) >= np.float32(threshold), expected >= threshold)
    return firsts


# ---------------------------------------------------------------------------------------------- the data
@pytest.mark.parametrize('frames', [1, 7, 1999, 2000, 2001, 4096, 100_003])
def test_timeline_is_the_maximum_of_each_span(tmp_path, frames):
    rng = np.random.default_rng(frames)
    scores = np.repeat(rng.random(frames // 16 + 1, dtype=np.float32), 16)[:frames]  # steps, as the chunks make
    scores[rng.random(frames) < 0.01] = 0.99  # one-frame spikes
    scores[frames // 3:frames // 3 + frames // 10] = np.nan  # a gap of dropped frames
    (tmp_path / 'x.csv').write_text(CSV_HEADER + csv_rows(0, scores, 30))
    threshold = float(scores[0])  # a score at the threshold, which rounding could carry below it
    assert_steps(page.timeline(page.read_scores(str(tmp_path / 'x.csv')), threshold), scores, threshold)


def test_a_score_that_rounding_would_carry_across_the_threshold_is_exact():
    threshold = np.float32(0.42863941)  # float32's shortest digits: 0.4286394
    assert page.page_value(threshold, threshold) == 0.4286394 and np.float32(0.4286394) == threshold
    assert page.page_value(np.float32(0.4286), threshold) == 0.4286
    assert page.page_value(np.float32(0.42863), threshold) == 0.4286
    assert page.page_value(np.float32(0.97), threshold) == 0.97


def test_csv_dropped_frames_and_a_line_being_written(tmp_path):
    (tmp_path / 'x.csv').write_text(CSV_HEADER + '0,0.0000,0.25\n1,0.0400,\n2,0.0800,\n3,0.1200,0.5\n4,0.16')
    np.testing.assert_array_equal(page.read_scores(str(tmp_path / 'x.csv')), [0.25, np.nan, np.nan, 0.5])
    (tmp_path / 'y.csv').write_text(CSV_HEADER)
    assert page.read_scores(str(tmp_path / 'y.csv')).shape == (0,)


def write_result(folder, name, scores, fps=FPS, threshold=0.5, **fields):
    """A result as detect.py and live.py write it (results.py's rows and events) from scores."""
    events = [event_record(*event, fps) for event in find_events(scores, threshold)]
    report = {'video': f'{name}.mp4', 'features': f'{name}_i3d.npy', 'fps': fps, 'frames': len(scores),
              'snippets': len(scores) // 16, 'crops': 1, 'checkpoint': 'model.pth', 'test_split_size': 32,
              'threshold': threshold, 'max_score': float(np.nanmax(scores)), 'events': events, **fields}
    write_atomic(os.path.join(folder, name + '.csv'),
                 lambda f: f.write((CSV_HEADER + csv_rows(0, scores, fps)).encode()))
    write_atomic(os.path.join(folder, name + '.json'), lambda f: f.write(json.dumps(report).encode()))
    return report


def test_files_that_are_not_results_are_left_out(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    scores = np.array([0.1] * 20 + [0.8] * 12, np.float32)
    report = write_result('.', 'good', scores)
    write_result('.', 'no_csv', scores)
    os.remove('no_csv.csv')
    write_result('.', 'bad_csv', scores)
    open('bad_csv.csv', 'w').write('a,b\n1,2\n')
    write_result('.', 'bad_rows', scores)
    open('bad_rows.csv', 'w').write(CSV_HEADER + '0,0.0,x\n')
    open('test-results.json', 'w').write(json.dumps({'auc': 0.9, 'model': 'x'}))  # test.py's, say
    open('broken.json', 'w').write('{"video": ')
    open('nan.json', 'w').write(json.dumps({**report, 'fps': float('nan')}))
    open('nan.csv', 'w').write(open('good.csv').read())
    assert page.write_page('.') == 1
    [entry] = page_data('index.html')['videos']
    assert entry['name'] == 'good'
    assert entry['result'] == {key: report[key] for key in page.FIELDS if key in report}
    assert entry['result']['events'] == [{'start_frame': 20, 'end_frame': 32, 'start_time': 0.8, 'end_time': 1.28,
                                          'peak_score': float(np.float32(0.8))}]
    assert entry['timeline'] == {'frames': 32, 'starts': [0, 20], 'scores': [0.1, 0.8]}
    assert sorted(os.listdir('.')) == sorted(['good.csv', 'good.json', 'no_csv.json', 'bad_csv.csv', 'bad_csv.json',
                                              'bad_rows.csv', 'bad_rows.json', 'test-results.json', 'broken.json',
                                              'nan.json', 'nan.csv', 'index.html'])  # written atomically


def test_live_result_before_any_score(tmp_path):
    (tmp_path / 'cam.csv').write_text(CSV_HEADER)
    (tmp_path / 'cam.json').write_text(json.dumps({
        'video': 'rtsp://127.0.0.1/cam', 'fps': 25.0, 'frames': 0, 'threshold': 0.5, 'max_score': None,
        'events': [], 'live': True, 'ended': False, 'hop': 32, 'dropped_frames': 0}))
    assert page.write_page(str(tmp_path)) == 1
    [entry] = page_data(tmp_path / 'index.html')['videos']
    assert entry['timeline'] == {'frames': 0, 'starts': [], 'scores': []}
    assert (entry['kind'], entry['play'], entry['why_not']) == (
        'stream', None, 'nothing to play: rtsp://127.0.0.1/cam is a stream, which browsers do not play')


def test_timeline_is_read_again_only_when_its_csv_changes(tmp_path):
    write_result(str(tmp_path), 'v', np.full(32, 0.25, np.float32))
    page.write_page(str(tmp_path))
    stat = os.stat(tmp_path / 'v.csv')
    # the same size and modification time: the timeline of the page before is kept, the CSV not read
    (tmp_path / 'v.csv').write_text((tmp_path / 'v.csv').read_text().replace('0.25', '0.75'))
    os.utime(tmp_path / 'v.csv', ns=(stat.st_atime_ns, stat.st_mtime_ns))
    page.write_page(str(tmp_path))
    assert page_data(tmp_path / 'index.html')['videos'][0]['timeline']['scores'] == [0.25]
    os.utime(tmp_path / 'v.csv', ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    page.write_page(str(tmp_path))
    assert page_data(tmp_path / 'index.html')['videos'][0]['timeline']['scores'] == [0.75]


def test_data_cannot_end_its_script_element_and_only_the_page_script_runs(tmp_path):
    hostile = '</script><script>alert(1)</script><!--&'
    write_result(str(tmp_path), '<!--', np.full(32, 0.5, np.float32), checkpoint=hostile)
    page.write_page(str(tmp_path))
    html = open(tmp_path / 'index.html', encoding='utf-8').read()
    data = page.DATA.search(html)[1]
    assert not re.search('[<>&]', data)
    [entry] = json.loads(data)['videos']
    assert (entry['name'], entry['result']['checkpoint']) == ('<!--', hostile)
    script = page.SCRIPT.search(html)[1]
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}';" in html and html.count('<script') == 2


def test_player_source_prefers_the_scored_video_and_escapes_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.makedirs('videos/a b')
    os.makedirs('results/videos')
    open('videos/a b/Clip #1.mp4', 'w').close()
    base = str(tmp_path)

    def source(name, video, **fields):
        return page.player_source('results/videos', name, {'video': video, **fields}, base)
    assert source('Clip #1', 'videos/a b/Clip #1.mp4') == ('../../videos/a%20b/Clip%20%231.mp4', None)
    assert source('Clip #1', str(tmp_path / 'videos/a b/Clip #1.mp4')) == ('../../videos/a%20b/Clip%20%231.mp4', None)
    assert source('Clip', 'Clip_i3d.npy') == (None, 'nothing to play: Clip_i3d.npy is a feature file')
    assert source('Gone', 'Gone.mp4') == (None, f'cannot reach Gone.mp4: there is no such file ({tmp_path}/Gone.mp4)')
    assert source('cam', 'cam.ts') == (None, 'nothing to play: cam.ts is a stream, which browsers do not play; '
                                             'detect.py --video-out writes an MP4 that plays')
    assert source('stream', '-', live=True) == (None, 'nothing to play: standard input is a stream, which browsers '
                                                      'do not play')
    open('results/videos/Clip #1-scored.mp4', 'w').close()
    assert source('Clip #1', 'videos/a b/Clip #1.mp4') == ('Clip%20%231-scored.mp4', None)


def test_script_errors_in_one_line(tmp_path):
    result = run_script('page.py', 'ghost', cwd=tmp_path, check=False)
    assert (result.returncode, result.stdout, result.stderr) == (1, '', 'page.py: error: ghost: no such folder\n')
    os.makedirs(tmp_path / 'empty')
    (tmp_path / 'empty' / 'other.json').write_text('{}')
    with pytest.raises(DataError) as error:  # cli.run: that line, exit status 1
        page.main(argparse.Namespace(out_dir=str(tmp_path / 'empty')))
    assert str(error.value) == (
        f'{tmp_path / "empty"}: nothing to show: no result of detect.py or live.py (<name>.json with its <name>.csv) '
        'and no segment of watch.py (<camera>/<YYYY-MM-DD>/<HH-MM-SS>.json); nothing written')
    assert os.listdir(tmp_path / 'empty') == ['other.json']


# ---------------------------------------------------------------------------------------------- detect.py's pages
def snippet_scores(model, features, split_size):
    return video_scores(model, torch.from_numpy(features), split_size)


@pytest.fixture(scope='session')
def folder(tmp_path_factory):
    """detect.py on a feature file of 5 minutes and three videos, then the page (page.py run in another folder,
    which holds files of the videos' names): Clip.mp4, whose event starts at its third chunk or later, Plain.avi
    (H.264 in AVI, which browsers do not play) and a video of a hostile name; chunks of 4 snippets. The videos'
    features are in features/videos already (random, as the checkpoint's weights): no I3D. Returns the working folder; the results are in results/videos."""
    root = tmp_path_factory.mktemp('page')
    save_model(root / 'model.pth', feature_size=2048)
    model = load_checkpoint(str(root / 'model.pth'))
    rng = np.random.default_rng(0)
    while True:  # Clip's features: its highest chunk after the first, above those before it, starts the event
        clip = rng.random((16, 1, 2048), dtype=np.float32)
        s = snippet_scores(model, clip, 4)[::4]
        if s[1:].max() > s[:1 + s[1:].argmax()].max():
            break
    os.makedirs(root / 'features' / 'videos')
    for name, features in (('Clip', clip), ('Plain', 4), (HOSTILE, 4), ('b', 563)):
        if isinstance(features, int):
            features = rng.random((features, 1, 2048), dtype=np.float32)
        if name == 'b':
            np.save(root / f'{name}_i3d.npy', features)
        else:
            np.save(root / 'features' / 'videos' / f'{name}_i3d.npy', features)
            encode_video(root / f'{name}{".avi" if name == "Plain" else ".mp4"}', 16 * len(features))
    run_script('detect.py', 'b_i3d.npy', 'Clip.mp4', 'Plain.avi', f'{HOSTILE}.mp4',
               '--ckpt', 'model.pth', '--test-split-size', 4, '--threshold', repr(float(s[1:].max())),
               '--device', 'cpu', cwd=root)
    os.makedirs(root / 'elsewhere')
    for name in ('Clip.mp4', 'Plain.avi', f'{HOSTILE}.mp4'):  # files of the videos' relative names, elsewhere
        (root / 'elsewhere' / name).write_bytes(b'')
    cwd = os.getcwd()
    os.chdir(root / 'elsewhere')  # page.py runs elsewhere: the reports say what their paths are relative to
    try:
        assert page.write_page(str(root / 'results' / 'videos')) == 4
    finally:
        os.chdir(cwd)
    return root


def reports(out):
    return {name[:-len('.json')]: json.load(open(out / name)) for name in os.listdir(out) if name.endswith('.json')}


def clock(seconds):
    """The page's times, computed here: hundredths rounded half up (JavaScript's Math.round), m:ss.ss, h:mm:ss.ss."""
    c = int(Decimal(seconds * 100).quantize(Decimal(1), ROUND_HALF_UP))
    h, m, s = c // 360000, c // 6000 % 60, c % 6000
    return f'{h}:{m:02d}:{s // 100:02d}.{s % 100:02d}' if h else f'{m}:{s // 100:02d}.{s % 100:02d}'


def fixed(x, digits=3):
    """JavaScript's x.toFixed(digits): the exact value rounded, halves up."""
    return str(Decimal(x).quantize(Decimal(1).scaleb(-digits), ROUND_HALF_UP))


ROWS = '''sections => sections.map(s => ({
    name: s.querySelector('.name').textContent,
    meta: Object.fromEntries([...s.querySelectorAll('.meta span')].map(e => [e.className, e.textContent])),
    events: [...s.querySelectorAll('tr.event')].map(tr => [...tr.cells].map(td => td.textContent)),
    timeline: s.querySelector('canvas') !== null}))'''


def test_rows_and_events_equal_the_json_files(tab, folder):
    out = folder / 'results' / 'videos'
    files = reports(out)
    assert len(files) == 4 and sum(len(r['events']) for r in files.values()) >= 4
    open_page(tab, out / 'index.html')
    rows = tab.eval_on_selector_all('section.video', ROWS)
    assert [row['name'] for row in rows] == sorted(files, key=lambda name: (-files[name]['max_score'], name))
    for row in rows:
        r = files[row['name']]
        assert row['meta'] == {
            'duration': clock(r['frames'] / r['fps']), 'frames': f'{r["frames"]} frames',
            'fps': f'{r["fps"]:g} fps', 'max': f'max score {fixed(r["max_score"])}',
            'count': f'{len(r["events"])} event{"" if len(r["events"]) == 1 else "s"}',
            'threshold': f'threshold {r["threshold"]!r}', 'checkpoint': 'checkpoint model.pth',
            'source': f'feature file {r["video"]}' if r['video'].endswith('.npy') else r['video']}
        assert row['events'] == [[str(i), clock(e['start_time']), clock(e['end_time']),
                                  clock(e['end_time'] - e['start_time']), fixed(e['peak_score']), '']
                                 for i, e in enumerate(r['events'], 1)]
    flagged = sum(e['end_time'] - e['start_time'] for r in files.values() for e in r['events'])
    total = sum(r['frames'] / r['fps'] for r in files.values())
    events = sum(len(r['events']) for r in files.values())
    assert tab.text_content('#summary') == (f'3 videos, 1 feature file · {events} events · '
                                            f'{clock(flagged)} flagged of {clock(total)} '
                                            f'({fixed(100 * flagged / total, 1)}%)')
    tab.select_option('#sort', 'name')
    assert tab.eval_on_selector_all('section.video .name', 'e => e.map(x => x.textContent)') == sorted(files)


def player(tab, expression):
    return tab.evaluate(f'(p => {expression})(document.getElementById("player"))')


def section(name):
    return f'section.video[data-name="{name}"]'


def test_clicking_an_event_plays_the_video_from_its_start(tab, folder):
    out = folder / 'results' / 'videos'
    report = reports(out)['Clip']
    [event] = report['events']
    assert event['start_frame'] > 0 and report['fps'] == FPS
    open_page(tab, out / 'index.html')
    player(tab, 'p.addEventListener("seeking", () => (window.seeks = window.seeks || []).push(p.currentTime))')
    tab.click(f'{section("Clip")} tr.event')
    tab.wait_for_function('() => window.seeks && window.seeks.length')
    assert abs(tab.evaluate('window.seeks[0]') - event['start_time']) <= 1 / FPS
    tab.wait_for_function(f'() => document.getElementById("player").currentTime > {event["start_time"] + 0.1}')  # playing
    assert player(tab, 'decodeURIComponent(new URL(p.src).pathname)') == str(folder / 'Clip.mp4')

    # a point of the timeline: from that moment
    width = tab.eval_on_selector(f'{section("Clip")} canvas', 'c => c.clientWidth')
    tab.click(f'{section("Clip")} canvas', position={'x': width // 4, 'y': 20})
    tab.wait_for_function('() => window.seeks.length > 1')
    moment = (width // 4) / width * report['frames'] / FPS
    assert abs(tab.evaluate('window.seeks[1]') - moment) <= 1 / FPS


def test_a_video_the_browser_cannot_play_keeps_its_timeline_and_events(tab, folder):
    out = folder / 'results' / 'videos'
    open_page(tab, out / 'index.html')
    tab.click(f'{section("Plain")} canvas', position={'x': 50, 'y': 20})
    note = tab.wait_for_selector(f'{section("Plain")} .note.error')
    assert note.text_content() == ('This browser cannot play ../../Plain.avi: browsers play MP4 (H.264) and WebM; '
                                   'detect.py --video-out writes an MP4 that plays.')
    rows = tab.eval_on_selector_all(section('Plain'), ROWS)
    assert rows[0]['timeline'] and len(rows[0]['events']) == len(reports(out)['Plain']['events'])


def test_a_hostile_name_is_text_and_runs_nothing(tab, folder):
    out = folder / 'results' / 'videos'
    open_page(tab, out / 'index.html')
    names = tab.eval_on_selector_all('section.video .name', 'e => e.map(x => x.textContent)')
    assert HOSTILE in names
    assert tab.evaluate('document.querySelectorAll("img").length') == 0  # nothing injected
    row = tab.evaluate_handle(f'[...document.querySelectorAll("section.video")].find(s => s.dataset.name === {json.dumps(HOSTILE)})')
    links = row.evaluate('s => [...s.querySelectorAll(".links a")].map(a => decodeURIComponent(new URL(a.href).pathname))')
    assert links == [str(out / f'{HOSTILE}{suffix}') for suffix in ('.csv', '.json', '.png')] + [
        str(folder / f'{HOSTILE}.mp4')]
    row.evaluate('s => s.querySelector("canvas").click()')
    tab.wait_for_function('() => document.getElementById("player").readyState >= 1')  # its escaped path loads
    assert player(tab, 'decodeURIComponent(new URL(p.src).pathname)') == str(folder / f'{HOSTILE}.mp4')
    # the tab fixture checks that no dialog opened


def test_a_24_hour_series_keeps_a_one_frame_spike(tab, tmp_path):
    rng = np.random.default_rng(1)
    scores = np.repeat(rng.uniform(0.05, 0.3, DAY // 512 + 1).astype(np.float32), 512)[:DAY]
    scores[SPIKE] = 0.97
    scores[2_000_000:2_003_000] = np.nan  # 100 s dropped
    write_result(str(tmp_path), 'camera', scores, fps=30, video='rtsp://127.0.0.1/camera', live=True, ended=True,
                 hop=32, dropped_frames=3000)
    page.write_page(str(tmp_path))
    [entry] = page_data(tmp_path / 'index.html')['videos']
    firsts = assert_steps(entry['timeline'], scores, 0.5)
    spike = firsts[np.searchsorted(firsts, SPIKE, side='right') - 1]  # the first frame of the spike's span
    assert entry['timeline']['scores'][entry['timeline']['starts'].index(spike)] == 0.97
    assert os.path.getsize(tmp_path / 'index.html') < 100_000

    open_page(tab, tmp_path / 'index.html')
    assert tab.eval_on_selector_all('tr.event', 'rows => rows.length') == 1
    # each column's top: the first row of its bright colour, red (>= the threshold) or blue
    tops = tab.eval_on_selector('canvas', '''c => {
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data, tops = [];
        for (let x = 0; x < c.width; x++) {
          let found = [-1, ''];
          for (let y = 0; y < c.height; y++) {
            const [r, g, b, a] = d.slice(4 * (y * c.width + x), 4 * (y * c.width + x) + 4);
            if (a === 255 && r === 215 && g === 38 && b === 61) { found = [y, 'red']; break; }
            if (a === 255 && r === 59 && g === 125 && b === 216) { found = [y, 'blue']; break; }
          }
          tops.push(found);
        }
        return {tops, width: c.width, height: c.height};
      }''')
    width, height = tops['width'], tops['height']
    red = [x for x, (y, colour) in enumerate(tops['tops']) if colour == 'red']
    assert red and all(abs(x - SPIKE * width / DAY) <= 1 for x in red)
    assert all(tops['tops'][x][0] == round((1 - 0.97) * (height - 1)) for x in red)
    assert all(y >= round((1 - 0.3) * (height - 1)) for x, (y, colour) in enumerate(tops['tops']) if colour == 'blue')


def test_a_page_of_1000_videos_stays_small_and_loads(tab, folder, tmp_path):
    out = folder / 'results' / 'videos'
    report = json.load(open(out / 'b.json'))  # 5 minutes at 30 fps: 141 chunks of 4 snippets, about 35 events
    for i in range(1000):
        os.link(out / 'b.csv', tmp_path / f'v{i:04d}.csv')  # a copy, as far as the page can tell
        (tmp_path / f'v{i:04d}.json').write_text(json.dumps({**report, 'video': f'v{i:04d}_i3d.npy'}))
    assert page.write_page(str(tmp_path)) == 1000
    assert os.path.getsize(tmp_path / 'index.html') < PAGE_OF_1000
    open_page(tab, tmp_path / 'index.html')  # within the tab's 15 s timeout: measured 1-2.5 s (README)
    names = tab.eval_on_selector_all('section.video .name', 'e => e.map(x => x.textContent)')
    assert names == [f'v{i:04d}' for i in range(1000)]  # equal scores: by name


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serving(directory):
    """python -m http.server --directory directory, on 127.0.0.1: its URL."""
    handler = functools.partial(QuietHandler, directory=str(directory))
    with http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler) as httpd:
        thread = threading.Thread(target=httpd.serve_forever, kwargs={'poll_interval': 0.1}, daemon=True)
        thread.start()
        yield f'http://127.0.0.1:{httpd.server_address[1]}'
        httpd.shutdown()
        thread.join(5)


@pytest.fixture
def server(tmp_path):
    """tmp_path/results/live served over HTTP for the test's length."""
    os.makedirs(tmp_path / 'results' / 'live')
    with serving(tmp_path / 'results' / 'live') as address:
        yield address


def test_a_live_page_served_over_http_shows_a_new_event(tab, folder, tmp_path, monkeypatch, server):
    """live.py's outputs, as it writes them while running; then, the page open, one more event with its clip."""
    monkeypatch.chdir(tmp_path)
    clip = 'results/live/clips/cam-4.48s.mp4'
    os.makedirs('results/live/clips')
    shutil.copy(folder / 'Clip.mp4', clip)
    scores = np.array([0.1] * 48 + [0.9] * 16 + [0.2] * 48 + [0.8] * 16 + [0.2] * 32, np.float32)
    first = write_result('results/live', 'cam', scores[:112], video='rtsp://127.0.0.1/cam', live=True, ended=False,
                         hop=1, dropped_frames=0)
    first['events'][0]['clip'] = None
    write_atomic('results/live/cam.json', lambda f: f.write(json.dumps(first).encode()))
    page.write_page('results/live')
    tab.goto(f'{server}/index.html')
    tab.wait_for_selector('body[data-ready]', state='attached')
    assert tab.eval_on_selector_all('tr.event', 'rows => rows.length') == 1

    later = write_result('results/live', 'cam', scores, video='rtsp://127.0.0.1/cam', live=True, ended=True, hop=1,
                         dropped_frames=0)
    later['events'][0]['clip'], later['events'][1]['clip'] = None, clip
    write_atomic('results/live/cam.json', lambda f: f.write(json.dumps(later).encode()))
    tab.wait_for_function('() => document.querySelectorAll("tr.event").length === 2')  # polled, no reload
    rows = tab.eval_on_selector_all('section.video', ROWS)
    assert rows[0]['events'][1] == ['2', clock(112 / FPS), clock(128 / FPS), clock(128 / FPS - 112 / FPS),
                                    fixed(float(np.float32(0.8))), 'clip']
    assert tab.text_content('.badge') == 'live, ended'
    new = tab.locator('tr.event').nth(1)
    assert new.locator('a').evaluate('a => a.href') == f'{server}/clips/cam-4.48s.mp4'
    player(tab, 'p.addEventListener("playing", () => window.played = p.src)')
    new.locator('td').first.click()
    tab.wait_for_function('() => window.played')
    assert tab.evaluate('window.played') == f'{server}/clips/cam-4.48s.mp4'


# ---------------------------------------------------------------------------------------------- paths and sources
def rewrite(folder, name, **fields):
    """Change fields of a written result's JSON."""
    path = os.path.join(folder, name + '.json')
    report = {**json.load(open(path)), **fields}
    write_atomic(path, lambda f: f.write(json.dumps(report).encode()))
    return report


@pytest.fixture(scope='session')
def served(tmp_path_factory):
    """Results as detect.py and live.py write them into an absolute --out-dir, run in another folder (ran_here,
    which their reports record), the page written from a third, then the folder served over HTTP: cam (live.py
    on an RTSP URL: three events, the first clip with its clip_offset, the second without, the third's clip
    gone), far (a video outside the served folder), gone (a video in it, removed after the page was written),
    rec (a .ts recording), stdin (live.py on standard input), feat (a feature file). Yields (URL, folder)."""
    root = tmp_path_factory.mktemp('served')
    out = root / 'srv' / 'cams'
    os.makedirs(out / 'clips')
    os.makedirs(root / 'ran_here')
    for name in ('cam-1.00s.mp4', 'cam-6.00s.mp4'):
        encode_video(out / 'clips' / name, 2 * FPS)  # 2 s
    encode_video(root / 'far.mp4', FPS)
    shutil.copy(root / 'far.mp4', out / 'gone.mp4')
    scores = np.repeat(np.array([0.1, 0.9, 0.1, 0.1, 0.1, 0.1, 0.8, 0.1, 0.7, 0.1], np.float32), FPS)
    ran_here = str(root / 'ran_here')
    cam = write_result(str(out), 'cam', scores, video='rtsp://127.0.0.1:9/cam', live=True, ended=True, hop=1,
                       dropped_frames=0, cwd=ran_here)
    clips = [str(out / 'clips' / f'cam-{e["start_time"]:.2f}s.mp4') for e in cam['events']]
    events = [{**e, 'clip': clip} for e, clip in zip(cam['events'], clips)]
    events[0]['clip_offset'] = 1.0
    rewrite(str(out), 'cam', events=events)
    write_result(str(out), 'far', scores, video=str(root / 'far.mp4'), cwd=ran_here)
    write_result(str(out), 'gone', scores, video=str(out / 'gone.mp4'), cwd=ran_here)
    write_result(str(out), 'rec', scores, video='rec.ts', cwd=ran_here)
    write_result(str(out), 'stdin', scores, video='-', live=True, ended=True, hop=1, dropped_frames=0, cwd=ran_here)
    write_result(str(out), 'feat', scores, video='feat_i3d.npy', cwd=ran_here)
    assert page.write_page(str(out)) == 6
    os.remove(out / 'gone.mp4')
    with serving(out) as address:
        yield address, out


def open_served(tab, address):
    tab.goto(f'{address}/index.html')
    tab.wait_for_selector('body[data-ready]', state='attached')


def test_over_http_an_absolute_out_dir_plays_its_clips(tab, served):
    address, out = served
    open_served(tab, address)
    rows = tab.locator(f'{section("cam")} tr.event')
    assert rows.locator('a').evaluate_all('links => links.map(a => a.href)') == [
        f'{address}/clips/cam-1.00s.mp4', f'{address}/clips/cam-6.00s.mp4', f'{address}/clips/cam-8.00s.mp4']
    player(tab, 'p.addEventListener("loadeddata", () => window.loaded = p.src)')
    rows.nth(0).locator('td').first.click()
    tab.wait_for_function('() => window.loaded')
    assert tab.evaluate('window.loaded') == f'{address}/clips/cam-1.00s.mp4'
    assert player(tab, 'p.duration') == pytest.approx(2, abs=0.1)  # the clip itself, decoded
    assert tab.text_content('#now-playing') == 'cam: the clip of event 1; the event starts 0:01.00 into it'

    tab.evaluate('window.loaded = null')
    rows.nth(1).locator('td').first.click()  # no clip_offset: the clip ends with its event, 1 s long
    tab.wait_for_function('() => window.loaded')
    assert tab.evaluate('window.loaded') == f'{address}/clips/cam-6.00s.mp4'
    duration = player(tab, 'p.duration')
    assert tab.text_content('#now-playing') == (f'cam: the clip of event 2; the event starts about '
                                                f'{clock(duration - 1)} into it')


def test_over_http_a_file_the_page_cannot_reach_is_named_so(tab, served):
    address, out = served
    open_served(tab, address)
    tab.locator(f'{section("cam")} tr.event').nth(2).locator('td').first.click()  # the clip that is gone
    assert tab.text_content(f'{section("cam")} .note.error') == (
        f'cannot reach the clip of event 3: there is no such file as {out}/clips/cam-8.00s.mp4')
    tab.click(f'{section("far")} canvas', position={'x': 50, 'y': 20})  # above the served folder: not asked for
    assert tab.text_content(f'{section("far")} .note.error') == (
        'cannot reach ../../far.mp4 over HTTP: it is outside the folder this server serves (open index.html as a '
        'file, or serve a folder that holds it)')
    tab.click(f'{section("gone")} canvas', position={'x': 50, 'y': 20})  # removed since: the server says so
    note = tab.wait_for_selector(f'{section("gone")} .note.error')
    assert note.text_content() == 'cannot reach gone.mp4: the server answered 404 File not found'
    assert not any('far.mp4' in url for url in tab.requests)


def test_the_title_says_what_the_page_is_and_the_sources_what_they_are(tab, served):
    address, out = served
    open_served(tab, address)
    assert (tab.title(), tab.text_content('h1'), tab.text_content('#folder')) == (
        'Anomaly detection results: cams', 'Anomaly detection results', str(out))
    rows = {row['name']: row for row in tab.eval_on_selector_all('section.video', ROWS)}
    assert {name: row['meta']['source'] for name, row in rows.items()} == {
        'cam': 'stream rtsp://127.0.0.1:9/cam', 'far': str(out.parent.parent / 'far.mp4'), 'feat':
        'feature file feat_i3d.npy', 'gone': str(out / 'gone.mp4'), 'rec': 'stream rec.ts', 'stdin': 'standard input'}
    assert tab.eval_on_selector_all(f'{section("rec")} .links a', 'a => a.map(x => x.textContent)') == [
        'scores (CSV)', 'JSON']  # no "video" link
    assert tab.text_content(f'{section("rec")} .note') == (
        'nothing to play: rec.ts is a stream, which browsers do not play; detect.py --video-out writes an MP4 that '
        'plays')
    assert tab.text_content(f'{section("stdin")} .note') == ('nothing to play: standard input is a stream, which '
                                                             'browsers do not play')
    assert tab.text_content('#count-videos') == '2 videos, 1 feature file, 3 streams'


def test_page_py_in_another_folder_links_the_files_the_reports_name(folder):
    entries = {e['name']: e for e in page_data(folder / 'results' / 'videos' / 'index.html')['videos']}
    assert (entries['Clip']['play'], entries['Plain']['play']) == ('../../Clip.mp4', '../../Plain.avi')
    assert entries['Clip']['base'] == os.path.realpath(folder)  # detect.py's working folder, from its report


# ---------------------------------------------------------------------------------------------- watch.py's folder
def write_segment(out, camera, start_utc, first_frame, scores, events=(), ended=True, fps=FPS, hop=1):
    """A segment as watch.py writes it (segments.py): <camera>/<day>/<HH-MM-SS>.json and .csv, a score row per
    hop snippets (16 frames each), clock time start_utc + frames / fps."""
    t0, n = utc_seconds(start_utc), 16 * hop
    folder = os.path.join(out, camera, start_utc[:10])
    os.makedirs(folder, exist_ok=True)
    stem = os.path.join(folder, start_utc[11:19].replace(':', '-'))
    rows = ''.join(score_row(first_frame + n * i, first_frame + n * (i + 1), fps, utc_text(t0 + n * i / fps),
                             utc_text(t0 + n * (i + 1) / fps), score) for i, score in enumerate(scores))
    write_atomic(stem + '.csv', lambda f: f.write((SCORE_ROWS_HEADER + rows).encode()))
    frames = n * len(scores)
    report = {'video': f'rtsp://user:***@127.0.0.1/{camera}', 'features': None, 'fps': fps, 'frames': frames,
              'snippets': hop * len(scores), 'crops': 1, 'checkpoint': 'model.pth', 'test_split_size': 32,
              'threshold': 0.5, 'max_score': float(np.nanmax(scores)), 'events': list(events), 'camera': camera,
              'start_utc': start_utc, 'end_utc': utc_text(t0 + frames / fps), 'first_frame': first_frame, 'hop': hop,
              'dropped_frames': 0, 'live': True, 'ended': ended, 'end_reason': 'segment' if ended else None}
    write_atomic(stem + '.json', lambda f: f.write(json.dumps(report).encode()))
    return report


@pytest.fixture
def watched(tmp_path):
    """watch.py's folder, by hand: cam_a on 2026-12-04 (one segment) and 2026-12-05 (a segment from frame 1600
    with an event and its clip), cam_b on 2026-12-05 (a segment being written)."""
    out = tmp_path / 'watch'
    write_segment(out, 'cam_a', '2026-12-04T23:00:00.000Z', 0, np.full(10, 0.2, np.float32))
    scores = np.array([0.1] * 5 + [0.9] * 3 + [0.1] * 12, np.float32)  # frames 1680-1728 at or above 0.5
    clip = 'cam_a/2026-12-05/10-00-00-10-00-03.200.mp4'
    event = {'id': 'cam_a-20261205100003200', 'camera': 'cam_a', 'start_frame': 1680, 'end_frame': 1728,
             'start_time': 67.2, 'end_time': 69.12, 'start_utc': '2026-12-05T10:00:03.200Z',
             'end_utc': '2026-12-05T10:00:05.120Z', 'peak_score': float(np.float32(0.9)), 'clip': clip,
             'clip_offset': 1.25, 'reason': 'ended'}
    write_segment(out, 'cam_a', '2026-12-05T10:00:00.000Z', 1600, scores, [event])
    encode_video(out / clip, 3 * FPS)
    write_segment(out, 'cam_b', '2026-12-05T10:00:01.000Z', 0, np.array([0.3, np.nan, 0.4], np.float32), ended=False)
    return out


def test_watch_folder_page_of_the_latest_day_with_clock_times(tab, watched):
    assert page.write_page(str(watched)) == 2  # the latest day's segments
    assert sorted(f for f in os.listdir(watched) if f.endswith('.html')) == ['2026-12-04.html', 'index.html']
    entries = {e['name']: e for e in page_data(watched / 'index.html')['videos']}
    assert sorted(entries) == ['cam_a/2026-12-05/10-00-00', 'cam_b/2026-12-05/10-00-01']
    assert entries['cam_a/2026-12-05/10-00-00']['timeline'] == {'frames': 320, 'starts': [0, 80, 128],
                                                              'scores': [0.1, 0.9, 0.1]}
    assert entries['cam_b/2026-12-05/10-00-01']['timeline'] == {'frames': 48, 'starts': [0, 16, 32],
                                                              'scores': [0.3, None, 0.4]}

    open_page(tab, watched / 'index.html')
    assert tab.text_content('#folder') == f'{os.path.realpath(watched)} · 2026-12-05 (UTC)'
    days = tab.eval_on_selector_all('#days > *', 'e => e.map(x => [x.tagName, x.textContent, x.getAttribute("href")])')
    assert days == [['STRONG', '2026-12-05', None], ['A', '2026-12-04', '2026-12-04.html']]
    assert tab.text_content('#count-videos') == '2 cameras, 2 segments'
    assert tab.eval_on_selector_all('section.video h2', 'e => e.map(x => x.textContent)') == [
        'cam_a10:00:00.000 – 10:00:12.800 UTCended (segment)', 'cam_b10:00:01.000 – 10:00:02.920 UTCrecording']
    cam_a = section('cam_a/2026-12-05/10-00-00')
    assert tab.text_content(f'{cam_a} .source') == 'camera source rtsp://user:***@127.0.0.1/cam_a'
    assert tab.eval_on_selector_all(f'{cam_a} .axis span', 'e => e.map(x => x.textContent)') == [
        '10:00:00 UTC', '10:00:12 UTC']
    assert tab.eval_on_selector_all(f'{cam_a} tr', 'e => e.map(r => [...r.cells].map(c => c.textContent))') == [
        ['#', 'start (UTC)', 'end (UTC)', 'duration', 'peak', ''],
        ['1', '10:00:03.200', '10:00:05.120', clock(69.12 - 67.2), '0.900', 'clip']]
    player(tab, 'p.addEventListener("loadeddata", () => window.loaded = p.src)')
    tab.click(f'{cam_a} tr.event td')
    tab.wait_for_function('() => window.loaded')
    assert player(tab, 'decodeURIComponent(new URL(p.src).pathname)') == str(
        watched / 'cam_a' / '2026-12-05' / '10-00-00-10-00-03.200.mp4')
    assert tab.text_content('#now-playing') == ('cam_a 10:00:00 UTC: the clip of event 1; the event starts 0:01.25 '
                                                'into it')

    tab.click('#days a')  # the earlier day's page
    tab.wait_for_selector('body[data-ready]', state='attached')
    names = tab.eval_on_selector_all('section.video', 'e => e.map(s => s.dataset.name)')
    assert names == ['cam_a/2026-12-04/23-00-00']
    assert tab.text_content('#days') == 'Latest day: 2026-12-05'
    assert tab.eval_on_selector('#days a', 'a => a.getAttribute("href")') == 'index.html'


def test_watch_folder_earlier_days_are_written_again_only_when_they_change(watched):
    page.write_watch_page(str(watched))
    earlier = watched / '2026-12-04.html'
    os.utime(earlier, ns=(0, 4 * 10**18))  # in 2096, later than its day's files: kept as it is
    earlier.write_text(earlier.read_text() + '<!-- kept -->')
    os.utime(earlier, ns=(0, 4 * 10**18))
    page.write_watch_page(str(watched))
    assert earlier.read_text().endswith('<!-- kept -->')
    os.utime(earlier, ns=(0, 0))  # older than its day's files: written again
    page.write_watch_page(str(watched))
    assert not earlier.read_text().endswith('<!-- kept -->')
    shutil.rmtree(watched / 'cam_a' / '2026-12-04')  # retention removed the day: its page goes
    page.write_watch_page(str(watched))
    assert not earlier.exists() and [d['day'] for d in page_data(watched / 'index.html')['days']] == ['2026-12-05']


def test_a_camera_day_of_hop_1_scores_stays_small(tmp_path):
    rows = 162_000  # a day at 30 fps, a score per 16-frame snippet
    scores = np.repeat(np.random.default_rng(2).uniform(0.05, 0.3, rows // 100).astype(np.float32), 100)
    scores[123_456] = 0.97
    start = '2026-12-05T00:00:00.000Z'  # the page reads the frames of a row, not its clock times
    lines = ''.join(f'{16 * i},{16 * i + 16},0,0,{start},{start},{s:.9g}\n' for i, s in enumerate(scores.tolist()))
    write_segment(tmp_path, 'cam', '2026-12-05T00:00:00.000Z', 0, scores[:1], fps=30)
    (tmp_path / 'cam' / '2026-12-05' / '00-00-00.csv').write_text(SCORE_ROWS_HEADER + lines)
    assert page.write_watch_page(str(tmp_path)) == 1
    [entry] = page_data(tmp_path / 'index.html')['videos']
    assert_steps(entry['timeline'], np.repeat(scores, 16), 0.5)  # each span's maximum, the spike kept
    assert 0.97 in entry['timeline']['scores'] and os.path.getsize(tmp_path / 'index.html') < 100_000
