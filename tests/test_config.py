"""config.py: the issue's example configuration loads to the exact expected dict, every default filled; every
mistake is exactly its one line, naming the file and the key path, and nothing is written; redact hides passwords."""
import io
import os

import pytest
import torch

from config import ConfigError, load_config, redact
from model import VideoClassifier

EXAMPLE = """\
model:
  ckpt: ckpt/SelfAttention-da64-r3-T32-seed9111.pth
  weights: i3d_baseline_32x2_IN_pretrain_400k.pkl
  crops: 1                 # 1 or 10
  device: auto
detect:                    # defaults for every camera; a camera may override any of them
  test_split_size: 32
  hop: 1
  threshold: 0.5
  max_lag: 10
record:
  out_dir: results/watch
  segment_minutes: 60
  keep_days: 7
  keep_gb: 20
  features: false          # the _i3d.npy of each segment
  clips: true
  pre_roll: 5
cameras:
  front_door:
    source: rtsp://user:${FRONT_PASSWORD}@192.0.2.7/stream1
    threshold: 0.6
  garage:
    source: /dev/video0
    format: v4l2
  test_clip:
    source: clip.mp4
    realtime: true
"""
ALERTS = """\
mqtt:
  host: 192.0.2.9
  username: watch
  password: ${MQTT_PASSWORD}
webhooks:
  - url: https://hooks.example.com/anomaly
    events: [end]
    headers: {Authorization: "Bearer ${HOOK_TOKEN}"}
  - url: http://127.0.0.1:9000/
frigate:
  url: http://frigate.local:5000/
http:
  bind: 0.0.0.0
  token: ${PAGE_TOKEN}
"""
CKPT = 'ckpt/SelfAttention-da64-r3-T32-seed9111.pth'
WEIGHTS = 'i3d_baseline_32x2_IN_pretrain_400k.pkl'


@pytest.fixture(scope='module')
def checkpoints():
    """The bytes of a small checkpoint for I3D features (da=8, r=2), and of one for features of size 16."""
    def saved(feature_size):
        torch.manual_seed(0)
        buffer = io.BytesIO()
        torch.save(VideoClassifier(feature_size, 8, 2).state_dict(), buffer)
        return buffer.getvalue()
    return saved(2048), saved(16)


@pytest.fixture
def folder(tmp_path, monkeypatch, checkpoints):
    """A folder with the example's files (the weights only need to exist and not be empty: watch.py loads them
    later) and its environment; the working folder is elsewhere, so that relative paths show where they lead."""
    (tmp_path / 'ckpt').mkdir()
    (tmp_path / CKPT).write_bytes(checkpoints[0])
    (tmp_path / 'ckpt/f16.pth').write_bytes(checkpoints[1])
    (tmp_path / 'ckpt/foreign.pth').write_text('not a checkpoint')
    (tmp_path / WEIGHTS).write_bytes(b'\x80')
    (tmp_path / 'empty.pkl').write_bytes(b'')
    (tmp_path / 'clip.mp4').write_bytes(b'')
    (tmp_path / 'ca.pem').write_text('')
    for name in ('FRONT_PASSWORD', 'MQTT_PASSWORD', 'HOOK_TOKEN', 'PAGE_TOKEN'):
        monkeypatch.setenv(name, name.lower() + '-$3cr3t')
    monkeypatch.chdir(tmp_path.parent)
    return tmp_path


def write(folder, text):
    path = folder / 'cameras.yaml'
    path.write_text(text)
    return str(path)


def expected_example(folder):
    camera = {'format': None, 'realtime': False, 'reconnect': None, 'fps': None, 'test_split_size': 32, 'hop': 1,
              'threshold': 0.5, 'max_lag': 10.0}
    return {
        'model': {'ckpt': f'{folder}/{CKPT}', 'weights': f'{folder}/{WEIGHTS}', 'crops': 1, 'device': 'auto',
                  'backend': 'auto', 'batch_size': None},
        'detect': {'test_split_size': 32, 'hop': 1, 'threshold': 0.5, 'max_lag': 10.0},
        'record': {'out_dir': f'{folder}/results/watch', 'segment_minutes': 60.0, 'keep_days': 7.0,
                   'keep_gb': 20.0, 'features': False, 'clips': True, 'pre_roll': 5.0},
        'cameras': {
            'front_door': {**camera, 'source': 'rtsp://user:front_password-$3cr3t@192.0.2.7/stream1',
                           'threshold': 0.6, 'frigate_camera': 'front_door'},
            'garage': {**camera, 'source': '/dev/video0', 'format': 'v4l2', 'frigate_camera': 'garage'},
            'test_clip': {**camera, 'source': f'{folder}/clip.mp4', 'realtime': True, 'frigate_camera': 'test_clip'}},
        'mqtt': None, 'webhooks': [], 'frigate': None, 'http': None}


def test_the_example_loads_with_every_default_and_writes_nothing(folder):
    before = sorted(os.listdir(folder))
    config = load_config(write(folder, EXAMPLE))
    assert config == expected_example(folder)
    assert [type(v) for v in config['record'].values()] == [str, float, float, float, bool, bool, float]
    assert sorted(os.listdir(folder)) == sorted(before + ['cameras.yaml'])  # out_dir checked, not created


def test_the_alerts_sections_load_with_their_defaults(folder):
    config = load_config(write(folder, EXAMPLE + ALERTS))
    assert config['mqtt'] == {'host': '192.0.2.9', 'port': 1883, 'username': 'watch',
                              'password': 'mqtt_password-$3cr3t', 'tls': False, 'ca_file': None, 'prefix': 'anomaly',
                              'client_id': 'anomaly-watch', 'home_assistant': True, 'scores': False}
    assert config['webhooks'] == [
        {'url': 'https://hooks.example.com/anomaly', 'events': ['end'],
         'headers': {'Authorization': 'Bearer hook_token-$3cr3t'}},
        {'url': 'http://127.0.0.1:9000/', 'events': ['start', 'end'], 'headers': {}}]
    assert config['frigate'] == {'url': 'http://frigate.local:5000', 'label': 'anomaly'}
    assert config['http'] == {'bind': '0.0.0.0', 'port': 8750, 'token': 'page_token-$3cr3t'}
    config = load_config(write(folder, EXAMPLE.replace('  out_dir: results/watch\n', '') + 'http:\n'))
    assert config['http'] == {'bind': '127.0.0.1', 'port': 8750, 'token': None}  # a section left empty: defaults
    assert config['record']['out_dir'] == f'{folder}/results/watch'  # the default, relative to the file too


def test_per_camera_settings_and_yaml_details(folder):
    text = EXAMPLE.replace('    format: v4l2\n', '    format: v4l2\n    hop: 8\n    test_split_size: 16\n'
                                                 '    reconnect: 0\n    fps: 25\n    frigate_camera: Garage_1\n')
    text = text.replace('max_lag: 10', 'max_lag: 2.5').replace('realtime: true', 'realtime: true\n  "1":\n'
                                                                                 '    source: $${literal}.mp4')
    (folder / '${literal}.mp4').write_bytes(b'')
    cameras = load_config(write(folder, text))['cameras']
    assert cameras['garage'] == {'source': '/dev/video0', 'format': 'v4l2', 'realtime': False, 'reconnect': 0,
                                 'fps': 25.0, 'frigate_camera': 'Garage_1', 'test_split_size': 16, 'hop': 8,
                                 'threshold': 0.5, 'max_lag': 2.5}
    assert cameras['1']['source'] == f'{folder}/${{literal}}.mp4'  # a key is a string; $${ is a literal ${
    assert cameras['front_door']['max_lag'] == 2.5


CASES = [  # (the example's text, replaced by, the error after '<file>: '); {f}: the configuration's folder
    ('threshold: 0.5', 'treshold: 0.5', 'detect.treshold: unknown key; did you mean threshold?'),
    ('cameras:', 'camera:', 'camera: unknown key; did you mean cameras?'),
    ('format: v4l2', 'format: v4l2\n    keep_days: 3',
     'cameras.garage.keep_days: unknown key here; keep_days is a key of record'),
    ('format: v4l2', 'format: v4l2\n    colour: red', 'cameras.garage.colour: unknown key; the keys here are '
     'source, format, realtime, reconnect, fps, frigate_camera, test_split_size, hop, threshold, max_lag'),
    ('format: v4l2', 'format: v4l2\n    hop: 0',
     "cameras.garage.hop: must be an integer from 1 to 32 (the camera's test_split_size), got 0"),
    ('hop: 1', 'hop: 33', "detect.hop: must be an integer from 1 to 32 (detect's test_split_size), got 33"),
    ('hop: 1', 'hop: 16', "detect.hop: must be an integer from 1 to 8 (cameras.garage's test_split_size), got 16",
     ('format: v4l2', 'format: v4l2\n    test_split_size: 8')),
    ('hop: 1', 'hop: true', "detect.hop: must be an integer from 1 to 32 (detect's test_split_size), got true"),
    ('test_split_size: 32', 'test_split_size: 2.5', 'detect.test_split_size: must be a positive integer, got 2.5'),
    ('threshold: 0.6', 'threshold: 1.5',
     'cameras.front_door.threshold: must be a number from 0 to 1, as the scores are, got 1.5'),
    ('max_lag: 10', 'max_lag: .inf', 'detect.max_lag: must be a positive number, got inf'),
    ('crops: 1 ', 'crops: 5 ', 'model.crops: must be 1 or 10, got 5'),
    ('crops: 1 ', 'crops: true ', 'model.crops: must be 1 or 10, got true'),
    ('crops: 1 ', 'crops: 1.0 ', 'model.crops: must be 1 or 10, got 1.0'),
    ('device: auto', 'device: gpu', "model.device: must be auto, cpu or cuda, got 'gpu'"),
    ('device: auto', 'backend: onnx', "model.backend: must be auto, torch or openvino, got 'onnx'"),
    ('device: auto', 'batch_size: 0', 'model.batch_size: must be a positive integer, got 0'),
    ('segment_minutes: 60', 'segment_minutes: 0', 'record.segment_minutes: must be a positive number, got 0'),
    ('keep_days: 7', 'keep_days: -1', 'record.keep_days: must be a positive number, got -1'),
    ('keep_gb: 20', 'keep_gb: 20 GB', "record.keep_gb: must be a positive number, got '20 GB'"),
    ('pre_roll: 5', 'pre_roll: -1', 'record.pre_roll: must be a number of seconds, 0 or more, got -1'),
    ('features: false', 'features: "no"', "record.features: must be true or false, got 'no'"),
    ('realtime: true', 'realtime: 1', 'cameras.test_clip.realtime: must be true or false, got 1'),
    ('format: v4l2', 'format: v4l2\n    reconnect: -1', 'cameras.garage.reconnect: must be an integer, 0 or more, '
     'got -1'),
    ('    source: /dev/video0\n', '', 'cameras.garage.source: missing'),
    ('  ckpt: ' + CKPT + '\n', '', 'model.ckpt: missing'),
    ('test_clip:\n    source: clip.mp4\n    realtime: true', 'test_clip: /dev/video1',
     "cameras.test_clip: must be a mapping of source, format, realtime, reconnect, fps, frigate_camera, "
     "test_split_size, hop, threshold, max_lag, got '/dev/video1'"),
    ('  garage:', '  Garage:', 'cameras.Garage: a camera name must be made of a-z, 0-9, _ and - (it names its '
     'folder and its MQTT topics)'),
    ('  garage:', '  gar.age:', 'cameras.gar.age: a camera name must be made of a-z, 0-9, _ and - (it names its '
     'folder and its MQTT topics)'),
    ('  test_clip:', '  garage:', 'cameras.garage: given twice, on lines 23 and 26'),
    ('threshold: 0.6', 'threshold: 0.6\n    threshold: 0.7', 'cameras.front_door.threshold: given twice, on lines '
     '22 and 23'),
    ('record:', 'model:', 'model: given twice, on lines 1 and 11'),
    ('${FRONT_PASSWORD}', '${FRONT_PASWORD}',
     'cameras.front_door.source: the environment variable FRONT_PASWORD is not set'),
    ('${FRONT_PASSWORD}', '${FRONT PASSWORD}', 'cameras.front_door.source: ${ must start a variable, ${NAME} (NAME: '
     'a letter or _, then letters, digits or _); write $${ for a literal ${'),
    ('source: /dev/video0', 'source: "-"',
     "cameras.garage.source: a pipe is live.py's alone: watch.py takes a URL, a device or a file"),
    ('source: clip.mp4', 'source: clips/clip.mp4', 'cameras.test_clip.source: {f}/clips/clip.mp4: no such file '
     '(a file must exist at start; a URL or a device is waited for)'),
    (CKPT, 'ckpt/missing.pth', 'model.ckpt: {f}/ckpt/missing.pth: checkpoint not found'),
    (CKPT, 'ckpt/foreign.pth', 'model.ckpt: {f}/ckpt/foreign.pth: not a readable PyTorch checkpoint (UnpicklingError)'),
    (CKPT, 'ckpt/f16.pth', "model.ckpt: {f}/ckpt/f16.pth: the checkpoint takes features of size 16, and I3D's are "
     '2048: it cannot score video'),
    (WEIGHTS, 'missing.pkl', "model.weights: {f}/missing.pkl: no such file; the weights are FAIR's Kinetics-400 "
     'I3D baseline: `wget https://dl.fbaipublicfiles.com/video-nonlocal/i3d_baseline_32x2_IN_pretrain_400k.pkl` '
     "and pass that .pkl as it is, or convert it to i3d_r50_kinetics.pth with pytorch-resnet3d's "
     'utils/convert_weights.py (see README.md)'),
    (WEIGHTS, 'empty.pkl', 'model.weights: {f}/empty.pkl: an empty file (an interrupted download?); the weights '
     "are FAIR's Kinetics-400 I3D baseline: `wget https://dl.fbaipublicfiles.com/video-nonlocal/"
     'i3d_baseline_32x2_IN_pretrain_400k.pkl` and pass that .pkl as it is, or convert it to i3d_r50_kinetics.pth '
     "with pytorch-resnet3d's utils/convert_weights.py (see README.md)"),
    ('out_dir: results/watch', 'out_dir: clip.mp4/watch',
     'record.out_dir: {f}/clip.mp4/watch: {f}/clip.mp4 is a file, not a folder'),
    ('out_dir: results/watch', 'out_dir: /proc/watch',
     'record.out_dir: /proc/watch: cannot be created in /proc (No such file or directory)'),
    ('weights:', 'weight:', 'model.weight: unknown key; did you mean weights?'),
    ('clips: true', 'clips: true\n  pre_roll: 1', 'record.pre_roll: given twice, on lines 18 and 19'),
    ('keep_days: 7', 'keep_days: !!python/object/apply:os.system ["true"]', "line 14, column 14: not valid YAML: "
     "could not determine a constructor for the tag 'tag:yaml.org,2002:python/object/apply:os.system'"),
    ('    threshold: 0.6', '   threshold: 0.6', "line 22, column 4: not valid YAML: expected <block end>, "
     "but found '<block mapping start>'"),
]
ALERT_CASES = [
    ('  host: 192.0.2.9\n', '', 'mqtt.host: missing'),
    ('host:', 'hostname:', 'mqtt.hostname: unknown key; did you mean host?'),
    ('  username: watch\n', '  port: 0\n', 'mqtt.port: must be a port, an integer from 1 to 65535, got 0'),
    ('  username: watch\n', '  port: 65536\n', 'mqtt.port: must be a port, an integer from 1 to 65535, got 65536'),
    ('  username: watch\n', '', 'mqtt.password: given without mqtt.username (MQTT sends a password only with a '
     'user name)'),
    ('  username: watch\n', '  username: watch\n  ca_file: ca.pem\n',
     'mqtt.ca_file: given with tls: false (set tls: true to use it)'),
    ('  username: watch\n', '  username: watch\n  tls: true\n  ca_file: ca.crt\n', 'mqtt.ca_file: {f}/ca.crt: no '
     'such file'),
    ('password: ${MQTT_PASSWORD}', 'password: 123456',
     'mqtt.password: must be a string (in quotes if it looks like a number), got a number'),
    ('  username: watch\n', '  username: watch\n  prefix: cams/#\n',
     "mqtt.prefix: must be an MQTT topic without + or # and without / at either end, got 'cams/#'"),
    ('events: [end]', 'events: [start, stop]', "webhooks[0].events: must be a list of start, end or both, got "
     "['start', 'stop']"),
    ('events: [end]', 'events: []', 'webhooks[0].events: must be a list of start, end or both, got []'),
    ('{Authorization: "Bearer ${HOOK_TOKEN}"}', '[Authorization]',
     'webhooks[0].headers: must be a mapping of names to values, got a list'),
    ('{Authorization: "Bearer ${HOOK_TOKEN}"}', '{X-Count: 5}',
     'webhooks[0].headers.X-Count: must be a string (in quotes if it looks like a number), got a number'),
    ('{Authorization: "Bearer ${HOOK_TOKEN}"}', '{"Bad Name": x}',
     'webhooks[0].headers.Bad Name: is not an HTTP header name'),
    ('  - url: http://127.0.0.1:9000/', '  - url: ftp://127.0.0.1/',
     "webhooks[1].url: must be an http:// or https:// URL, got 'ftp://127.0.0.1/'"),
    ('  - url: http://127.0.0.1:9000/', '  - url: http://127.0.0.1:99999/',
     "webhooks[1].url: must be an http:// or https:// URL, got 'http://127.0.0.1:99999/'"),
    ('  - url: http://127.0.0.1:9000/', '  - events: [start]', 'webhooks[1].url: missing'),
    ('  url: http://frigate.local:5000/', '  label: anomaly', 'frigate.url: missing'),
    ('  url: http://frigate.local:5000/', '  url: rtsp://admin:${MQTT_PASSWORD}@frigate.local/',  # no password shown
     "frigate.url: must be an http:// or https:// URL, got 'rtsp://admin:***@frigate.local/'"),
    ('  url: http://frigate.local:5000/', '  url: http://frigate.local:5000/\n  label: an omaly',
     "frigate.label: must be made of a-z, A-Z, 0-9, _ and -, got 'an omaly'"),
    ('  token: ${PAGE_TOKEN}\n', '', 'http.bind: 0.0.0.0 is reachable from other machines: set http.token (as '
     '${VAR}) to require a token, or bind 127.0.0.1'),
    ('token: ${PAGE_TOKEN}', 'token: hunter2', 'http.token: must come from the environment, written as ${VAR}: a '
     'token in the file is read by whoever reads the file'),
    ('token: ${PAGE_TOKEN}', 'token: ${NO_SUCH_TOKEN}',
     'http.token: the environment variable NO_SUCH_TOKEN is not set'),
    ('mqtt:', 'mqtt_:', 'mqtt_: unknown key; did you mean mqtt?'),
    ('webhooks:', 'unused:', 'unused: unknown key; the keys here are model, detect, record, cameras, mqtt, '
     'webhooks, frigate, http'),
]


def check_error(folder, text, expected):
    path = write(folder, text)
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert str(raised.value) == f'{path}: ' + expected.replace('{f}', str(folder))
    assert not os.path.exists(folder / 'results')


@pytest.mark.parametrize('case', CASES, ids=[case[2].split(':')[0] + '-' + str(i) for i, case in enumerate(CASES)])
def test_each_mistake_is_its_one_line(folder, case):
    old, new, expected, *more = case
    assert old in EXAMPLE
    text = EXAMPLE.replace(old, new, 1)
    for old, new in more:
        text = text.replace(old, new, 1)
    check_error(folder, text, expected)


@pytest.mark.parametrize('case', ALERT_CASES, ids=[case[2].split(':')[0] + '-' + str(i)
                                                   for i, case in enumerate(ALERT_CASES)])
def test_each_alerts_mistake_is_its_one_line(folder, case):
    old, new, expected = case
    assert old in ALERTS
    check_error(folder, EXAMPLE + ALERTS.replace(old, new, 1), expected)


def test_file_level_mistakes(folder, monkeypatch):
    missing = str(folder / 'nothing.yaml')
    with pytest.raises(ConfigError, match=f'^{missing}: no such file$'):
        load_config(missing)
    check_error(folder, '# only a comment\n', 'empty: expected the sections model and cameras')
    check_error(folder, '- model\n- cameras\n', 'the top level: must be a mapping of model, detect, record, '
                                                'cameras, mqtt, webhooks, frigate, http, got a list')
    check_error(folder, EXAMPLE.replace('cameras:', 'cameras_:'), 'cameras_: unknown key; did you mean cameras?')
    before_cameras = EXAMPLE.split('cameras:')[0]
    check_error(folder, before_cameras, 'cameras: missing')
    for empty in ('cameras:\n', 'cameras: {}\n'):
        check_error(folder, before_cameras + empty, 'cameras: no camera: give at least one, as name: {source: ...}')
    check_error(folder, EXAMPLE + 'mqtt: [192.0.2.9]\n', 'mqtt: must be a mapping of host, port, username, password, '
                'tls, ca_file, prefix, client_id, home_assistant, scores, got a list')
    check_error(folder, EXAMPLE + 'webhooks: {url: x}\n',
                'webhooks: must be a list of {url, events, headers}, got a mapping')
    check_error(folder, EXAMPLE.replace('  garage:', '  [garage]:'),
                'line 23: cameras: a key must be a name, not a list or a mapping')
    check_error(folder, EXAMPLE.replace('max_lag: 10', 'max_lag: "\x07"'),
                'line 10: not valid YAML: unacceptable character #x0007: special characters are not allowed')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    check_error(folder, EXAMPLE.replace('device: auto', 'device: cuda'),
                'model.device: cuda, but this PyTorch sees no CUDA device')


def test_redact_hides_passwords_only():
    assert redact('rtsp://user:p@ss:w0rd@192.0.2.7:554/stream1') == 'rtsp://user:***@192.0.2.7:554/stream1'
    assert redact('rtsp://admin@192.0.2.7/s?channel=1&password=abc&Token=x#f') == \
        'rtsp://admin@192.0.2.7/s?channel=1&password=***&Token=***#f'
    for unchanged in ('rtsp://192.0.2.7/stream1', '/dev/video0', 'clip.mp4', 'http://h/a:b@c'):
        assert redact(unchanged) == unchanged
