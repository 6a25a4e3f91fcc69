"""watch.py's configuration file: YAML, every key checked before anything starts (load_config).

    model:
      ckpt: ckpt/SelfAttention-da64-r3-T32-seed9111.pth
      weights: i3d_baseline_32x2_IN_pretrain_400k.pkl
    cameras:
      front_door:
        source: rtsp://user:${FRONT_PASSWORD}@192.0.2.7/stream1
        threshold: 0.6
      garage:
        source: /dev/video0
        format: v4l2

Every key, with its default (a key that is left out takes it; `key:` with nothing after it is null, which only
the keys whose default is null take; a section with nothing in it, such as `http:`, takes its defaults):

model:                  the network, shared by every camera (required)
  ckpt                  (required) a checkpoint of train.py or the authors' released ones, for I3D features
  weights               (required) the I3D weights (i3d_r50_kinetics.pth, or FAIR's Caffe2 .pkl as it is)
  crops: 1              1 (the center crop) or 10 (TenCrop, 10x the work)
  device: auto          auto (CUDA when present), cpu or cuda
  backend: auto         auto, torch or openvino: what runs the I3D network
  batch_size: null      snippets through the network at a time (null: 1 on OpenVINO, else extract_features.py's)
detect:                 every camera's defaults; a camera may set any of these four itself
  test_split_size: 32   the window: snippets scored together, the test protocol's chunk
  hop: 1                new snippets each score waits for, 1 to the camera's test_split_size
  threshold: 0.5        an event is a run of frames scored at or above this, 0 to 1
  max_lag: 10           seconds of video waiting for the network before a camera drops its oldest snippets
record:
  out_dir: results/watch   where everything goes: <out_dir>/<camera>/<YYYY-MM-DD>/ (UTC dates)
  segment_minutes: 60   the length of a segment (its scores, report, clips and features), fractions allowed
  keep_days: 7          segments that started more than this many days ago are deleted (retention.py)
  keep_gb: null         the oldest segments are deleted while the recordings take more than this many GB
                        (10^9 bytes); null: no size limit
  features: false       write each segment's I3D features (<stem>_i3d.npy: 8 KB a snippet a crop)
  clips: true           write a clip of each event
  pre_roll: 5           seconds of video before each event in its clip, 0 or more
cameras:                (required, at least one) name: settings; a name is made of a-z, 0-9, _ and -, as it
                        names the camera's folder and its MQTT topics
  <name>:
    source              (required) what live.py takes but a pipe: a URL (rtsp://, rtmp://, http(s)://, udp://,
                        tcp://, srt://), a capture device (/dev/video0), or a video file, which must exist
    format: null        FFmpeg's input format, e.g. v4l2, mpegts (null: probed)
    realtime: false     play a file at its frame rate, as a camera delivers it
    reconnect: null     tries to reopen a source that ends or breaks (null: forever; 0: never)
    fps: null           frames per second of the time axis (null: the stream's own)
    frigate_camera: <name>  the camera's name in Frigate (a-z, A-Z, 0-9, _ and -)
    test_split_size, hop, threshold, max_lag: the camera's own (default: detect's)
mqtt:                   (left out: none) the alerts and the cameras' states on an MQTT broker:
  host                  (required) the broker
  port: 1883            1 to 65535
  username: null
  password: null        (only with a username)
  tls: false            TLS to the broker
  ca_file: null         the CA certificates to trust (only with tls: true; null: the system's)
  prefix: anomaly       the topics' prefix: <prefix>/<camera>/events ... (no + or #, no / at either end)
  client_id: anomaly-watch
  home_assistant: true  Home Assistant's MQTT discovery messages
  scores: false         also publish the last score, at most once a second
webhooks:               (left out: none) a list of endpoints, each event POSTed to each as JSON:
  - url                 (required) http:// or https://
    events: [start, end]   which ones: start, end or both
    headers: {}         HTTP headers sent with each, name: value (both strings)
frigate:                (left out: none) a Frigate NVR, which keeps the recording around each event:
  url                   (required) Frigate's http:// or https:// address (a trailing / is dropped)
  label: anomaly        the events' label in Frigate (a-z, A-Z, 0-9, _ and -)
http:                   (left out: none) the live review page, served read-only (http: alone: the defaults):
  bind: 127.0.0.1       the address it listens on; any but a loopback one (127.0.0.1, ::1, localhost) needs a token
  port: 8750            1 to 65535
  token: null           the token every request must bring, which must be given as ${VAR} (from the environment)

Numbers may be written as integers (a switch takes only true or false; an integer key never takes true or a
fraction). Relative paths (model.ckpt, model.weights, record.out_dir, mqtt.ca_file, a camera's file) are relative
to the folder of the configuration file, not to the working folder: the file works the same from wherever
watch.py is started (a service manager starts it in /), as Home Assistant's !include and docker compose's paths
do. A ~ is not expanded; write ${HOME}.

${VAR} in any string value is replaced by the environment variable VAR (a letter or _, then letters, digits or
_); a variable that is not set is an error naming it. Secrets (a camera's password, mqtt.password, http.token,
a webhook's Authorization header) belong there, not in the file. $${ is a literal ${; any other $ is itself.
Expansion makes strings only: a number or a switch is written in the file.

What load_config checks besides the values: the checkpoint loads (model.load_checkpoint) and takes I3D's
features; the weights file is there and not empty (video.check_weights; watch.py loads the network later);
record.out_dir can be written (cli.check_out_dir: nothing is created); mqtt.ca_file is a file; a camera's file
exists. A URL or a device is never opened here: a camera whose source does not answer waits and retries.
The YAML is read as safe_load reads it (plain data: no Python objects), except that a key given twice in one
mapping is refused (safe_load would keep the last silently) and every key is read as a string (a camera named
1 or no stays that name). Each mistake is a ConfigError of one line, `<file>: <key path>: <what is wrong>`.
"""
import difflib
import ipaddress
import math
import os
import re
from urllib.parse import urlsplit

import torch
import yaml

from cli import check_out_dir
from dataset import DataError
from i3d import FEATURE_SIZE as I3D_FEATURE_SIZE
from model import load_checkpoint
from stream import reopenable
from video import check_weights

REQUIRED = object()  # a key's default when it has none
CAMERA_NAME = re.compile(r'[a-z0-9_-]+')       # safe as a folder name and an MQTT topic level
FRIGATE_NAME = re.compile(r'[A-Za-z0-9_-]+')   # Frigate's camera names; used in its URLs' paths
VARIABLE = re.compile(r'\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$\{')
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP token
SECRET_QUERY = re.compile(r'([?&](?:password|passwd|pass|pwd|token|secret|key|api_key|apikey|auth)=)[^&#]*',
                          re.IGNORECASE)
STR_TAG = 'tag:yaml.org,2002:str'


class ConfigError(DataError):
    """A mistake in the configuration file, in one line: `<file>: <key path>: <what is wrong>`."""


def redact(url):
    """url with the password of its user part (scheme://user:password@host) and the values of its secret query
    parameters (password=, token=, key= ...) replaced by ***; anything that is not a URL as it is."""
    match = re.match(r'([A-Za-z][A-Za-z0-9+.-]*://)([^/?#]*)(.*)', url, re.DOTALL)
    if not match:
        return url
    scheme, authority, rest = match.groups()
    user, at, host = authority.rpartition('@')  # FFmpeg's split: the host follows the last @
    if ':' in user:
        user = user.split(':', 1)[0] + ':***'
    return scheme + user + at + host + SECRET_QUERY.sub(r'\1***', rest)


def load_config(path):
    """The configuration in the file `path` as a dict, every default filled (the module's docstring); every
    camera's settings are its effective ones. ConfigError at the first mistake."""
    return Checker(path).config(read_yaml(path))


# ------------------------------------------------------------------------------------------------- YAML
def read_yaml(path):
    try:
        with open(path, encoding='utf-8') as f:
            text = f.read()
    except FileNotFoundError:
        raise ConfigError(f'{path}: no such file')
    except IsADirectoryError:
        raise ConfigError(f'{path}: a folder, not a configuration file')
    except OSError as e:
        raise ConfigError(f'{path}: cannot be read ({e.strerror})')
    except UnicodeDecodeError as e:
        raise ConfigError(f'{path}: not a UTF-8 text file (byte {e.start})')
    loader = None
    try:
        loader = yaml.SafeLoader(text)
        node = loader.get_single_node()
        if node is None:
            raise ConfigError(f'{path}: empty: expected the sections model and cameras')
        check_keys(path, node, '', set())
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        raise ConfigError(f'{path}: line {mark.line + 1}, column {mark.column + 1}: not valid YAML: '
                          f'{e.problem or e.context}')
    except yaml.reader.ReaderError as e:
        raise ConfigError(f'{path}: line {text.count(chr(10), 0, e.position) + 1}: not valid YAML: '
                          f'unacceptable character #x{e.character:04x}: special characters are not allowed')
    finally:
        if loader:
            loader.dispose()


def check_keys(path, node, key_path, seen):
    """Every mapping under node: its keys are names, read as strings, and none is given twice (checked on the
    composed nodes, which still know their lines)."""
    if id(node) in seen:  # an alias of a node already checked
        return
    seen.add(id(node))
    if isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            check_keys(path, item, f'{key_path}[{i}]', seen)
    elif isinstance(node, yaml.MappingNode):
        lines = {}
        for key, value in node.value:
            line = key.start_mark.line + 1
            if key.tag != 'tag:yaml.org,2002:merge':  # <<: an alias, merged as safe_load merges it
                if not isinstance(key, yaml.ScalarNode):
                    raise ConfigError(f'{path}: line {line}: {key_path or "the top level"}: a key must be a name, '
                                      f'not a list or a mapping')
                key.tag = STR_TAG
                if key.value in lines:
                    raise ConfigError(f'{path}: {join(key_path, key.value)}: given twice, on lines '
                                      f'{lines[key.value]} and {line}')
                lines[key.value] = line
            check_keys(path, value, join(key_path, key.value), seen)


def join(key_path, key):
    return f'{key_path}.{key}' if key_path else key


def shown(value):
    """A value as an error shows it (its kind, for a list or a mapping)."""
    if value is None:
        return 'nothing'
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return repr(redact(value))
    if isinstance(value, (list, dict)):
        return 'a list' if isinstance(value, list) else 'a mapping'
    return str(value)


# ------------------------------------------------------------------------------------------------ values
# A check: (checker, key path, value) -> the value as the config holds it; checker.fail(key path, what) if wrong.
def number(what, ok, integer=False):
    def check(checker, key, value):
        if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)) or not ok(value):
            checker.fail(key, f'must be {what}, got {shown(value)}')
        return value if integer else float(value)
    return check


POSITIVE = number('a positive number', lambda v: 0 < v < math.inf)
POSITIVE_INTEGER = number('a positive integer', lambda v: v > 0, integer=True)
COUNT = number('an integer, 0 or more', lambda v: v >= 0, integer=True)
SECONDS = number('a number of seconds, 0 or more', lambda v: 0 <= v < math.inf)
SCORE = number('a number from 0 to 1, as the scores are', lambda v: 0 <= v <= 1)
PORT = number('a port, an integer from 1 to 65535', lambda v: 1 <= v <= 65535, integer=True)


def choice(*options):
    def check(checker, key, value):
        if not any(type(value) is type(option) and value == option for option in options):  # 1.0 and true aren't 1
            listed = ', '.join(map(str, options[:-1])) + ' or ' + str(options[-1])
            checker.fail(key, f'must be {listed}, got {shown(value)}')
        return value
    return check


def optional(check):
    """check, or null."""
    return lambda checker, key, value: None if value is None else check(checker, key, value)


def switch(checker, key, value):
    if not isinstance(value, bool):
        checker.fail(key, f'must be true or false, got {shown(value)}')
    return value


def text(checker, key, value):
    """A non-empty string, ${VAR} expanded."""
    if not isinstance(value, str):
        checker.fail(key, f'must be a string, got {shown(value)}')
    value = checker.expand(key, value)
    if not value:
        checker.fail(key, 'must not be empty')
    return value


def secret(checker, key, value):
    """text, which an error never shows."""
    if not isinstance(value, str):
        checker.fail(key, f'must be a string (in quotes if it looks like a number), got {type_name(value)}')
    return text(checker, key, value)


def type_name(value):
    return 'nothing' if value is None else 'true or false' if isinstance(value, bool) else \
        'a number' if isinstance(value, (int, float)) else shown(value)


def path(checker, key, value):
    """A file or folder, relative to the configuration file's folder."""
    return os.path.join(checker.folder, text(checker, key, value))


def named(pattern, what):
    def check(checker, key, value):
        value = text(checker, key, value)
        if not pattern.fullmatch(value):
            checker.fail(key, f'must be made of {what}, got {shown(value)}')
        return value
    return check


def web_url(checker, key, value):
    value = text(checker, key, value)
    try:
        parts = urlsplit(value)
        valid = parts.scheme in ('http', 'https') and parts.hostname and parts.port != 0
    except ValueError:  # a bracketed host that is not an IPv6 address, a port out of range
        valid = False
    if not valid:
        checker.fail(key, f'must be an http:// or https:// URL, got {shown(value)}')
    return value


def topic_prefix(checker, key, value):
    value = text(checker, key, value)
    if re.search(r'[+#\x00]', value) or value.startswith('/') or value.endswith('/'):
        checker.fail(key, f'must be an MQTT topic without + or # and without / at either end, got {shown(value)}')
    return value


def events(checker, key, value):
    if not isinstance(value, list) or not value or any(v not in ('start', 'end') for v in value) \
            or len(set(value)) < len(value):
        got = '[' + ', '.join(map(shown, value)) + ']' if isinstance(value, list) else shown(value)
        checker.fail(key, f'must be a list of start, end or both, got {got}')
    return [name for name in ('start', 'end') if name in value]


def headers(checker, key, value):
    value = checker.mapping(key, value, None)
    for name, content in value.items():
        if not HEADER_NAME.fullmatch(name):
            checker.fail(join(key, name), 'is not an HTTP header name')
        value[name] = secret(checker, join(key, name), content)
        if re.search(r'[\r\n\x00]', value[name]):
            checker.fail(join(key, name), 'a header value must be one line')
    return value


MODEL = {'ckpt': (path, REQUIRED), 'weights': (path, REQUIRED), 'crops': (choice(1, 10), 1),
         'device': (choice('auto', 'cpu', 'cuda'), 'auto'), 'backend': (choice('auto', 'torch', 'openvino'), 'auto'),
         'batch_size': (optional(POSITIVE_INTEGER), None)}
DETECT = {'test_split_size': (POSITIVE_INTEGER, 32),
          'hop': (lambda checker, key, value: value, 1),  # Checker.check_hop, against the camera's window
          'threshold': (SCORE, 0.5), 'max_lag': (POSITIVE, 10.0)}
RECORD = {'out_dir': (path, 'results/watch'), 'segment_minutes': (POSITIVE, 60.0), 'keep_days': (POSITIVE, 7.0),
          'keep_gb': (optional(POSITIVE), None), 'features': (switch, False), 'clips': (switch, True),
          'pre_roll': (SECONDS, 5.0)}
CAMERA = {'source': (text, REQUIRED), 'format': (optional(text), None), 'realtime': (switch, False),
          'reconnect': (optional(COUNT), None), 'fps': (optional(POSITIVE), None),
          'frigate_camera': (optional(named(FRIGATE_NAME, 'a-z, A-Z, 0-9, _ and -')), None),
          **{key: (check, None) for key, (check, _) in DETECT.items()}}  # None: detect's
MQTT = {'host': (text, REQUIRED), 'port': (PORT, 1883), 'username': (optional(text), None),
        'password': (optional(secret), None), 'tls': (switch, False), 'ca_file': (optional(path), None),
        'prefix': (topic_prefix, 'anomaly'), 'client_id': (text, 'anomaly-watch'),
        'home_assistant': (switch, True), 'scores': (switch, False)}
MQTT_DEFAULTS = {key: default for key, (_, default) in MQTT.items() if default is not REQUIRED}  # live.py's --mqtt
WEBHOOK = {'url': (web_url, REQUIRED), 'events': (events, ['start', 'end']), 'headers': (headers, {})}
FRIGATE = {'url': (web_url, REQUIRED), 'label': (named(FRIGATE_NAME, 'a-z, A-Z, 0-9, _ and -'), 'anomaly')}
HTTP = {'bind': (text, '127.0.0.1'), 'port': (PORT, 8750), 'token': (optional(secret), None)}
SECTIONS = {'model': MODEL, 'detect': DETECT, 'record': RECORD, 'cameras': None, 'mqtt': MQTT,
            'webhooks': None, 'frigate': FRIGATE, 'http': HTTP}
KEYS_OF = {'model': MODEL, 'detect': DETECT, 'record': RECORD, 'a camera': CAMERA, 'mqtt': MQTT,
           'a webhook': WEBHOOK, 'frigate': FRIGATE, 'http': HTTP}  # where a misplaced key belongs


# ----------------------------------------------------------------------------------------------- checker
class Checker:
    def __init__(self, path):
        self.file, self.folder = path, os.path.dirname(path)

    def fail(self, key, what):
        raise ConfigError(f'{self.file}: {key or "the top level"}: {what}')

    def expand(self, key, value):
        """value with each ${VAR} replaced by the environment's VAR and each $${ by ${."""
        def replace(match):
            if match[0] == '$${':
                return '${'
            if match[1] is None:
                self.fail(key, '${ must start a variable, ${NAME} (NAME: a letter or _, then letters, digits or _); '
                               'write $${ for a literal ${')
            if match[1] not in os.environ:
                self.fail(key, f'the environment variable {match[1]} is not set')
            return os.environ[match[1]]
        return VARIABLE.sub(replace, value)

    def mapping(self, key, value, known):
        """value, a mapping (null: an empty one) whose keys are all known (None: any key)."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(key, f'must be a mapping of {", ".join(known) if known else "names to values"}, '
                           f'got {shown(value)}')
        for name in value:
            if known is not None and name not in known:
                self.fail(join(key, name), unknown(name, known))
        return dict(value)

    def section(self, key, value, keys, inherited=None):
        """The mapping value, checked, with the keys left out given inherited's values, else their defaults (which
        pass through their checks too: a default path is relative to the file's folder, a list is a new one)."""
        given, inherited = self.mapping(key, value, keys), inherited or {}
        section = {}
        for name, (check, default) in keys.items():
            if name not in given and name not in inherited and default is REQUIRED:
                self.fail(join(key, name), 'missing')
            value = given[name] if name in given else inherited[name] if name in inherited else default
            section[name] = check(self, join(key, name), value)
        return section

    def config(self, document):
        top = self.mapping('', document, SECTIONS)
        for name in ('model', 'cameras'):
            if name not in top:
                self.fail(name, 'missing')
        config = {'model': self.section('model', top['model'], MODEL),
                  'detect': self.section('detect', top.get('detect'), DETECT),
                  'record': self.section('record', top.get('record'), RECORD)}
        self.check_hop('detect', config['detect'], "detect's")
        config['cameras'] = self.cameras(top['cameras'], config['detect'])
        config['mqtt'] = self.mqtt(top['mqtt']) if 'mqtt' in top else None
        config['webhooks'] = self.webhooks(top.get('webhooks'))
        config['frigate'] = self.section('frigate', top['frigate'], FRIGATE) if 'frigate' in top else None
        if config['frigate']:
            config['frigate']['url'] = config['frigate']['url'].rstrip('/')
        config['http'] = self.http(top['http']) if 'http' in top else None
        self.check_files(config)
        return config

    def cameras(self, value, detect):
        cameras = self.mapping('cameras', value, None)
        if not cameras:
            self.fail('cameras', 'no camera: give at least one, as name: {source: ...}')
        for name in cameras:
            key = join('cameras', name)
            if not CAMERA_NAME.fullmatch(name):
                self.fail(key, 'a camera name must be made of a-z, 0-9, _ and - (it names its folder and its MQTT '
                               'topics)')
            given = cameras[name]
            camera = cameras[name] = self.section(key, given, CAMERA, detect)
            camera['source'] = self.source(join(key, 'source'), camera['source'], camera['format'])
            camera['frigate_camera'] = camera['frigate_camera'] or name
            if 'hop' in (given or {}):
                self.check_hop(key, camera, "the camera's")
            else:
                self.check_hop('detect', camera, f"{key}'s")
        return cameras

    def check_hop(self, section, settings, whose):
        """The hop of settings, given in section, is an integer from 1 to the window of settings (whose window)."""
        window, hop = settings['test_split_size'], settings['hop']
        if isinstance(hop, bool) or not isinstance(hop, int) or not 1 <= hop <= window:
            self.fail(join(section, 'hop'), f'must be an integer from 1 to {window} ({whose} test_split_size), '
                                            f'got {shown(hop)}')

    def source(self, key, source, input_format):
        """A URL or a device as it is; a file, relative to the configuration's folder, which must exist."""
        if source == '-' or source.startswith('pipe:'):
            self.fail(key, 'a pipe is live.py\'s alone: watch.py takes a URL, a device or a file')
        if reopenable(source, input_format):
            return source
        if not source.startswith('file:'):
            source = os.path.join(self.folder, source)
        if not os.path.isfile(source.removeprefix('file:')):
            self.fail(key, f'{source}: no such file (a file must exist at start; a URL or a device is waited for)')
        return source

    def mqtt(self, value):
        mqtt = self.section('mqtt', value, MQTT)
        if mqtt['password'] is not None and mqtt['username'] is None:
            self.fail('mqtt.password', 'given without mqtt.username (MQTT sends a password only with a user name)')
        if mqtt['ca_file'] is not None and not mqtt['tls']:
            self.fail('mqtt.ca_file', 'given with tls: false (set tls: true to use it)')
        return mqtt

    def webhooks(self, value):
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail('webhooks', f'must be a list of {{url, events, headers}}, got {shown(value)}')
        return [self.section(f'webhooks[{i}]', hook, WEBHOOK) for i, hook in enumerate(value)]

    def http(self, value):
        http = self.section('http', value, HTTP)
        token = (value or {}).get('token')
        if token is not None and not re.fullmatch(r'\$\{[A-Za-z_][A-Za-z0-9_]*\}', token):
            self.fail('http.token', 'must come from the environment, written as ${VAR}: a token in the file is '
                                    'read by whoever reads the file')
        if http['token'] is None and not loopback(http['bind']):
            self.fail('http.bind', f'{http["bind"]} is reachable from other machines: set http.token (as ${{VAR}}) '
                                   'to require a token, or bind 127.0.0.1')
        return http

    def check_files(self, config):
        """The files the values name: the costly checks, after every value is known to be right."""
        model = config['model']
        if model['device'] == 'cuda' and not torch.cuda.is_available():
            self.fail('model.device', 'cuda, but this PyTorch sees no CUDA device')
        try:
            check_weights(model['weights'], f'{self.file}: model.weights:')
            check_out_dir(config['record']['out_dir'], f'{self.file}: record.out_dir:')
        except DataError as e:
            raise ConfigError(str(e))
        if config['mqtt'] and config['mqtt']['ca_file'] and not os.path.isfile(config['mqtt']['ca_file']):
            self.fail('mqtt.ca_file', f'{config["mqtt"]["ca_file"]}: no such file')
        try:
            network = load_checkpoint(model['ckpt'])
        except DataError as e:
            self.fail('model.ckpt', str(e))
        feature_size = network.self_anttention[0].in_features
        if feature_size != I3D_FEATURE_SIZE:
            self.fail('model.ckpt', f'{model["ckpt"]}: the checkpoint takes features of size {feature_size}, and '
                                    f'I3D\'s are {I3D_FEATURE_SIZE}: it cannot score video')


def loopback(bind):
    try:
        return bind == 'localhost' or ipaddress.ip_address(bind).is_loopback
    except ValueError:  # a host name
        return False


def unknown(name, known):
    """An unknown key's message, with the nearest known key, or the section it belongs in."""
    near = difflib.get_close_matches(name, known, n=1)
    if near:
        return f'unknown key; did you mean {near[0]}?'
    homes = [section for section, keys in KEYS_OF.items() if name in keys]
    if homes:
        return f'unknown key here; {name} is a key of {" and ".join(homes)}'
    return f'unknown key; the keys here are {", ".join(known)}'
