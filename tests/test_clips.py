"""clips.py: small videos encoded here are demuxed and decoded as live.py's reader does (in a thread of its
own, feeding packet() and frame()), an event is started, advanced and stopped from the main thread, and the
clip is decoded and compared with the source's own frames and packets."""
import os
import queue
import threading

import av
import numpy as np
import pytest

import clips
from clips import ClipRecorder

FPS = 25
PRE_ROLL = 1.0  # 25 frames


def encode(path, codec, n_frames=100, options=None, format=None):
    """n_frames (at most 100) at FPS, 64 x 48: noise moving 3 pixels a frame over a level 2 i bright (i: the
    frame's index), every frame different, and i in binary in the top row of 8 x 8 blocks (frame_number)."""
    noise = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    policy = os.sched_getscheduler(0), os.sched_getparam(0)
    try:
        write(path, codec, n_frames, options, format, noise)
    finally:  # libsvtav1, run as root, makes the process real-time (SCHED_FIFO 99), and so every process it starts
        os.sched_setscheduler(0, *policy)
    return str(path)


def write(path, codec, n_frames, options, format, noise):
    with av.open(str(path), 'w', format=format) as container:
        stream = container.add_stream(codec, rate=FPS, options=options or {})
        stream.width, stream.height = 64, 48
        stream.pix_fmt = 'yuvj420p' if codec == 'mjpeg' else 'yuv420p'
        for i in range(n_frames):
            picture = np.roll(noise // 5, 3 * i, axis=1) + 2 * i
            for bit in range(7):
                picture[:8, 8 * bit:8 * bit + 8] = 255 * (i >> bit & 1)
            frame = av.VideoFrame.from_ndarray(picture, format='rgb24')
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def frame_number(picture):
    """The index encode() wrote into a frame, read back from its blocks' centres (a lossy codec keeps them)."""
    return sum(1 << bit for bit in range(7) if picture[2:6, 8 * bit + 2:8 * bit + 6].mean() > 128)


def source(path):
    """(frames as RGB arrays and their pts, in display order; packets as (bytes, pts, keyframe), decode order;
    whether each frame's packet is a keyframe, by pts or, where packets have none, by order)."""
    with av.open(path) as container:
        stream = container.streams.video[0]
        packets = [(bytes(p), p.pts, p.is_keyframe) for p in container.demux(stream) if p.size]
    with av.open(path) as container:
        frames = list(container.decode(video=0))
    pts = [f.pts for f in frames]
    key = {p: k for _, p, k in packets}
    keys = [k for _, _, k in packets] if pts[0] is None else [key[p] for p in pts]
    return [f.to_ndarray(format='rgb24') for f in frames], pts, packets, keys


def clip_content(path):
    """(codec name, frames as RGB arrays, frame times in seconds, packet bytes in decode order) of a clip."""
    with av.open(path) as container:
        stream = container.streams.video[0]
        packets = [bytes(p) for p in container.demux(stream) if p.size]
    with av.open(path) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        return (stream.codec_context.name, [f.to_ndarray(format='rgb24') for f in frames],
                [float(f.time) for f in frames], packets)


def record(path, folder, events, lag=6, horizon=PRE_ROLL + 2, stop=True):
    """Play path through a ClipRecorder as live.py does: a reader thread demuxes and decodes (frame threads on),
    calling packet() and frame(); the main thread learns of each decoded frame through a queue and, `lag`
    frames later (its score), starts each event (start, end) at its start, advances it every 4 frames and
    stops it at its end (the last one, without stop, is left to close() at the end of the stream).
    Returns (the clips' paths, close()'s return)."""
    decoded = queue.Queue(maxsize=4)  # the reader runs at most a few frames ahead of the scores' lag
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = 'AUTO'
        recorder = ClipRecorder(stream, FPS, PRE_ROLL, horizon)

        def read():
            index = 0
            for packet in container.demux(stream):
                recorder.packet(packet)
                for frame in packet.decode():
                    recorder.frame(index, frame.pts)
                    decoded.put(index)
                    index += 1
            decoded.put(None)

        reader = threading.Thread(target=read, daemon=True)  # not left waiting should a test fail
        reader.start()
        paths = []
        for index in iter(decoded.get, None):
            scored = index - lag
            for start, end in events:
                if scored == start:
                    paths.append(recorder.start(start, str(folder / f'cam-{start / FPS:.2f}s.mp4')))
                elif start < scored < end - 1 and scored % 4 == 0:
                    recorder.advance(scored + 1)
                elif scored == end - 1 and (stop or end != events[-1][1]):
                    assert recorder.stop(end) == paths[-1]
        reader.join()
        return paths, recorder.close()


def keyframe_before(keys, frame):
    """The index of the last frame at or before `frame` whose packet is a keyframe."""
    return max(i for i in range(frame + 1) if keys[i])


def payload(codec, data):
    """A packet's content as MP4 keeps it when copying: H.264 and HEVC as NAL units, from Annex B (start codes,
    as in MPEG-TS) or length-prefixed (MP4) form, less HEVC's parameter sets (MP4 keeps them in its header
    only); other codecs' bytes as they are."""
    if codec not in ('h264', 'hevc'):
        return data
    if data.startswith((b'\x00\x00\x01', b'\x00\x00\x00\x01')):
        units = [unit.rstrip(b'\x00') for unit in data.split(b'\x00\x00\x01')[1:]]
    else:
        units = []
        while data:
            size = int.from_bytes(data[:4], 'big')
            units.append(data[4:4 + size])
            data = data[4 + size:]
    return [unit for unit in units if codec == 'h264' or not 32 <= unit[0] >> 1 <= 34]


def assert_frames(clip_frames, frames, first, last):
    assert len(clip_frames) == last - first + 1
    for got, want in zip(clip_frames, frames[first:last + 1]):
        np.testing.assert_array_equal(got, want)


def needs(encoder, *values):
    return pytest.param(encoder, *values, marks=pytest.mark.skipif(encoder not in av.codecs_available,
                                                                   reason=f'this FFmpeg has no {encoder}'))


@pytest.mark.parametrize('encoder, container, codec, options', [  # GOPs of 10, no B-frames (as cameras send)
    ('libx264', 'mpegts', 'h264', {'bf': '0'}),
    ('libx264', 'h264', 'h264', {'bf': '0'}),  # a raw elementary stream: packets and frames without pts
    needs('libx265', 'mpegts', 'hevc', {'x265-params': 'log-level=error:bframes=0'}),
    ('mpeg4', 'avi', 'mpeg4', {}),
    needs('libvpx-vp9', 'matroska', 'vp9', {'deadline': 'realtime', 'cpu-used': '8'}),
    needs('libsvtav1', 'matroska', 'av1', {'preset': '12'})])
def test_copied_clip_is_the_source_packets_from_the_keyframe_before_the_pre_roll(tmp_path, encoder, container,
                                                                                codec, options):
    video = encode(tmp_path / 'in', encoder, options={'g': '10', **options}, format=container)
    frames, pts, packets, keys = source(video)
    assert (container == 'h264') == (pts[0] is None)
    # two events, the second's pre-roll (35..59, from the keyframe before) over the first's end (39)
    paths, closed = record(video, tmp_path / 'clips', [(10, 40), (60, 80)])
    assert paths == [str(tmp_path / 'clips' / name) for name in ('cam-0.40s.mp4', 'cam-2.40s.mp4')]
    assert sorted(os.listdir(tmp_path / 'clips')) == ['cam-0.40s.mp4', 'cam-2.40s.mp4'] and closed is None
    assert_frames(clip_content(paths[0])[1], frames, 0, 39)  # its pre-roll cut at the stream's start
    got, clip_frames, times, clip_packets = clip_content(paths[1])
    first = keyframe_before(keys, 60 - 25)
    assert got in (codec, 'libdav1d') and 25 < 60 - first <= 25 + 10
    assert_frames(clip_frames, frames, first, 79)
    assert times == pytest.approx([i / FPS for i in range(80 - first)])  # rebased to start at 0
    assert [payload(codec, p) for p in clip_packets] == [payload(codec, p) for p, _, _ in packets[first:80]]


@pytest.mark.parametrize('open_gop', [False, True])
def test_copied_clip_with_b_frames_ends_on_a_whole_run_of_frames(tmp_path, open_gop):
    video = encode(tmp_path / 'in.mp4', 'libx264', options={'g': '10', 'x264-params': f'open-gop={open_gop:d}'})
    frames, pts, packets, keys = source(video)
    first = keyframe_before(keys, 70 - 25)
    index = {p: i for i, p in enumerate(pts)}
    taken = [(data, index[p]) for data, p, _ in packets[next(i for i, (_, p, _) in enumerate(packets)
                                                              if p == pts[first]):]]
    assert (taken[1][1] < first) == open_gop  # an open GOP's leading B-frame needs the GOP before: left out
    kept = [(data, i) for data, i in taken if i >= first]
    runs = [{i for _, i in kept[:n]} for n in range(1, len(kept) + 1)]  # the frames each run of packets shows

    def gapless(shown):
        return shown == set(range(first, max(shown) + 1))

    # an event ending on a B-frame shown before a reference frame that comes before another B-frame
    # (decode order P85 B83 B84, last 83): the packets through its own leave a gap (84)
    through = [next(s for s in runs if set(range(first, last + 1)) <= s) for last in range(75, 95)]
    last = next(75 + i for i, shown in enumerate(through) if not gapless(shown))
    # the shortest run of packets from the keyframe that shows every frame first..last and leaves no gap
    shown = next(s for s in runs if set(range(first, last + 1)) <= s and gapless(s))
    [path], _ = record(video, tmp_path / 'clips', [(70, last + 1)])
    codec, clip_frames, times, clip_packets = clip_content(path)
    assert codec == 'h264' and max(shown) > last
    assert_frames(clip_frames, frames, first, max(shown))
    assert times == pytest.approx([(i - first) / FPS for i in range(first, max(shown) + 1)])
    assert clip_packets == [data for data, _ in kept[:len(shown)]]  # the bytes, as they were


@pytest.mark.parametrize('codec, out', [('mjpeg', 'h264'), ('mpeg2video', 'h264'), ('mjpeg', 'mpeg4')])
def test_encoded_clip_covers_the_pre_roll_and_the_event_exactly(tmp_path, monkeypatch, codec, out):
    if out == 'mpeg4':
        monkeypatch.setattr(clips.av, 'codecs_available', av.codecs_available - {'libx264'})
    video = encode(tmp_path / 'in', codec, options={'g': '10'}, format='matroska' if codec == 'mjpeg' else 'mpegts')
    frames, _, _, keys = source(video)
    assert [frame_number(f) for f in frames] == list(range(100))
    assert codec == 'mjpeg' or not keys[35]  # decoded from the keyframe before, cut at the pre-roll's start
    [path], _ = record(video, tmp_path / 'clips', [(60, 80)])
    assert os.listdir(tmp_path / 'clips') == ['cam-2.40s.mp4']
    got, clip_frames, times, _ = clip_content(path)
    assert got == out and [frame_number(f) for f in clip_frames] == list(range(35, 80))
    assert times == pytest.approx([i / FPS for i in range(80 - 35)])


def test_close_ends_an_open_clip_at_the_last_frame(tmp_path):
    video = encode(tmp_path / 'in.ts', 'libx264', n_frames=60, options={'g': '10', 'bf': '0'}, format='mpegts')
    frames, _, _, keys = source(video)
    [path], closed = record(video, tmp_path / 'clips', [(50, 60)], stop=False)
    assert closed == path and os.listdir(tmp_path / 'clips') == ['cam-2.00s.mp4']
    assert_frames(clip_content(path)[1], frames, keyframe_before(keys, 50 - 25), 59)


def fed_whole(video, first_index):
    """A ClipRecorder (horizon 10 s) that has seen every packet and frame of video, its frames counted from
    first_index, its input closed before any clip starts."""
    with av.open(video) as container:
        stream = container.streams.video[0]
        recorder = ClipRecorder(stream, FPS, PRE_ROLL, 10.0)
        index = first_index
        for packet in container.demux(stream):
            recorder.packet(packet)
            for frame in packet.decode():
                recorder.frame(index, frame.pts)
                index += 1
    return recorder


def test_a_clip_may_start_after_the_input_closed_on_a_recorder_started_mid_stream(tmp_path):
    # scores lag decoding: a clip may start after the reader closed its input (at the end of a file, or on a
    # reconnection, after which a new recorder sees frame indices go on from the last one's)
    video = encode(tmp_path / 'in', 'libx264', options={'g': '10', 'bf': '0'}, format='h264')  # no pts
    frames, _, _, keys = source(video)
    recorder = fed_whole(video, first_index=1000)
    path = recorder.start(1060, str(tmp_path / 'clips' / 'cam-42.40s.mp4'))
    assert recorder.stop(1080) == path == str(tmp_path / 'clips' / 'cam-42.40s.mp4')
    assert_frames(clip_content(path)[1], frames, keyframe_before(keys, 60 - 25), 79)


@pytest.mark.parametrize('codec, options, format', [('libx264', {'g': '10', 'bf': '0'}, 'mpegts'),  # copied
                                                     ('mjpeg', {}, 'matroska')])                      # encoded
def test_clip_offset_is_the_time_of_the_events_first_frame_in_its_clip(tmp_path, codec, options, format):
    """start() sets clip_offset: in the decoded clip, the time of the event's first frame (63) less the clip's
    first frame's: from the keyframe before the pre-roll (30, copied) or from the pre-roll's first frame (38)."""
    video = encode(tmp_path / 'in', codec, options=options, format=format)
    recorder = fed_whole(video, first_index=0)
    path = recorder.start(63, str(tmp_path / 'clips' / 'cam-2.52s.mp4'))
    offset = recorder.clip_offset
    recorder.stop(80)
    _, clip_frames, times, _ = clip_content(path)
    numbers = [frame_number(f) for f in clip_frames]
    assert numbers[0] == (30 if codec == 'libx264' else 38)
    assert offset == pytest.approx(times[numbers.index(63)] - times[0]) == pytest.approx((63 - numbers[0]) / FPS)


def synthetic_packets(n, gop, start=0):
    """Packets start..start + n - 1 of 1000 bytes at FPS in a 1/90000 time base, a keyframe every gop (0: only
    the first)."""
    for i in range(start, start + n):
        packet = av.Packet(bytes(1000))
        packet.pts = packet.dts = i * 90000 // FPS
        packet.is_keyframe = i % gop == 0 if gop else i == 0
        yield packet


def synthetic_recorder(tmp_path, horizon):
    """A ClipRecorder of an H.264 stream in MPEG-TS (time base 1/90000), to be fed synthetic packets."""
    with av.open(encode(tmp_path / 'in.ts', 'libx264', n_frames=10, format='mpegts')) as container:
        return ClipRecorder(container.streams.video[0], FPS, PRE_ROLL, horizon)


@pytest.mark.parametrize('gop', [45, 0])
def test_held_packets_span_the_horizon_back_to_a_keyframe(tmp_path, gop):
    recorder = synthetic_recorder(tmp_path, 4.0)
    horizon, most = 4 * FPS, (4 + clips.MAX_GOP) * FPS
    for i, packet in enumerate(synthetic_packets(4000, gop)):
        recorder.packet(packet)
        keep = i + 1 - horizon  # the oldest packet a clip may start after, then back to its keyframe
        oldest = keep // gop * gop if gop else i + 1 - most
        assert recorder.first == max(0, oldest) and len(recorder.packets) == i + 1 - recorder.first
    assert sum(len(held.data) for held in recorder.packets) <= 1000 * (horizon + (gop or clips.MAX_GOP * FPS))
    assert recorder.packets[0].key or not gop


def test_an_open_clip_holds_the_packets_its_writer_has_yet_to_take(tmp_path, monkeypatch):
    taken = []

    def write(path, batches, template, time_base, options):
        taken.extend(held.pts * FPS // 90000 for batch, _ in batches for held in batch)
        open(path, 'wb').close()

    monkeypatch.setattr(clips, 'copy_clip', write)
    recorder = synthetic_recorder(tmp_path, 2.0)  # 50 packets
    for i, packet in enumerate(synthetic_packets(300, 10)):
        recorder.packet(packet)
        recorder.frame(i, packet.pts)
        if i == 100:
            # from the keyframe at or before frame 75, 70; frames < 101 taken
            recorder.start(100, str(tmp_path / 'cam-4.00s.mp4'))
    assert recorder.first == 100 and len(recorder.packets) == 200  # without the clip, from 250 on
    recorder.advance(250)
    recorder.packet(next(synthetic_packets(1, 10, start=300)))
    assert recorder.first == 250
    assert recorder.stop(260) == str(tmp_path / 'cam-4.00s.mp4') and taken == list(range(70, 260))
