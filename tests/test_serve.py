"""serve.py: the live page of watch.py's folder over HTTP. Its state.json against the files and a plain loop; paths
out of the folder, binding and the token over plain HTTP; then, in headless Chromium (Playwright): two cameras with
their states, an event written after the page loaded shows without a reload and plays, a camera that starts
reconnecting shows so, a hostile camera label and clip name stay text, earlier days are a click away, and the
token given once as ?token= becomes a cookie."""
import hashlib
import http.client
import json
import math
import os
import urllib.parse

import pytest

import serve
from dataset import DataError
from results import SCORE_ROWS_HEADER, score_row, utc_seconds, utc_text
from test_detect import FPS, encode_video
from test_page import HOSTILE

DAY, BEFORE = '2026-03-04', '2026-03-03'
TOKEN = 'a token: with ; odd = characters'
NAN = float('nan')


def write_segment(out, camera, day, start, first_frame, scores, fps=FPS, threshold=0.5, hop=16):
    """A segment as watch.py writes it, starting at day's start (seconds after midnight): its report and its score
    rows, one per hop frames (watch.py's CSV)."""
    folder = os.path.join(out, camera, day)
    os.makedirs(folder, exist_ok=True)
    midnight = utc_seconds(f'{day}T00:00:00.000Z')
    stem = os.path.join(folder, utc_text(midnight + start)[11:19].replace(':', '-'))

    def utc(frame):
        return utc_text(midnight + start + (frame - first_frame) / fps)

    rows = [score_row(first_frame + i * hop, first_frame + (i + 1) * hop, fps, utc(first_frame + i * hop),
                      utc(first_frame + (i + 1) * hop), score) for i, score in enumerate(scores)]
    with open(stem + '.csv', 'w') as f:
        f.write(SCORE_ROWS_HEADER + ''.join(rows))
    report = {'video': 'rtsp://***@127.0.0.1/cam', 'fps': fps, 'frames': len(scores) * hop, 'threshold': threshold,
              'max_score': None, 'events': [], 'camera': camera, 'start_utc': utc(first_frame),
              'end_utc': utc(first_frame + len(scores) * hop), 'first_frame': first_frame, 'hop': hop,
              'dropped_frames': 0, 'live': True, 'ended': True, 'end_reason': 'segment'}
    with open(stem + '.json', 'w') as f:
        json.dump(report, f)


def event(camera, start_utc, end_utc, peak, clip):
    return {'id': f'{camera}-{"".join(c for c in start_utc if c.isdigit())}', 'camera': camera, 'start_frame': 0,
            'end_frame': 16, 'start_time': 0.0, 'end_time': 0.64, 'start_utc': start_utc, 'end_utc': end_utc,
            'peak_score': peak, 'clip': clip, 'reason': 'ended'}


def append_event(out, day, record):
    with open(os.path.join(out, record['camera'], day, 'events.jsonl'), 'a') as f:
        f.write(json.dumps(record) + '\n')


@pytest.fixture(scope='module')
def out_dir(tmp_path_factory):
    """Two cameras ('cam-a' and a hostile label) on DAY, cam-a on BEFORE too; one event each with a real clip."""
    out = str(tmp_path_factory.mktemp('watch'))
    write_segment(out, 'cam-a', BEFORE, 23 * 3600 + 59 * 60, 0, [0.25] * 100 + [0.75] * 100)  # past midnight
    write_segment(out, 'cam-a', DAY, 10 * 3600, 0, [0.25] * 50 + [NAN] * 3 + [0.9] + [0.25] * 50)
    write_segment(out, HOSTILE, DAY, 9 * 3600, 320, [0.1] * 10)
    for camera, day, name in (('cam-a', DAY, '10-00-00-10-00-20.000.mp4'),
                              ('cam-a', BEFORE, '23-59-00-23-59-10.000.mp4'),
                              (HOSTILE, DAY, f'09-00-00-{HOSTILE}.mp4')):
        encode_video(os.path.join(out, camera, day, name), 16)
    append_event(out, DAY, event('cam-a', f'{DAY}T10:00:20.000Z', f'{DAY}T10:00:22.560Z', 0.9,
                                 f'cam-a/{DAY}/10-00-00-10-00-20.000.mp4'))
    append_event(out, BEFORE, event('cam-a', f'{BEFORE}T23:59:10.000Z', f'{BEFORE}T23:59:40.000Z', 0.75,
                                    f'cam-a/{BEFORE}/23-59-00-23-59-10.000.mp4'))
    append_event(out, DAY, event(HOSTILE, f'{DAY}T09:00:01.000Z', f'{DAY}T09:00:02.000Z', 0.6,
                                 f'{HOSTILE}/{DAY}/09-00-00-{HOSTILE}.mp4'))
    return out


@pytest.fixture
def served(out_dir):
    """A PageServer on 127.0.0.1 at a free port, without a token; its snapshot is states, which the test changes."""
    states = {'cam-a': {'state': 'streaming', 'utc': None, 'score': 0.25, 'dropped_frames': 3},
              HOSTILE: {'state': 'behind', 'utc': None, 'score': None, 'dropped_frames': 0}}
    server = serve.PageServer(out_dir, '127.0.0.1', 0, None, lambda: {k: dict(v) for k, v in states.items()})
    server.start()
    yield server, states
    server.close()


def get(server, path, headers=None):
    """A plain HTTP GET, the path sent as it is (no normalising): (status, headers, body)."""
    connection = http.client.HTTPConnection('127.0.0.1', server.port, timeout=10)
    try:
        connection.request('GET', path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def state(server, day=DAY):
    status, headers, body = get(server, f'/state.json?day={day}')
    assert status == 200 and headers['Content-Type'].startswith('application/json')
    return json.loads(body)


# ---------------------------------------------------------------------------------------------- state.json
def bins_by_hand(rows, midnight):
    """rows: (clock time in seconds, score); each 43.2 s span of the day that has a row: its highest score, NaN
    only where all are NaN. A plain loop."""
    spans = {}
    for t, score in rows:
        if midnight <= t < midnight + 86400:
            spans.setdefault(math.floor((t - midnight) / 43.2), []).append(score)
    return {b: (max(s for s in v if not math.isnan(s)) if any(not math.isnan(s) for s in v) else NAN)
            for b, v in sorted(spans.items())}


def test_state_is_the_files_and_the_snapshot(served, out_dir):
    server, states = served
    states['cam-a']['utc'] = utc_text(utc_seconds(f'{DAY}T10:01:00.000Z'))
    data = state(server)
    assert (data['day'], data['today']) == (DAY, data['now_utc'][:10])
    assert data['days'] == sorted({data['today'], DAY, BEFORE}, reverse=True)
    a, hostile = data['cameras']
    assert (a['name'], a['state'], a['score'], a['dropped_frames']) == ('cam-a', 'streaming', 0.25, 3)
    assert abs(a['age'] - (utc_seconds(data['now_utc']) - utc_seconds(f'{DAY}T10:01:00.000Z'))) < 1
    assert (hostile['name'], hostile['state'], hostile['age']) == (HOSTILE, 'behind', None)

    # the timeline: BEFORE's last segment past midnight, then DAY's, each row at its clock time
    midnight = utc_seconds(f'{DAY}T00:00:00.000Z')
    rows = [(midnight - 60 + i * 16 / FPS, 0.25 if i < 100 else 0.75) for i in range(200)]
    rows += [(midnight + 36000 + i * 16 / FPS, s) for i, s in enumerate([0.25] * 50 + [NAN] * 3 + [0.9] + [0.25] * 50)]
    expected = bins_by_hand(rows, midnight)
    assert a['timeline']['bin_seconds'] == 43.2 and a['threshold'] == 0.5
    assert a['timeline']['bins'] == list(expected)
    assert a['timeline']['scores'] == [None if math.isnan(v) else v for v in expected.values()]
    assert 0.9 in a['timeline']['scores'] and 0.75 in a['timeline']['scores']
    assert hostile['timeline']['bins'] == [750] and hostile['timeline']['scores'] == [pytest.approx(0.1)]
    assert a['events'] == [{'id': f'cam-a-{DAY.replace("-", "")}100020000', 'start_utc': f'{DAY}T10:00:20.000Z',
                            'end_utc': f'{DAY}T10:00:22.560Z', 'start': 36020.0, 'end': 36022.56, 'peak_score': 0.9,
                            'reason': 'ended', 'clip': f'files/cam-a/{DAY}/10-00-00-10-00-20.000.mp4'}]
    assert hostile['events'][0]['clip'] == (f'files/%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E/{DAY}/'
                                            '09-00-00-%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E.mp4')

    before = state(server, BEFORE)['cameras']
    assert [c['name'] for c in before] == ['cam-a', HOSTILE]  # the snapshot's cameras, every day
    assert before[0]['timeline']['bins'] == list(bins_by_hand(rows, midnight - 86400))  # up to midnight only
    assert [e['start'] for e in before[0]['events']] == [86350.0]
    assert before[1]['timeline'] is None and before[1]['events'] == []
    assert get(server, '/state.json?day=..%2f..')[0] == get(server, '/state.json?day=2026-13-45')[0] == 404


# ---------------------------------------------------------------------------------------------- files, bind, token
def test_only_files_under_out_dir_are_served(served, out_dir, tmp_path):
    server, _ = served
    clip = f'cam-a/{DAY}/10-00-00-10-00-20.000.mp4'
    status, headers, body = get(server, f'/files/{clip}')
    assert (status, headers['Content-Type'], body) == (200, 'video/mp4', open(os.path.join(out_dir, clip), 'rb').read())
    (tmp_path / 'secret.txt').write_text('secret')
    os.symlink(tmp_path / 'secret.txt', os.path.join(out_dir, 'cam-a', 'out.txt'))
    os.symlink(tmp_path, os.path.join(out_dir, 'cam-a', 'out'))
    os.symlink(os.path.join(out_dir, clip), os.path.join(out_dir, 'in.mp4'))  # a symlink that stays in: served
    assert get(server, '/files/in.mp4')[0] == 200
    relative = os.path.relpath(tmp_path / 'secret.txt', out_dir)
    for path in ['/files/../serve.py', f'/files/{relative}', '/files/%2e%2e/%2e%2e/etc/passwd',
                 '/files/cam-a/%2e%2e/%2e%2e/etc/passwd', f'/files/cam-a%2f{DAY}%2f10-00-00-10-00-20.000.mp4',
                 '/files/%2fetc%2fpasswd', '/files//etc/passwd', '/files/cam-a/out.txt', '/files/cam-a/out/secret.txt',
                 '/files/cam-a%5c..%5c..%5csecret.txt', f'/files/cam-a/./{DAY}/10-00-00-10-00-20.000.mp4',
                 '/files/cam-a', '/files/%ff', '/../../etc/passwd', '/etc/passwd', '/files/']:
        status, _, body = get(server, path)
        assert (path, status) == (path, 404) and b'secret' not in body and b'root:' not in body


def test_a_non_loopback_bind_needs_a_token(out_dir):
    for bind in ('0.0.0.0', '192.0.2.7', '::', 'camera-host.lan'):
        with pytest.raises(DataError) as error:
            serve.PageServer(out_dir, bind, 8750, None, dict)
        assert str(error.value) == (f'http.bind {bind}: not a loopback address, so the page needs http.token (from '
                                    'the environment); set one, or bind 127.0.0.1')
    for bind in ('127.0.0.1', '::1', 'localhost', '127.0.0.2'):
        serve.PageServer(out_dir, bind, 8750, None, dict)  # no error, nothing started
    serve.PageServer(out_dir, '0.0.0.0', 8750, TOKEN, dict)


def test_a_port_in_use_is_one_line_and_close_frees_it(served, out_dir):
    server, _ = served
    line = rf'^http: cannot listen on 127\.0\.0\.1:{server.port}: .*address already in use$'
    with pytest.raises(DataError, match=line):
        serve.PageServer(out_dir, '127.0.0.1', server.port, None, dict).start()
    server.close()
    server.close()  # twice: nothing more
    again = serve.PageServer(out_dir, '127.0.0.1', server.port, None, dict)
    again.start()
    assert get(again, f'/state.json?day={DAY}')[0] == 200
    again.close()


def test_a_token_is_needed_on_every_path(out_dir):
    server = serve.PageServer(out_dir, '127.0.0.1', 0, TOKEN, dict)
    server.start()
    try:
        clip = f'/files/cam-a/{DAY}/10-00-00-10-00-20.000.mp4'
        for path in ('/', '/state.json', clip, '/nothing'):
            for headers in ({}, {'Authorization': 'Bearer wrong'}, {'Authorization': TOKEN},
                            {'Cookie': 'anomaly_token=wrong'}):
                status, response, body = get(server, path, headers)
                assert (status, response['WWW-Authenticate'], body) == (
                    401, 'Bearer', b'401: send the token (Authorization: Bearer, or ?token= once)\n')
            assert get(server, path + '?token=wrong')[0] == 401
        bearer = {'Authorization': f'Bearer {TOKEN}'}
        assert get(server, '/', bearer)[0] == 200 and get(server, clip, bearer)[0] == 200
        cameras = json.loads(get(server, f'/state.json?day={DAY}', bearer)[2])['cameras']
        assert [c['name'] for c in cameras] == [HOSTILE, 'cam-a']  # folders, by name
        assert get(server, '/nothing', bearer)[0] == 404

        query = 'token=' + urllib.parse.quote(TOKEN, safe='')
        status, response, _ = get(server, f'/state.json?day={DAY}&{query}')
        assert (status, response['Location']) == (303, f'state.json?day={DAY}')  # relative: right behind a proxy
        cookie = response['Set-Cookie']
        digest = hashlib.sha256(TOKEN.encode()).hexdigest()
        assert cookie == f'anomaly_token={digest}; HttpOnly; Path=/; SameSite=Strict'
        status, response, _ = get(server, f'/?{query}')
        assert (status, response['Location'], response['Set-Cookie']) == (303, './', cookie)
        status, response, body = get(server, f'/files/cam-a/x.mp4?a=%3C&{query}', {'Sec-Fetch-Site': 'cross-site'})
        assert (status, response['Set-Cookie'], body) == (
            200, cookie, b'<!doctype html><meta http-equiv="refresh" content="0;url=x.mp4?a=%3C">\n')
        status, _, body = get(server, f'/state.json?day={DAY}', {'Cookie': cookie.split(';')[0]})
        assert status == 200 and json.loads(body)['day'] == DAY
    finally:
        server.close()


# ---------------------------------------------------------------------------------------------- in Chromium
ROWS = '''sections => sections.map(s => ({
    name: s.querySelector('.name').textContent, state: s.querySelector('.state').textContent,
    meta: [...s.querySelectorAll('.meta span')].map(e => e.textContent),
    events: [...s.querySelectorAll('tr.event')].map(tr => [...tr.cells].map(td => td.textContent))}))'''


def open_live(tab, url):
    tab.goto(url)
    tab.wait_for_selector('body[data-ready]', state='attached')
    return tab.eval_on_selector_all('section.camera', ROWS)


def test_the_page_follows_the_files_and_the_states(tab, served, out_dir):
    server, states = served
    base = f'http://127.0.0.1:{server.port}/'
    rows = open_live(tab, f'{base}#{DAY}')
    assert rows == [
        {'name': 'cam-a', 'state': 'streaming', 'meta': ['no frame yet', 'score 0.250', '3 frames dropped'],
         'events': [['1', '10:00:20', '10:00:22', '2.6 s', '0.900', 'clip']]},
        {'name': HOSTILE, 'state': 'behind', 'meta': ['no frame yet', 'score –', '0 frames dropped'],
         'events': [['1', '09:00:01', '09:00:02', '1.0 s', '0.600', 'clip']]}]
    assert tab.evaluate('document.querySelectorAll("img").length') == 0  # the hostile label and clip: text

    # an event ends and a camera starts reconnecting, the page open: both show, without a reload
    tab.evaluate('window.notReloaded = true')
    line = json.dumps(event('cam-a', f'{DAY}T11:02:03.500Z', f'{DAY}T11:03:15.000Z', 0.875,
                            f'cam-a/{DAY}/10-00-00-10-00-20.000.mp4')) + '\n'
    with open(os.path.join(out_dir, 'cam-a', DAY, 'events.jsonl'), 'a') as f:
        f.write(line[:40])
        f.flush()
        assert len(state(server)['cameras'][0]['events']) == 1  # a line being written: left out
        f.write(line[40:])
    states['cam-a'].update(state='reconnecting', utc=utc_text(utc_seconds(f'{DAY}T10:01:00.000Z')))
    tab.wait_for_function('() => document.querySelector("section.camera").querySelectorAll("tr.event").length === 2')
    tab.wait_for_function('() => document.querySelector("section.camera .state").textContent === "reconnecting"')
    rows = tab.eval_on_selector_all('section.camera', ROWS)
    assert rows[0]['events'] == [['2', '11:02:03', '11:03:15', '1:11', '0.875', 'clip'],
                                 ['1', '10:00:20', '10:00:22', '2.6 s', '0.900', 'clip']]
    assert rows[0]['meta'][0].startswith('last frame ') and rows[0]['meta'][0].endswith(' d ago')
    assert tab.evaluate('window.notReloaded') is True

    # a click on an event plays its clip; the hostile clip's escaped URL too
    tab.evaluate('''() => { const p = document.getElementById("player"); window.played = [];
                            p.addEventListener("playing", () => window.played.push(p.src)); }''')
    tab.locator('section.camera').nth(0).locator('tr.event').nth(0).locator('td').first.click()
    tab.wait_for_function('() => window.played.length === 1')
    tab.locator('section.camera').nth(1).locator('tr.event td').first.click()
    tab.wait_for_function('() => window.played.length === 2')
    assert tab.evaluate('window.played') == [f'{base}files/cam-a/{DAY}/10-00-00-10-00-20.000.mp4',
                                             f'{base}{state(server)["cameras"][1]["events"][0]["clip"]}']
    assert tab.text_content('#now-playing') == f'{HOSTILE}, {DAY} 09:00:01 UTC'

    # the day before: a click away
    tab.click(f'#days a[href="#{BEFORE}"]')
    tab.wait_for_function(f'() => document.querySelector("#days a[aria-current]").textContent === "{BEFORE}"')
    tab.wait_for_function('() => document.querySelectorAll("tr.event").length === 1')
    assert tab.eval_on_selector_all('section.camera', ROWS)[0]['events'] == [
        ['1', '23:59:10', '23:59:40', '30.0 s', '0.750', 'clip']]
    assert tab.evaluate('window.notReloaded') is True


def test_the_token_given_once_becomes_a_cookie(tab, out_dir, tmp_path):
    server = serve.PageServer(out_dir, '127.0.0.1', 0, TOKEN, lambda: {'cam-a': {'state': 'stopped', 'utc': None,
                                                                                 'score': None, 'dropped_frames': 0}})
    server.start()
    try:
        base = f'http://127.0.0.1:{server.port}/'
        tab.goto(base)
        assert 'send the token' in tab.text_content('body')
        rows = open_live(tab, f'{base}?token={urllib.parse.quote(TOKEN, safe="")}#{DAY}')
        assert tab.url == f'{base}#{DAY}'  # the token is gone from the address
        assert [(row['name'], row['state']) for row in rows] == [('cam-a', 'stopped'), (HOSTILE, 'not watched')]
        [cookie] = tab.context.cookies()
        assert (cookie['name'], cookie['value'], cookie['httpOnly'], cookie['sameSite']) == (
            'anomaly_token', hashlib.sha256(TOKEN.encode()).hexdigest(), True, 'Strict')

        # from a link on another site (a file here): the cookie is set and sent as well
        tab.context.clear_cookies()
        link = tmp_path / 'link.html'
        link.write_text(f'<a id="link" href="{base}?token={urllib.parse.quote(TOKEN, safe="")}">cameras</a>')
        tab.goto(f'file://{link}')
        tab.click('#link')
        tab.wait_for_selector('body[data-ready]', state='attached')
        assert tab.url == base and tab.eval_on_selector_all('section.camera', ROWS)[0]['state'] == 'stopped'
    finally:
        server.close()
