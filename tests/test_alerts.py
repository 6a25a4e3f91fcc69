"""alerts.py against a real broker (Debian's mosquitto on 127.0.0.1, a configuration file of its own) and recording
HTTP servers: the topics' payloads field by field, Home Assistant discovery and the clearing of removed cameras, the
last will, a broker absent at start and going away (events delivered after, in order, once), a wrong password;
webhooks that fail and one that never answers; Frigate's manual events. Every wait is bounded."""
import argparse
import http.server
import json
import os
import shutil
import socket
import subprocess
import threading
import time

import numpy as np
import paho.mqtt.client as mqtt
import paho.mqtt.publish
import pytest

import alerts
from alerts import Alerts, add_mqtt_arguments, config_from_mqtt_flags
from dataset import DataError

MOSQUITTO = shutil.which('mosquitto') or '/usr/sbin/mosquitto'
WAIT = 15  # seconds any one awaited message or log line may take


@pytest.fixture
def mosquitto():
    if not os.path.isfile(MOSQUITTO):
        reason = f'no mosquitto at {MOSQUITTO} (Debian: apt-get install mosquitto)'
        if os.environ.get('CI'):
            pytest.fail(f'{reason}: CI runs the MQTT tests')
        pytest.skip(reason)


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class Broker:
    """mosquitto on 127.0.0.1 at a free port; stop() then start() keeps the port, and (persisted on stop) the
    retained messages and the persistent subscribers' sessions with what was queued for them."""

    def __init__(self, folder, *lines):
        self.folder, self.port = folder, free_port()
        self.conf = folder / 'mosquitto.conf'
        self.conf.write_text('\n'.join([f'listener {self.port} 127.0.0.1', 'persistence true',
                                        f'persistence_location {folder}/', *lines] +
                                       (['user root'] if os.geteuid() == 0 else [])) + '\n')
        self.process = None
        self.start()

    def start(self):
        self.process = subprocess.Popen([MOSQUITTO, '-c', str(self.conf)], stdout=subprocess.DEVNULL,
                                        stderr=open(self.folder / 'mosquitto.log', 'a'))
        deadline = time.monotonic() + WAIT
        while True:
            try:
                socket.create_connection(('127.0.0.1', self.port), timeout=1).close()
                return
            except OSError:
                assert self.process.poll() is None and time.monotonic() < deadline, \
                    (self.folder / 'mosquitto.log').read_text()
                time.sleep(0.05)

    def stop(self):
        self.process.terminate()
        self.process.wait(WAIT)


@pytest.fixture
def broker(mosquitto, tmp_path):
    brokers = []

    def start(*lines):
        folder = tmp_path / f'broker{len(brokers)}'
        folder.mkdir()
        brokers.append(Broker(folder, 'allow_anonymous true', *lines))
        return brokers[-1]
    yield start
    for b in brokers:
        if b.process.poll() is None:
            b.stop()


class Subscriber:
    """A paho client that records every message of its topics: (topic, payload text, retain flag). With a
    client_id its session is persistent (the broker queues its QoS 1 messages while it is away)."""

    def __init__(self, port, topics, client_id=None):
        self.messages = []
        self.changed = threading.Condition()
        subscribed = threading.Event()
        client = self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or '',
                                           clean_session=client_id is None)
        client.reconnect_delay_set(1, 1)
        client.on_connect = lambda c, *_: c.subscribe([(topic, 1) for topic in topics])
        client.on_subscribe = lambda *_: subscribed.set()
        client.on_message = self.on_message
        client.connect('127.0.0.1', port)
        client.loop_start()
        assert subscribed.wait(WAIT)

    def on_message(self, _client, _userdata, message):
        if message.dup:  # the broker sending again what this subscriber's lost ack left unconfirmed (QoS 1
            return       # between them); a second copy from alerts.py would come as a message of its own
        with self.changed:
            self.messages.append((message.topic, message.payload.decode(), bool(message.retain)))
            self.changed.notify_all()

    def payloads(self, topic):
        with self.changed:
            return [payload for t, payload, _ in self.messages if t == topic]

    def wait_for_state(self, topic, state):
        """Wait until the latest payload of topic (a camera's state topic) says state."""
        def latest():
            payloads = self.payloads(topic)
            return json.loads(payloads[-1])['state'] if payloads else None
        wait_for(lambda: latest() == state, f'{topic}: {state}, not {latest()}')

    def wait(self, topic, count=1):
        """The payloads of topic once there are at least count of them."""
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.payloads(topic)) >= count, WAIT), (topic, self.messages)
        return self.payloads(topic)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def retained(port, topics):
    """The retained messages of topics now: a new subscriber's first messages."""
    subscriber = Subscriber(port, topics)
    time.sleep(0.3)  # retained messages follow the subscription at once; this leaves them time to arrive
    subscriber.close()
    return {topic: payload for topic, payload, kept in subscriber.messages if kept}


def wait_for(condition, what):
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def mqtt_config(port, **settings):
    return {'mqtt': {**alerts.MQTT_DEFAULTS, 'host': '127.0.0.1', 'port': port, **settings},
            'webhooks': [], 'frigate': None, 'cameras': {}}


def start_record(camera, n):
    """The start of event n of camera, as watch.py passes it (its score a float32, as the model gives it)."""
    return {'id': f'{camera}-2026120517020{n}125', 'camera': camera, 'start_frame': 100 * n, 'start_time': 4.0 * n,
            'start_utc': f'2026-12-05T17:02:0{n}.125Z', 'score': np.float32(0.8125)}


def end_record(camera, n):
    return {'id': f'{camera}-2026120517020{n}125', 'camera': camera, 'start_frame': 100 * n,
            'end_frame': 100 * n + 50, 'start_time': 4.0 * n, 'end_time': 4.0 * n + 2.0,
            'start_utc': f'2026-12-05T17:02:0{n}.125Z', 'end_utc': f'2026-12-05T17:02:0{n + 2}.125Z',
            'peak_score': np.float32(0.9375), 'clip': f'{camera}/2026-12-05/17-00-00-17-02-0{n}.125.mp4',
            'reason': 'ended'}


def as_json(record):
    """A record as its JSON gives it back: plain floats."""
    return {key: float(value) if isinstance(value, np.floating) else value for key, value in record.items()}


def test_mqtt_topics_discovery_and_clearing(broker, monkeypatch):
    monkeypatch.setattr(alerts, 'SCORE_EVERY', 1000.0)  # one score message in this test, however slow the machine
    b = broker()
    leftovers = ['homeassistant/binary_sensor/anomaly/gone_anomaly/config',
                 'homeassistant/sensor/anomaly/gone_score/config', 'anomaly/gone/state']
    others = ['homeassistant/sensor/other/gone_score/config', 'other/gone/state']  # another prefix's: kept
    paho.mqtt.publish.multiple([(topic, '{"name": "x"}', 1, True) for topic in leftovers + others],
                               hostname='127.0.0.1', port=b.port)
    subscriber = Subscriber(b.port, ['#'])
    lines = []
    a = Alerts(mqtt_config(b.port, scores=True), ['front', 'back yard'], lines.append)
    assert subscriber.wait('anomaly/available') == ['online']
    wait_for(lambda: len(lines) == 4, lines)  # connected, then the leftovers cleared: on_connect has run
    assert lines[0] == f'mqtt: connected to 127.0.0.1:{b.port}'
    assert sorted(lines[1:]) == [f'mqtt: cleared {topic} (no such camera in the configuration)'
                                 for topic in sorted(leftovers)]
    for topic in leftovers:
        assert subscriber.wait(topic, 2) == ['{"name": "x"}', '']

    a.state('front', {'state': 'streaming', 'utc': '2026-12-05T17:02:00.000Z', 'score': None, 'dropped_frames': 0})
    a.score('front', '2026-12-05T17:02:00.040Z', np.float32(0.25))
    a.score('front', '2026-12-05T17:02:00.080Z', np.float32(0.5))  # within SCORE_EVERY of the first: not sent
    a.event_start('front', start_record('front', 1))
    a.event_end('front', end_record('front', 1))
    a.state('back yard', {'state': 'reconnecting', 'utc': None, 'score': None, 'dropped_frames': 3})
    subscriber.wait('anomaly/back yard/state')

    events = [json.loads(p) for p in subscriber.wait('anomaly/front/events', 2)]
    assert events == [{'type': 'start', **as_json(start_record('front', 1))},
                      {'type': 'end', **as_json(end_record('front', 1))}]
    assert subscriber.payloads('anomaly/front/score') == ['0.25']
    front = dict(state='streaming', dropped_frames=0)
    assert [json.loads(p) for p in subscriber.payloads('anomaly/front/state')] == [
        dict(front, utc='2026-12-05T17:02:00.000Z', score=None, event=None),
        dict(front, utc='2026-12-05T17:02:00.080Z', score=0.5, event='front-20261205170201125'),
        dict(front, utc='2026-12-05T17:02:00.080Z', score=0.5, event=None)]
    assert [json.loads(p) for p in subscriber.payloads('anomaly/back yard/state')] == [
        {'state': 'reconnecting', 'utc': None, 'score': None, 'dropped_frames': 3, 'event': None}]

    availability = {'availability_topic': 'anomaly/available', 'payload_available': 'online',
                    'payload_not_available': 'offline'}
    for camera, object_id in [('front', 'front'), ('back yard', 'back_yard')]:
        device = {'identifiers': [f'anomaly_{object_id}'], 'name': camera, 'manufacturer': 'salient-feature-vad',
                  'model': 'Video anomaly detection'}
        binary = subscriber.wait(f'homeassistant/binary_sensor/anomaly/{object_id}_anomaly/config')
        assert [json.loads(p) for p in binary] == [{
            'name': 'Anomaly', 'unique_id': f'anomaly_{object_id}_anomaly', 'device_class': 'problem',
            'state_topic': f'anomaly/{camera}/state', 'value_template': "{{ 'ON' if value_json.event else 'OFF' }}",
            **availability, 'device': device}]
        sensor = subscriber.wait(f'homeassistant/sensor/anomaly/{object_id}_score/config')
        assert [json.loads(p) for p in sensor] == [{
            'name': 'Anomaly score', 'unique_id': f'anomaly_{object_id}_score', 'state_class': 'measurement',
            'state_topic': f'anomaly/{camera}/score', **availability, 'device': device}]

    a.close()
    assert subscriber.wait('anomaly/available', 2) == ['online', 'offline']
    subscriber.close()
    kept = retained(b.port, ['#'])
    assert sorted(kept) == sorted(others + ['anomaly/available', 'anomaly/front/state', 'anomaly/back yard/state',
                                            'homeassistant/binary_sensor/anomaly/front_anomaly/config',
                                            'homeassistant/sensor/anomaly/front_score/config',
                                            'homeassistant/binary_sensor/anomaly/back_yard_anomaly/config',
                                            'homeassistant/sensor/anomaly/back_yard_score/config'])
    assert kept['anomaly/available'] == 'offline'
    assert json.loads(kept['anomaly/front/state'])['event'] is None


def test_mqtt_state_every_period_and_last_will(broker, monkeypatch):
    monkeypatch.setattr(alerts, 'STATE_EVERY', 0.2)
    b = broker()
    subscriber = Subscriber(b.port, ['#'])
    a = Alerts(mqtt_config(b.port, home_assistant=False), ['cam'], lambda line: None)
    subscriber.wait('anomaly/available')
    a.state('cam', {'state': 'behind', 'utc': '2026-12-05T17:02:00.000Z', 'score': np.float32(0.125),
                    'dropped_frames': 7})
    states = subscriber.wait('anomaly/cam/state', 3)  # the call's, then the same again every STATE_EVERY
    assert {json.loads(p) == {'state': 'behind', 'utc': '2026-12-05T17:02:00.000Z', 'score': 0.125,
                              'dropped_frames': 7, 'event': None} for p in states} == {True}
    assert subscriber.payloads('anomaly/cam/score') == []  # scores: false

    # The process dies: its connection ends without a word; the broker publishes the last will.
    a.mqtt.client.loop_stop()
    a.mqtt.client.socket().close()
    assert subscriber.wait('anomaly/available', 2) == ['online', 'offline']
    subscriber.close()
    assert retained(b.port, ['anomaly/available']) == {'anomaly/available': 'offline'}


def test_mqtt_broker_absent_then_away(broker):
    """Absent at start (a warning), back, away again: the events of both outages arrive after, in order, once."""
    b = broker()
    subscriber = Subscriber(b.port, ['anomaly/+/events'], client_id='test-subscriber')  # persistent: queued for
    b.stop()
    lines = []
    a = Alerts(mqtt_config(b.port), ['cam'], lines.append)
    wait_for(lambda: lines, 'no warning')
    assert lines == [f'mqtt: warning: the broker 127.0.0.1:{b.port} cannot be reached; retrying in the '
                     f'background (events are kept, up to {alerts.MQTT_QUEUE} messages), detection goes on']
    a.event_start('cam', start_record('cam', 1))
    a.event_end('cam', end_record('cam', 1))
    b.start()
    subscriber.wait('anomaly/cam/events', 2)
    b.stop()
    wait_for(lambda: any(line.startswith('mqtt: lost the broker') for line in lines), lines)
    a.event_start('cam', start_record('cam', 2))
    a.event_end('cam', end_record('cam', 2))
    a.event_start('cam', start_record('cam', 3))
    b.start()
    a.event_end('cam', end_record('cam', 3))
    events = [json.loads(p) for p in subscriber.wait('anomaly/cam/events', 6)]
    time.sleep(0.5)  # a duplicate would come now
    assert subscriber.payloads('anomaly/cam/events') == [json.dumps(e) for e in events]
    assert events == [{'type': kind, **as_json(record('cam', n))} for n in (1, 2, 3)
                      for kind, record in [('start', start_record), ('end', end_record)]]
    a.close()
    subscriber.close()
    assert sum(line.startswith('mqtt: connected') for line in lines) == 2


def test_mqtt_queue_bound(monkeypatch):
    """With no broker, paho holds MQTT_QUEUE event messages; one more is dropped, with a log line."""
    monkeypatch.setattr(alerts, 'MQTT_QUEUE', 3)
    lines = []
    a = Alerts(mqtt_config(free_port()), ['cam'], lines.append)
    for n in range(5):
        a.event_start('cam', start_record('cam', n))
    a.close(0)
    assert [line for line in lines if 'dropped' in line] == [
        f'mqtt: 3 messages wait for the broker 127.0.0.1:{a.mqtt.settings["port"]}; dropped the start of event '
        f'cam-2026120517020{n}125' for n in (3, 4)]


def test_mqtt_wrong_password(broker, tmp_path):
    passwords = tmp_path / 'passwords'
    subprocess.run(['mosquitto_passwd', '-b', '-c', str(passwords), 'watch', 'right'], check=True)
    b = broker(f'password_file {passwords}')  # with allow_anonymous true, a wrong password is still refused
    lines = []
    a = Alerts(mqtt_config(b.port, username='watch', password='wrong'), ['cam'], lines.append)
    wait_for(lambda: lines, 'nothing logged')
    a.event_start('cam', start_record('cam', 1))  # returns: detection goes on
    time.sleep(2.5)  # paho retries after 1 s, then 2 s: the same refusal is not logged again
    assert lines == [f'mqtt: the broker 127.0.0.1:{b.port} refused the connection: Not authorized (check '
                     'mqtt.username and mqtt.password); retrying in the background, detection goes on']
    a.close(0.5)
    assert lines[1:] == [f'mqtt: closed without reaching the broker 127.0.0.1:{b.port}; events not yet '
                         'delivered are lost']

    subscriber = Subscriber(b.port, ['anomaly/available'])
    a = Alerts(mqtt_config(b.port, username='watch', password='right'), ['cam'], lambda line: None)
    assert subscriber.wait('anomaly/available') == ['online']
    a.close()
    subscriber.close()


class Recorder(http.server.BaseHTTPRequestHandler):
    """Records each request (method, path, headers, JSON body) and answers server.answer(method, path)."""

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers['Content-Length'])))
        status, answer = self.server.answer(self.command, self.path)
        self.server.received.append((self.command, self.path, dict(self.headers), body))
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_PUT = do_POST

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    servers = []

    def start(answer):
        server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Recorder)
        server.received, server.answer = [], answer
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server, f'http://127.0.0.1:{server.server_port}'
    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_webhooks_retry_in_order_and_filter(http_server, monkeypatch):
    monkeypatch.setattr(alerts, 'RETRY_DELAYS', (0.05, 0.1, 0.2))
    calls = []

    def fail_twice(method, path):
        calls.append(path)
        return (503, {'error': 'busy'}) if len(calls) <= 2 else (200, {'ok': True})
    flaky, flaky_url = http_server(fail_twice)
    ends, ends_url = http_server(lambda method, path: (204, None))
    lines = []
    a = Alerts({'mqtt': None, 'frigate': None, 'cameras': {},
                'webhooks': [{'url': flaky_url + '/hook?key=secret', 'events': ['start', 'end'],
                              'headers': {'Authorization': 'Bearer abc'}},
                             {'url': ends_url + '/ends', 'events': ['end'], 'headers': {}}]},
               ['cam'], lines.append)
    a.event_start('cam', start_record('cam', 1))
    a.event_end('cam', end_record('cam', 1))
    a.event_start('cam', start_record('cam', 2))
    wait_for(lambda: len(flaky.received) == 5 and len(ends.received) == 1, (flaky.received, ends.received))
    a.close()
    time.sleep(0.3)  # a duplicate would come now
    assert [r[3] for r in flaky.received[2:]] == [{'type': 'start', **as_json(start_record('cam', 1))},
                                                  {'type': 'end', **as_json(end_record('cam', 1))},
                                                  {'type': 'start', **as_json(start_record('cam', 2))}]
    assert [r[3] for r in flaky.received[:2]] == [flaky.received[2][3]] * 2  # the two failed tries
    assert {(method, path) for method, path, _, _ in flaky.received} == {('POST', '/hook?key=secret')}
    assert {(h['Authorization'], h['Content-Type']) for _, _, h, _ in flaky.received} == \
        {('Bearer abc', 'application/json')}
    assert [r[:2] + (r[3],) for r in ends.received] == [('POST', '/ends', {'type': 'end',
                                                                          **as_json(end_record('cam', 1))})]
    assert lines == []


def test_webhook_that_never_answers(monkeypatch):
    """Calls return while the endpoint holds the first delivery; the queue keeps the newest HTTP_QUEUE events."""
    monkeypatch.setattr(alerts, 'HTTP_QUEUE', 5)
    listener = socket.create_server(('127.0.0.1', 0))
    held = []

    def hold():  # accept, read nothing, answer nothing
        while True:
            try:
                held.append(listener.accept()[0])
            except OSError:
                return
    threading.Thread(target=hold, daemon=True).start()
    lines = []
    a = Alerts({'mqtt': None, 'frigate': None, 'cameras': {},
                'webhooks': [{'url': f'http://127.0.0.1:{listener.getsockname()[1]}/', 'events': ['start'],
                              'headers': {}}]}, ['cam'], lines.append)
    a.event_start('cam', start_record('cam', 0))
    wait_for(lambda: held, 'no connection')  # the first event is being delivered
    for n in range(1, 9):
        a.event_start('cam', start_record('cam', n))
    outbox = a.webhooks[0][1]
    name = f'webhook 1 (http://127.0.0.1:{listener.getsockname()[1]})'
    assert [m['id'] for m in outbox.waiting] == [f'cam-2026120517020{n}125' for n in range(4, 9)]
    assert lines == [f'{name}: 5 events wait; dropped the oldest, the start of event cam-2026120517020{n}125'
                     for n in (1, 2, 3)]
    a.close(0.2)
    assert lines[3:] == [f'{name}: closed with 5 events not delivered']
    listener.close()
    for connection in held:
        connection.close()


def test_frigate_events(http_server):
    ended = []

    def frigate(method, path):  # Frigate's answers (frigate/api/event.py: create_event, end_event)
        parts = path.split('/')
        if method == 'POST' and parts[-1] == 'create':
            if parts[3] != 'front_door':
                return 404, {'success': False, 'message': f'{parts[3]} is not a valid camera.'}
            return 200, {'success': True, 'message': 'Successfully created event.',
                         'event_id': f'1796524210.{len(ended)}-abc123'}
        ended.append(parts[3])
        return 200, {'success': True, 'message': 'Event successfully ended.'}
    server, url = http_server(frigate)
    lines = []
    a = Alerts({'mqtt': None, 'webhooks': [], 'frigate': {'url': url + '/', 'label': 'anomaly'},
                'cameras': {'front': {'frigate_camera': 'front_door'}, 'yard': {'frigate_camera': 'yard'}}},
               ['front', 'yard'], lines.append)
    for camera in ['front', 'yard']:
        a.event_start(camera, start_record(camera, 1))
        a.event_end(camera, end_record(camera, 1))
    wait_for(lambda: len(lines) == 2, lines)
    a.close()
    assert [r[:2] + (r[3],) for r in server.received] == [
        ('POST', '/api/events/front_door/anomaly/create',
         {'sub_label': 'front-20261205170201125', 'score': 0.8125, 'duration': None, 'include_recording': True}),
        ('PUT', '/api/events/1796524210.0-abc123/end', {'end_time': 1796490123.125}),  # 2026-12-05T17:02:03.125Z
        ('POST', '/api/events/yard/anomaly/create',
         {'sub_label': 'yard-20261205170201125', 'score': 0.8125, 'duration': None, 'include_recording': True})]
    assert lines == [f'frigate ({url}): gave up the start of event yard-20261205170201125: HTTP 404 Not Found',
                     'frigate: event yard-20261205170201125 was not created in Frigate, so it is not ended there']


def test_live_flags():
    parser = argparse.ArgumentParser()
    add_mqtt_arguments(parser)
    assert config_from_mqtt_flags(parser.parse_args([])) == {'mqtt': None, 'webhooks': [], 'frigate': None,
                                                       'cameras': {}}
    for flags, host, port, prefix in [(['--mqtt', 'broker.lan'], 'broker.lan', 1883, 'anomaly'),
                                      (['--mqtt', '10.0.0.2:8883', '--mqtt-prefix', 'home/cams'], '10.0.0.2', 8883,
                                       'home/cams'),
                                      (['--mqtt', '[::1]:1884'], '::1', 1884, 'anomaly')]:
        settings = config_from_mqtt_flags(parser.parse_args(flags))['mqtt']
        assert settings == {**alerts.MQTT_DEFAULTS, 'host': host, 'port': port, 'prefix': prefix,
                            'client_id': prefix.replace('/', '_') + '-live'}
    for flag, bad in [('--mqtt', 'host:0'), ('--mqtt', 'host:port'), ('--mqtt', 'a:b:c'), ('--mqtt', ''),
                      ('--mqtt-prefix', 'a/+'), ('--mqtt-prefix', '')]:
        with pytest.raises(SystemExit):
            parser.parse_args([flag, bad])
    with pytest.raises(DataError) as error:
        Alerts(mqtt_config(1883), ['a/b'], lambda line: None)
    assert str(error.value) == "camera 'a/b': not usable in an MQTT topic (empty, or holds + or #, or /)"


def test_mqtt_tls(broker, tmp_path):
    """TLS with a CA file: a certificate authority and a broker's certificate for 127.0.0.1 made by openssl."""
    if not shutil.which('openssl'):
        pytest.skip('no openssl command to make the certificates')

    def openssl(*args):
        subprocess.run(['openssl', *args], cwd=tmp_path, check=True, capture_output=True)
    key = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
    openssl('req', '-x509', *key, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '1', '-subj', '/CN=test CA')
    openssl('req', *key, '-keyout', 'broker.key', '-out', 'broker.csr', '-subj', '/CN=127.0.0.1')
    (tmp_path / 'san').write_text('subjectAltName=IP:127.0.0.1\n')
    openssl('x509', '-req', '-in', 'broker.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial',
            '-out', 'broker.crt', '-days', '1', '-extfile', 'san')
    tls_port = free_port()
    b = broker(f'listener {tls_port} 127.0.0.1', f'cafile {tmp_path}/ca.crt', f'certfile {tmp_path}/broker.crt',
               f'keyfile {tmp_path}/broker.key')
    subscriber = Subscriber(b.port, ['anomaly/+/events'])
    a = Alerts(mqtt_config(tls_port, tls=True, ca_file=str(tmp_path / 'ca.crt')), ['cam'], lambda line: None)
    a.event_start('cam', start_record('cam', 1))
    assert [json.loads(p) for p in subscriber.wait('anomaly/cam/events')] == \
        [{'type': 'start', **as_json(start_record('cam', 1))}]
    a.close()
    subscriber.close()
    with pytest.raises(DataError, match=f'^mqtt.ca_file {tmp_path}/none.crt: not a readable CA certificate file'):
        Alerts(mqtt_config(tls_port, tls=True, ca_file=str(tmp_path / 'none.crt')), ['cam'], lambda line: None)
