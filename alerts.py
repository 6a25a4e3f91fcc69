"""Alerts: each anomaly event sent where people already look — an MQTT broker (with Home Assistant discovery),
webhooks and a Frigate NVR. watch.py and live.py call Alerts; every call returns at once and nothing here may slow
or stop detection: MQTT goes through paho's own bounded queue and network thread, and each HTTP endpoint has a
bounded queue and a thread of its own.

MQTT topics (<prefix>: mqtt.prefix, 'anomaly' by default):
    <prefix>/available         'online' (retained) once connected; 'offline' as the last will and on close
    <prefix>/<camera>/state    retained JSON, on every change and every STATE_EVERY seconds:
                               {'state', 'utc', 'score', 'dropped_frames', 'event': the open event's id or null}
    <prefix>/<camera>/events   QoS 1, not retained: {'type': 'start' | 'end', **the event's start or end record}
    <prefix>/<camera>/score    (mqtt.scores) the last score, at most once every SCORE_EVERY seconds
    homeassistant/{binary_sensor,sensor}/<prefix id>/<camera id>_{anomaly,score}/config    Home Assistant discovery
Webhooks get the events topic's JSON; Frigate gets one manual event per anomaly event (create at its start, end at
its end)."""
import argparse
import collections
import http.client
import json
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import paho.mqtt.client as mqtt

from config import MQTT_DEFAULTS
from dataset import DataError
from results import utc_seconds

MQTT_QUEUE = 1000           # QoS 1 messages (the events) paho holds while the broker is away; scores are never held
MQTT_KEEPALIVE = 30         # seconds; a silent broker counts as gone after 1.5 times this
RECONNECT_DELAYS = (1, 60)  # paho's backoff: 1 s after a failure, doubling up to 60 s
STATE_EVERY = 30.0          # seconds between two publications of an unchanged state
SCORE_EVERY = 1.0           # seconds between two publications of the score topic
HTTP_TIMEOUT = 5.0          # seconds for a webhook's or Frigate's connection, and for each read of its answer
HTTP_QUEUE = 100            # events waiting per HTTP endpoint; when full, the oldest is dropped (with a log line)
RETRY_DELAYS = (1, 2, 4, 8, 16)  # seconds before each retry of a failed delivery; then it is given up (logged)
CLOSE_SECONDS = 3.0         # how long close() waits for what can still be delivered
DISCOVERY = 'homeassistant'  # Home Assistant's default discovery prefix
SCORE_DIGITS = 4            # scores are published rounded to this many decimals


def json_text(record):
    """JSON of a record that may hold NumPy scalars (scores are float32)."""
    return json.dumps(record, default=lambda value: value.item())


def rounded(score):
    return None if score is None or score != score else round(float(score), SCORE_DIGITS)


def topic_id(name):
    """A name as Home Assistant's discovery topics and unique ids accept it: [A-Za-z0-9_-]."""
    return re.sub(r'[^A-Za-z0-9_-]', '_', name)


def topic_problem(name, levels):
    """What makes name unusable as the given part of a topic ('prefix': levels; 'camera': one level), or None."""
    if not name or any(c in name for c in '+#') or (levels == 'camera' and '/' in name):
        return f'{name!r}: not usable in an MQTT topic (empty, or holds + or #' + \
            (', or /)' if levels == 'camera' else ')')
    return None


def check_topic(name, levels, what):
    problem = topic_problem(name, levels)
    if problem:
        raise DataError(f'{what} {problem}')


def prefix_flag(text):
    """--mqtt-prefix's value, checked."""
    problem = topic_problem(text, 'prefix')
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


def host_port(text):
    """--mqtt's HOST[:PORT] (an IPv6 address in brackets) -> (host, port)."""
    match = re.fullmatch(r'(\[[^\]]+\]|[^:\[\]]+)(?::(\d+))?', text)
    if not match or (match[2] is not None and not 0 < int(match[2]) < 65536):
        raise argparse.ArgumentTypeError(f'{text!r}: expected HOST or HOST:PORT, the port 1 to 65535')
    return match[1].strip('[]'), int(match[2]) if match[2] else MQTT_DEFAULTS['port']


def add_mqtt_arguments(parser):
    """live.py's alert flags."""
    parser.add_argument('--mqtt', metavar='HOST[:PORT]', type=host_port,
                        help='publish events, state and Home Assistant discovery to this MQTT broker '
                             f'(port default {MQTT_DEFAULTS["port"]})')
    parser.add_argument('--mqtt-prefix', metavar='PREFIX', type=prefix_flag, default=MQTT_DEFAULTS['prefix'],
                        help="the MQTT topics' prefix: one per process publishing to the broker (each process "
                             'clears the Home Assistant discovery of cameras under its prefix that are not its own)')


def config_from_mqtt_flags(args):
    """Alerts' configuration from live.py's flags (webhooks and Frigate come only from watch.py's file)."""
    settings = None
    if args.mqtt:
        host, port = args.mqtt
        settings = {**MQTT_DEFAULTS, 'host': host, 'port': port, 'prefix': args.mqtt_prefix,
                    'client_id': topic_id(args.mqtt_prefix) + '-live'}
    return {'mqtt': settings, 'webhooks': [], 'frigate': None, 'cameras': {}}


def endpoint(url):
    """A URL as log lines show it: scheme, host and port only (webhook paths and queries often hold secrets)."""
    parts = urllib.parse.urlsplit(url)
    return f'{parts.scheme}://{parts.hostname}' + (f':{parts.port}' if parts.port else '')


class Alerts:
    """The alerts of watch.py's or live.py's cameras: config is load_config's dict (its mqtt, webhooks, frigate and
    cameras; config_from_mqtt_flags gives live.py's), cameras the camera names, log(line) the human log. The event
    records are those of events.jsonl; a state is {'state', 'utc', 'score', 'dropped_frames'}."""

    def __init__(self, config, cameras, log):
        self.mqtt = Mqtt(config['mqtt'], cameras, log) if config.get('mqtt') else None
        self.webhooks = [(hook['events'], Outbox(f'webhook {i + 1} ({endpoint(hook["url"])})',
                                                 Webhook(hook).deliver, log))
                         for i, hook in enumerate(config.get('webhooks') or [])]
        self.frigate = None
        if config.get('frigate'):
            frigate_cameras = {name: (config.get('cameras') or {}).get(name, {}).get('frigate_camera', name)
                               for name in cameras}
            self.frigate = Outbox(f'frigate ({endpoint(config["frigate"]["url"])})',
                                  Frigate(config['frigate'], frigate_cameras, log).deliver, log)

    def event_start(self, camera, start):
        self.event('start', camera, start)

    def event_end(self, camera, event):
        self.event('end', camera, event)

    def event(self, kind, camera, record):
        message = {'type': kind, **record}
        if self.mqtt:
            self.mqtt.event(camera, message)
        for kinds, outbox in self.webhooks:
            if kind in kinds:
                outbox.put(message)
        if self.frigate:
            self.frigate.put(message)

    def state(self, camera, state):
        if self.mqtt:
            self.mqtt.state(camera, state)

    def score(self, camera, utc, score):
        if self.mqtt:
            self.mqtt.score(camera, utc, score)

    def close(self, seconds=CLOSE_SECONDS):
        """'offline', then what can be delivered within `seconds`; the rest is logged as lost."""
        deadline = time.monotonic() + seconds
        outboxes = [outbox for _, outbox in self.webhooks] + ([self.frigate] if self.frigate else [])
        for outbox in outboxes:
            outbox.closing()
        if self.mqtt:
            self.mqtt.close(deadline)
        for outbox in outboxes:
            outbox.close(deadline)


class Mqtt:
    """The broker's side of Alerts. paho's network thread connects, reconnects with backoff and sends; the
    callers' threads only hand messages to paho (QoS 1 events are held while the broker is away, up to
    MQTT_QUEUE; state and scores are QoS 0, which paho drops while away: the state is published again on
    reconnecting)."""

    def __init__(self, settings, cameras, log):
        self.settings, self.log = settings, log
        self.prefix = settings['prefix']
        check_topic(self.prefix, 'prefix', 'mqtt.prefix')
        for camera in cameras:
            check_topic(camera, 'camera', 'camera')
        self.broker = f'{settings["host"]}:{settings["port"]}'
        self.available = f'{self.prefix}/available'
        self.lock = threading.Lock()
        self.states = {camera: {'state': None, 'utc': None, 'score': None, 'dropped_frames': 0, 'event': None}
                       for camera in cameras}
        self.score_sent = {}  # camera -> time.monotonic() of its last score message
        self.discovery = self.discovery_configs(cameras) if settings['home_assistant'] else {}
        self.own_retained = set(self.discovery) | {self.topic(camera, 'state') for camera in cameras}
        self.connected = False
        self.trouble = None  # the last connection problem logged, so that a retrying client logs it once
        self.stopping = threading.Event()

        client = self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=settings['client_id'])
        client.max_queued_messages_set(MQTT_QUEUE)
        client.reconnect_delay_set(*RECONNECT_DELAYS)
        client.will_set(self.available, 'offline', qos=1, retain=True)
        if settings['username'] is not None:
            client.username_pw_set(settings['username'], settings['password'])
        if settings['tls']:
            try:
                client.tls_set(ca_certs=settings['ca_file'])
            except (OSError, ValueError) as e:
                raise DataError(f'mqtt.ca_file {settings["ca_file"]}: not a readable CA certificate file ({e})')
        client.on_connect = self.on_connect
        client.on_connect_fail = self.on_connect_fail
        client.on_disconnect = self.on_disconnect
        client.on_message = self.on_message
        client.connect_async(settings['host'], settings['port'], keepalive=MQTT_KEEPALIVE)
        client.loop_start()
        self.heartbeat = threading.Thread(target=self.publish_states_every, name='mqtt-state', daemon=True)
        self.heartbeat.start()

    def topic(self, camera, leaf):
        return f'{self.prefix}/{camera}/{leaf}'

    def discovery_configs(self, cameras):
        """Home Assistant's discovery topics and their payloads: per camera a device with a binary sensor (ON while
        an event is open, from the state's 'event') and a sensor of its last score."""
        node = topic_id(self.prefix)
        configs = {}
        for camera in cameras:
            object_id = f'{node}_{topic_id(camera)}'
            shared = {'availability_topic': self.available, 'payload_available': 'online',
                      'payload_not_available': 'offline',
                      'device': {'identifiers': [object_id], 'name': camera, 'manufacturer': 'salient-feature-vad',
                                 'model': 'Video anomaly detection'}}
            configs[f'{DISCOVERY}/binary_sensor/{node}/{topic_id(camera)}_anomaly/config'] = {
                'name': 'Anomaly', 'unique_id': f'{object_id}_anomaly', 'device_class': 'problem',
                'state_topic': self.topic(camera, 'state'),
                'value_template': "{{ 'ON' if value_json.event else 'OFF' }}", **shared}
            score = ({'state_topic': self.topic(camera, 'score')} if self.settings['scores'] else
                     {'state_topic': self.topic(camera, 'state'), 'value_template': '{{ value_json.score }}'})
            configs[f'{DISCOVERY}/sensor/{node}/{topic_id(camera)}_score/config'] = {
                'name': 'Anomaly score', 'unique_id': f'{object_id}_score', 'state_class': 'measurement',
                **score, **shared}
        return configs

    # paho's network thread

    def on_connect(self, client, _userdata, _flags, reason, _properties):
        if reason.is_failure:
            hint = (' (check mqtt.username and mqtt.password)' if reason in ('Not authorized',
                                                                            'Bad user name or password') else '')
            self.report(f'mqtt: the broker {self.broker} refused the connection: {reason}{hint}; retrying '
                        'in the background, detection goes on')
            return
        self.connected, self.trouble = True, None
        self.log(f'mqtt: connected to {self.broker}')
        client.publish(self.available, 'online', qos=1, retain=True)
        for topic, config in self.discovery.items():
            client.publish(topic, json.dumps(config), qos=1, retain=True)
        # The retained discovery configs and states under our prefix that no configured camera owns are cleared:
        # those of cameras removed from the configuration (on_message).
        client.subscribe([(f'{DISCOVERY}/+/{topic_id(self.prefix)}/+/config', 0), (f'{self.prefix}/+/state', 0)])
        self.publish_states()

    def on_connect_fail(self, _client, _userdata):
        self.report(f'mqtt: warning: the broker {self.broker} cannot be reached; retrying in the background '
                    f'(events are kept, up to {MQTT_QUEUE} messages), detection goes on')

    def on_disconnect(self, _client, _userdata, _flags, reason, _properties):
        if self.connected and not self.stopping.is_set():
            self.report(f'mqtt: lost the broker {self.broker} ({reason}); reconnecting in the background '
                        f'(events are kept, up to {MQTT_QUEUE} messages)')
        self.connected = False

    def on_message(self, client, _userdata, message):
        # A subscriber gets the retain flag only on what was retained before it subscribed (the brokers' rule),
        # so this sees the leftovers at each connection, not our own messages coming back.
        if message.retain and message.payload and message.topic not in self.own_retained:
            client.publish(message.topic, b'', qos=1, retain=True)
            self.log(f'mqtt: cleared {message.topic} (no such camera in the configuration)')

    def report(self, line):
        if line != self.trouble:
            self.trouble = line
            self.log(line)

    def publish_states_every(self):
        while not self.stopping.wait(STATE_EVERY):
            self.publish_states()

    # any thread

    def publish_states(self):
        with self.lock:
            for camera, state in self.states.items():
                if state['state'] is not None:
                    self.client.publish(self.topic(camera, 'state'), json_text(state), retain=True)

    def state(self, camera, state):
        with self.lock:
            current = self.states[camera]
            current.update(state, score=rounded(state['score']))
            self.client.publish(self.topic(camera, 'state'), json_text(current), retain=True)

    def score(self, camera, utc, score):
        with self.lock:
            self.states[camera].update(utc=utc, score=rounded(score))
            now = time.monotonic()
            if self.settings['scores'] and rounded(score) is not None and \
                    now - self.score_sent.get(camera, -SCORE_EVERY) >= SCORE_EVERY:
                self.score_sent[camera] = now
                self.client.publish(self.topic(camera, 'score'), str(rounded(score)))

    def event(self, camera, message):
        with self.lock:
            info = self.client.publish(self.topic(camera, 'events'), json_text(message), qos=1)
            if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
                self.log(f'mqtt: {MQTT_QUEUE} messages wait for the broker {self.broker}; dropped the '
                         f'{message["type"]} of event {message["id"]}')
            current = self.states[camera]
            current['event'] = message['id'] if message['type'] == 'start' else None
            if current['state'] is not None:
                self.client.publish(self.topic(camera, 'state'), json_text(current), retain=True)

    def close(self, deadline):
        self.stopping.set()
        info = self.client.publish(self.available, 'offline', qos=1, retain=True)
        try:
            if self.connected:
                info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            published = info.is_published()
        except (RuntimeError, ValueError):  # not connected: paho holds it, and it raises when asked
            published = False
        if not published:
            self.log(f'mqtt: closed without reaching the broker {self.broker}; events not yet delivered are lost')
        self.client.disconnect()
        self.client.loop_stop()


class Undelivered(Exception):
    """A delivery that failed; retry: whether trying again may help (a time-out, a refused connection, a 5xx)."""

    def __init__(self, why, retry=True):
        super().__init__(why)
        self.retry = retry


def send_json(method, url, body, headers=None):
    """Send body as JSON; the answer's JSON (None when empty). Undelivered when it fails or answers not 2xx."""
    request = urllib.request.Request(url, data=json_text(body).encode(), method=method,
                                     headers={'Content-Type': 'application/json', **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:
            answer = response.read()
    except urllib.error.HTTPError as e:
        raise Undelivered(f'HTTP {e.code} {e.reason}', retry=e.code >= 500 or e.code in (408, 429))
    except urllib.error.URLError as e:
        raise Undelivered(str(e.reason))
    except (OSError, http.client.HTTPException) as e:  # a time-out or a dropped connection while reading
        raise Undelivered(str(e) or type(e).__name__)
    try:
        return json.loads(answer) if answer.strip() else None
    except ValueError:
        raise Undelivered('the answer is not JSON', retry=False)


class Webhook:
    def __init__(self, hook):
        self.url, self.headers = hook['url'], hook.get('headers') or {}

    def deliver(self, message):
        send_json('POST', self.url, message, self.headers)


class Frigate:
    """Frigate's manual events (its HTTP API): POST <url>/api/events/<camera>/<label>/create answers
    {"success", "message", "event_id"}; PUT <url>/api/events/<event_id>/end with {"end_time": seconds} ends it.
    Called from its Outbox's thread only."""

    def __init__(self, settings, cameras, log):
        self.url, self.label, self.cameras, self.log = settings['url'].rstrip('/'), settings['label'], cameras, log
        self.event_ids = {}  # our event id -> Frigate's

    def deliver(self, message):
        if message['type'] == 'start':
            camera = urllib.parse.quote(self.cameras.get(message['camera'], message['camera']), safe='')
            answer = send_json('POST', f'{self.url}/api/events/{camera}/{urllib.parse.quote(self.label, safe="")}'
                                       '/create',
                               {'sub_label': message['id'][:100], 'score': rounded(message['score']),
                                'duration': None, 'include_recording': True})
            if not isinstance(answer, dict) or not answer.get('event_id'):
                raise Undelivered('the answer holds no event_id', retry=False)
            self.event_ids[message['id']] = answer['event_id']
        elif message['id'] not in self.event_ids:
            self.log(f'frigate: event {message["id"]} was not created in Frigate, so it is not ended there')
        else:
            send_json('PUT', f'{self.url}/api/events/{urllib.parse.quote(self.event_ids[message["id"]], safe="")}/end',
                      {'end_time': utc_seconds(message['end_utc'])})
            del self.event_ids[message['id']]


class Outbox:
    """One endpoint's deliveries, in order: at most HTTP_QUEUE waiting messages (when full, the oldest is dropped,
    with a log line) and a thread that delivers each, retrying after RETRY_DELAYS, then gives it up (logged)."""

    def __init__(self, name, deliver, log):
        self.name, self.deliver, self.log = name, deliver, log
        self.waiting = collections.deque()
        self.changed = threading.Condition()
        self.stopping = False   # close() began: deliver what waits, each tried once
        self.abandoned = False  # close() gave up waiting: deliver nothing more
        self.thread = threading.Thread(target=self.run, name=name, daemon=True)
        self.thread.start()

    def put(self, message):
        with self.changed:
            if len(self.waiting) >= HTTP_QUEUE:
                dropped = self.waiting.popleft()
                self.log(f'{self.name}: {HTTP_QUEUE} events wait; dropped the oldest, the {dropped["type"]} of '
                         f'event {dropped["id"]}')
            self.waiting.append(message)
            self.changed.notify()

    def run(self):
        while True:
            with self.changed:
                self.changed.wait_for(lambda: self.waiting or self.stopping)
                if not self.waiting or self.abandoned:
                    return
                message = self.waiting.popleft()
            self.send(message)

    def send(self, message):
        for delay in (0,) + RETRY_DELAYS:
            with self.changed:
                if self.changed.wait_for(lambda: self.stopping, delay):
                    if delay:  # closing: no more retries
                        break
            try:
                self.deliver(message)
                return
            except Undelivered as e:
                why = e
                if not e.retry:
                    break
        self.log(f'{self.name}: gave up the {message["type"]} of event {message["id"]}: {why}')

    def closing(self):
        with self.changed:
            self.stopping = True
            self.changed.notify_all()

    def close(self, deadline):
        self.thread.join(max(0.0, deadline - time.monotonic()))
        with self.changed:
            self.abandoned = True
            if self.waiting:
                self.log(f'{self.name}: closed with {len(self.waiting)} events not delivered')
