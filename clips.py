"""live.py's event clips: the recent past of a video stream held as its compressed packets, and each event
written as a playable MP4 from `pre_roll` seconds before its first frame to its last frame.

Packets, not frames: the held past is `horizon` seconds of the stream back to a keyframe (a 1080p camera at
4 Mb/s: about 5 MB for 10 s), counted in packets at the stream's frame rate so that a jump in its timestamps
cannot stop the forgetting. Where MP4 takes the codec (COPIED_CODECS), a clip is those packets as they came,
from the keyframe at or before the pre-roll's first frame, timestamps rebased to start at 0. Other codecs
(mjpeg, rawvideo, ...) are decoded by a fresh decoder and encoded as H.264 (libx264 where this FFmpeg has it,
else mpeg4, as video_out.py does), from the pre-roll's first frame exactly. Packets without timestamps (a raw
elementary stream) are stamped with their demux position, and such frames with their decode position, at
the frame rate: right for streams without B-frames, as cameras send them.

A clip is written by a thread of its own as its event's frames are confirmed, to '.<name>.part' beside it,
and renamed when the event ends; for watch.py a fragmented MP4, so that a clip cut short by a kill plays up to
its last keyframe's fragment. No command line of its own.
"""
import collections
import functools
import io
import itertools
import math
import os
import queue
import threading
from fractions import Fraction

import av

from dataset import DataError
from video_out import h264_stream

COPIED_CODECS = ('h264', 'hevc', 'mpeg4', 'av1', 'vp9')  # MP4 holds them and players play them: copied
# a fragmented MP4, a fragment per keyframe: a clip cut short (the process killed) plays up to its last fragment
# (its times are not shifted by an edit list: a stream with B-frames starts a few frames after 0)
FRAGMENTED = {'movflags': 'frag_keyframe+empty_moov+default_base_moof', 'flush_packets': '1'}
MAX_GOP = 30  # seconds: a stream with no keyframe this often (intra refresh) is held this far back at most

Held = collections.namedtuple('Held', 'data pts dts duration key')  # a packet; times in the stream's time base


def packets_through(packets, shown_by, close=False):
    """How many of packets (decode order) a clip takes to show every frame shown at or before pts shown_by:
    up to the last such packet. With close (a clip's end), shown_by grows to the latest frame the packets taken
    show, so that the B-frames shown before a reference frame that is taken are taken too: no frame is skipped,
    the clip may end a few frames late."""
    count, latest = 0, shown_by
    for i, held in enumerate(packets, 1):
        latest = max(latest, held.pts)
        if held.pts <= shown_by:
            count, shown_by = i, latest if close else shown_by
    return count


def copy_clip(path, batches, template, time_base, options):
    """Mux batches of held packets into an MP4 at path as they are, timestamps rebased so that the first
    packet (a keyframe) shows at 0. Left out: packets shown before it (an open GOP's leading frames, which
    need the GOP before) and packets whose dts does not increase (damaged data)."""
    with av.open(path, 'w', format='mp4', options=options) as container:
        stream = container.add_stream_from_template(template, opaque=True)
        start = last_dts = None
        for batch, _ in batches:
            for held in batch:
                start = held.pts if start is None else start
                if held.pts < start or (last_dts is not None and held.dts <= last_dts):
                    continue
                packet = av.Packet(held.data)
                packet.pts, packet.dts, packet.duration = held.pts - start, held.dts - start, held.duration
                packet.time_base, packet.stream, packet.is_keyframe = time_base, stream, held.key
                container.mux(packet)
                last_dts = held.dts


def encode_clip(path, batches, decoder, time_base, fps, first, options):
    """Decode batches of held packets with a fresh decoder (decoder: the stream's codec name, extradata, width,
    height, pixel format) and encode the frames shown from pts first to each batch's bound into an MP4 at path
    (h264_stream), their times kept, rebased to start at 0. A packet that does not decode is left out."""
    name, extradata, width, height, pix_fmt = decoder
    decoder = av.CodecContext.create(name, 'r')
    decoder.extradata, decoder.width, decoder.height = extradata, width, height
    if pix_fmt:
        decoder.pix_fmt = pix_fmt
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(path, 'w', format='mp4', options=options) as container:
        encoder, last, bound = h264_stream(container, rate, width, height), -1, first

        def encode(frames):
            nonlocal last
            for frame in frames:
                if first <= frame.pts <= bound:
                    last = max(last + 1, round((frame.pts - first) * time_base * rate))  # in frames of 1 / rate
                    out = frame.reformat(width=encoder.width, height=encoder.height, format='yuv420p',
                                         dst_color_range='MPEG')  # as the stream says: yuvj (mjpeg) is full
                    out.pts, out.time_base = last, 1 / rate
                    container.mux(encoder.encode(out))

        for batch, bound in batches:
            for held in batch:
                packet = av.Packet(held.data)
                packet.pts, packet.dts, packet.time_base = held.pts, held.dts, time_base
                try:
                    frames = decoder.decode(packet)
                except av.FFmpegError:
                    continue
                encode(frames)
        encode(decoder.decode(None))
        container.mux(encoder.encode(None))


class Clip:
    """One clip being written: a thread of its own runs write(part, batches), batches being the (packets,
    bound) pairs put() gives it until finish(), so that neither the reader nor the scorer waits on it.
    next: the demux position of the next packet the clip takes; top: the latest pts of those taken."""

    def __init__(self, path, write, position):
        self.path = path
        self.part = os.path.join(os.path.dirname(path), f'.{os.path.basename(path)}.part')
        self.next, self.top, self.error = position, -math.inf, None
        self.batches = queue.SimpleQueue()
        self.thread = threading.Thread(target=self.run, args=(write,), daemon=True)
        self.thread.start()

    def run(self, write):
        try:
            write(self.part, iter(self.batches.get, None))
        except Exception as e:  # raised by finish(), in the caller's thread
            self.error = e
            for _ in iter(self.batches.get, None):  # keep taking batches, so that none is held
                pass

    def put(self, batch):
        self.batches.put(batch)

    def finish(self, batch):
        """Write the last batch, close the file and rename it to path."""
        self.put(batch)
        self.put(None)
        self.thread.join()
        if self.error is not None:
            if os.path.exists(self.part):
                os.remove(self.part)
            if isinstance(self.error, (av.FFmpegError, OSError)):
                raise DataError(f'{self.path}: the clip could not be written ({self.error})') from self.error
            raise self.error
        os.replace(self.part, self.path)


class ClipRecorder:
    """Holds the compressed packets of a video stream's recent past and writes each event as a playable MP4.

    packet() and frame() come from the reader thread, start(), advance(), stop() and close() from the main
    thread, one event at a time; a lock guards what they share, and each clip is written by a thread of its own.
    """

    def __init__(self, stream, fps, pre_roll, horizon, fragmented=False):
        """stream: the av.VideoStream being demuxed (its codec parameters are read here, once);
        fragmented: write fragmented MP4s (FRAGMENTED), which a kill leaves playable;
        fps: the stream's frame rate (> 0); pre_roll: seconds
        kept before an event's first frame; horizon: seconds of packets held at least (pre_roll + the lag of
        scores behind decoding), back to a keyframe; at most horizon + MAX_GOP."""
        context = stream.codec_context
        self.fps, self.pre_roll, self.horizon_seconds, self.fragmented = fps, pre_roll, horizon, fragmented
        self.options = FRAGMENTED if fragmented else {}
        self.copy = context.codec.canonical_name in COPIED_CODECS  # the format's name: av1, not libdav1d
        # a copy of the stream's codec parameters, on an output that is never written: the copied clips'
        # template, since the input may be closed (at its end, on a reconnection) before the scores start a clip
        self.template = (av.open(io.BytesIO(), 'w', format='mp4').add_stream_from_template(stream, opaque=True)
                         if self.copy else None)
        self.decoder = context.name, context.extradata, context.width, context.height, context.pix_fmt
        self.time_base = stream.time_base
        self.tick = max(1, round(1 / (fps * self.time_base)))  # one frame in the time base, for missing pts
        self.horizon, self.most = math.ceil(horizon * fps), math.ceil((horizon + MAX_GOP) * fps)  # in packets
        self.lock = threading.Lock()
        self.packets = collections.deque()  # Held, in demux order
        self.first = 0  # the demux position of packets[0]
        self.keys = collections.deque()  # (demux position, pts) of the held keyframes
        self.frames = collections.deque(maxlen=self.most)  # the pts of the latest frames
        self.seen = 0  # the index after the latest frame's
        self.counted = 0  # frames seen here (a recorder may start mid-stream, after a reconnection)
        self.clip = None
        self.clip_offset = None  # the open clip's: seconds from its first frame to its event's first frame

    def renewed(self, stream):
        """A recorder like this one for stream, a new connection's (whose timestamps start anew)."""
        return ClipRecorder(stream, self.fps, self.pre_roll, self.horizon_seconds, self.fragmented)

    # ------------------------------------------------------------------------------ reader thread
    def packet(self, packet):
        """Hold a demuxed packet of the stream (an empty one, a demuxer's flush, is skipped)."""
        if not packet.size:
            return
        data = bytes(packet)
        with self.lock:
            position = self.first + len(self.packets)
            pts = packet.pts if packet.pts is not None else packet.dts
            pts = position * self.tick if pts is None else pts
            self.packets.append(Held(data, pts, pts if packet.dts is None else packet.dts, packet.duration,
                                     packet.is_keyframe))
            if packet.is_keyframe:
                self.keys.append((position, pts))
            self.forget()

    def frame(self, index, pts):
        """A decoded frame: its index (0, 1, 2, ... in decode order) and pts (None: as many frames of 1 / fps
        as this recorder saw before it, as its packet's were stamped)."""
        with self.lock:
            self.frames.append(self.counted * self.tick if pts is None else pts)
            self.seen, self.counted = index + 1, self.counted + 1

    def forget(self):
        """Drop the packets before the latest keyframe that is at least horizon packets old, or (no keyframe
        so often) more than horizon + MAX_GOP old; never those the open clip has yet to take."""
        end = self.first + len(self.packets)
        limit = self.clip.next if self.clip else end
        keep = min(end - self.horizon, limit)  # no clip starts after this one, back to its keyframe
        while len(self.keys) > 1 and self.keys[1][0] <= keep:
            self.keys.popleft()
        start = self.keys[0][0] if self.keys and self.keys[0][0] <= keep else self.first
        for _ in range(min(max(start, end - self.most), limit) - self.first):
            self.packets.popleft()
            self.first += 1
        while self.keys and self.keys[0][0] < self.first:
            self.keys.popleft()

    # ------------------------------------------------------------------------------ main thread
    def pts_of(self, index):
        """The pts of frame index (of the oldest one held, for one older)."""
        return self.frames[max(0, len(self.frames) - (self.seen - index))]

    def take(self, end_frame, close=False):
        """(The packets frames < end_frame need that the open clip has not taken yet, the pts of frame
        end_frame - 1); with close, to the clip's end (packets_through). Called under the lock."""
        clip, bound = self.clip, self.pts_of(end_frame - 1)
        pending = list(itertools.islice(self.packets, clip.next - self.first, None))
        taken = pending[:packets_through(pending, max(bound, clip.top) if close else bound, close)]
        clip.next += len(taken)
        clip.top = max([clip.top] + [held.pts for held in taken])
        return taken, bound

    def start(self, frame, path):
        """An event starts at frame index `frame`: open its clip at path (its folder made), from the keyframe at or
        before the pre-roll's first frame (copied) or that frame (encoded); path. Sets clip_offset: the seconds
        from the clip's first frame to the event's."""
        os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
        with self.lock:
            first = self.pts_of(max(0, frame - round(self.pre_roll * self.fps)))
            start = max([position for position, pts in self.keys if pts <= first], default=self.first)
            shown_first = self.packets[start - self.first].pts if self.copy else first
            self.clip_offset = float((self.pts_of(frame) - shown_first) * self.time_base)
            if self.copy:
                write = functools.partial(copy_clip, template=self.template, time_base=self.time_base,
                                          options=self.options)
            else:
                write = functools.partial(encode_clip, decoder=self.decoder, time_base=self.time_base,
                                          fps=self.fps, first=first, options=self.options)
            self.clip = Clip(path, write, start)
            self.clip.put(self.take(frame + 1))
        return path

    def advance(self, end_frame):
        """Frames < end_frame are confirmed inside the open event: its clip may write them."""
        with self.lock:
            self.clip.put(self.take(end_frame))

    def stop(self, end_frame):
        """The open event ended, frames < end_frame its last: finish its clip (waiting for its writer) and
        rename it; its path. Raises DataError if it could not be written."""
        with self.lock:
            clip, batch = self.clip, self.take(end_frame, close=True)
            self.clip = None
        clip.finish(batch)
        return clip.path

    def close(self):
        """The stream ended or the run stops: stop the open clip, if any, at the last frame seen; its path
        or None."""
        return self.stop(self.seen) if self.clip else None
