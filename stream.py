"""A stream of snippets for live.py: a file, a pipe, a URL or a capture device decoded by a thread of its own,
every frame resized as the network takes it (video.resized), grouped into 16-frame snippets and queued.

Snippet k holds frames 16k .. 16k + 15, counted in decoding order from the stream's first frame. Each frame
has a clock time (seconds since the epoch): for a file played in real time, the time its reading started plus
its place on the stream's time axis (frame / fps); for any other source, the wall clock when it was decoded.
What the queue hands out, in stream order: Snippet, Gap (frames that will never be scored: dropped to keep up, or lost to a
reconnection) and, last, End. Two queue policies:
- a file or a pipe (finite, and FFmpeg's reads wait for the writer) holds at most a few batches: decoding waits
  for the network, so memory stays flat and no frame is ever dropped;
- a live source (a URL, a device, or any source played in real time) never waits: when the snippets waiting
  for the network exceed max_lag seconds of video, less the network's time for its latest batch (so that a
  snippet's latency stays within max_lag and one batch), the oldest are dropped, a Gap in their place.
A URL or a device that ends or breaks is reopened up to reconnect times (backing off 1, 2, 4 ... 30 s, counting
again from the first try once frames flow; open_retrying retries the first opening the same way); the frames
lost meanwhile, by the wall clock, become a Gap that ends on a snippet boundary, so that the frame count goes
on. Packets FFmpeg cannot decode cost their frames only.
"""
import math
import threading
import time
from collections import deque
from typing import NamedTuple

import av
import numpy as np

from dataset import FRAMES_PER_SNIPPET, DataError
from video import HEIGHT, WIDTH, resized

BACKLOG = 4  # a file's or a pipe's queue: batches decoded ahead of the network
LIVE_MAX_LAG = 10.0  # a live source's default max_lag: seconds of video waiting for the network
DEVICE_FORMATS = ('v4l2', 'video4linux2', 'dshow', 'avfoundation', 'x11grab', 'gdigrab', 'kmsgrab', 'decklink')
OPEN_TIMEOUT, READ_TIMEOUT = 15.0, 15.0  # seconds a network source may be silent before it counts as broken


class Snippet(NamedTuple):
    index: int            # frames 16 index .. 16 index + 15
    frames: np.ndarray    # uint8 [16, 256, 340, 3]
    decoded_at: float     # time.monotonic() when its last frame was decoded
    start_clock: float    # the clock time of its first frame (seconds since the epoch, see SnippetReader)
    end_clock: float      # the clock time of its last frame, plus a frame (1 / fps)


class Gap(NamedTuple):
    start_frame: int
    end_frame: int        # exclusive, a multiple of 16
    reason: str
    start_clock: float    # the clock times of start_frame and end_frame (as Snippet's)
    end_clock: float


def snippet_gap(snippet, reason):
    """The Gap of a snippet that will never be scored."""
    start = FRAMES_PER_SNIPPET * snippet.index
    return Gap(start, start + FRAMES_PER_SNIPPET, reason, snippet.start_clock, snippet.end_clock)


class End(NamedTuple):
    frames: int           # frames counted, gaps included
    reason: str
    failed: bool          # the source broke (exit status 1) rather than ended


def reopenable(source, input_format=None):
    """A URL or a capture device: a source that may break and come back."""
    return ('://' in source and not source.startswith('file:')) or source.startswith('/dev/') \
        or input_format in DEVICE_FORMATS


def backoff_seconds(failures):
    """The wait before the next try to open a source that failed `failures` times in a row: 1, 2, 4 ... 30 s."""
    return min(30, 2 ** failures)


def check_input_format(input_format):
    """DataError unless FFmpeg knows input_format (None: probed) as an input format."""
    if input_format is None:
        return
    try:
        av.ContainerFormat(input_format, 'r')
    except ValueError:
        raise DataError(f'--format {input_format}: not an input format this FFmpeg knows (e.g. mpegts, v4l2, '
                        f'rtsp; `ffmpeg -demuxers` lists them)')


def open_retrying(source, input_format, retries, stopping, log):
    """open_source, tried again up to `retries` times after a failure (a camera still booting), backing off as a
    reconnection does, until stopping (a threading.Event) is set; log(line) hears of each failure. The last
    failure's DataError when every try failed."""
    for failures in range(retries + 1):
        try:
            return open_source(source, input_format)
        except DataError as e:
            if failures == retries or stopping.is_set():
                more = f'; {retries} more tr{"y" if retries == 1 else "ies"} failed' if retries else ''
                raise DataError(f'{e}{more}') from None
            log(f'{e}; trying again in {backoff_seconds(failures)} s ({failures + 1} of {retries})')
            stopping.wait(backoff_seconds(failures))


def open_source(source, input_format=None):
    """(container, its first video stream) of a file, '-' (standard input), a URL or a device; DataError naming
    the source and FFmpeg's reason when it does not open or holds no video."""
    network = reopenable(source, input_format)
    try:
        container = av.open('pipe:0' if source == '-' else source, format=input_format,
                            timeout=(OPEN_TIMEOUT, READ_TIMEOUT) if network else None)
    except av.FFmpegError as e:
        raise DataError(f'{source}: cannot be opened ({getattr(e, "strerror", None) or e})')
    except (FileNotFoundError, PermissionError, IsADirectoryError) as e:
        raise DataError(f'{source}: cannot be opened ({e.strerror})')
    except ValueError as e:  # an unknown --format (check_input_format says it before any work)
        raise DataError(f'--format {input_format}: {e}')
    if not container.streams.video:
        container.close()
        raise DataError(f'{source}: no video stream in it')
    stream = container.streams.video[0]
    stream.thread_type = 'AUTO'
    return container, stream


def frame_rate(stream):
    """The stream's frames per second (its average rate, else FFmpeg's guess), NaN if it states none."""
    rate = stream.average_rate or stream.guessed_rate
    return float(rate) if rate else math.nan


class SnippetReader:
    """Reads a source in a thread of its own and queues what it decodes (see the module's docstring).

    container, stream: the source opened by open_source; fps: its rate; live: the live queue policy (drop past
    max_lag seconds); realtime: pace the frames at fps, as a camera delivers them; recorder: a
    clips.ClipRecorder that sees every packet and decoded frame, or None (a reconnection replaces it by
    recorder.renewed(new stream)); batch: snippets the network takes at a time; reconnecting(): called from the
    reader's thread when the source ended or broke and is being reopened (camera.State's 'reconnecting'), or None.
    busy_seconds: the time spent decoding and resizing so far, decoded: the frames decoded (gaps aside); behind:
    how far the decoding lags the stream's own clock (for a live source: video that waits before the decoder,
    which max_lag cannot drop).
    """

    def __init__(self, source, input_format, container, stream, fps, live, realtime=False, max_lag=None,
                 reconnect=0, recorder=None, batch=1, reconnecting=None):
        self.source, self.input_format, self.fps = source, input_format, fps
        self.reconnecting = reconnecting
        self.live, self.realtime, self.reconnect, self.recorder = live, realtime, reconnect, recorder
        self.max_lag = max_lag
        self.network_seconds = 0.0  # the network's time for its latest batch (the main thread says it)
        self.capacity = BACKLOG * batch
        self.items = deque()
        self.waiting = 0  # snippets in items
        self.condition = threading.Condition()
        self.stopping = threading.Event()
        self.busy_seconds, self.decoded = 0.0, 0
        self.behind = 0.0  # seconds the decoding lags the stream's clock (a live source's frames pile up before it)
        self.thread = threading.Thread(target=self.run, args=(container, stream), daemon=True)
        self.thread.start()

    # -------------------------------------------------------------------------------------- main thread
    def get(self, max_snippets, timeout):
        """The next items: up to max_snippets consecutive Snippets, or one Gap or End; [] after timeout seconds."""
        with self.condition:
            if not self.items:
                self.condition.wait(timeout)
            taken = []
            while self.items and len(taken) < max_snippets and isinstance(self.items[0], Snippet):
                taken.append(self.items.popleft())
            if not taken and self.items:
                taken.append(self.items.popleft())
            self.waiting -= sum(isinstance(item, Snippet) for item in taken)
            self.condition.notify_all()
            return taken

    def stop(self):
        """Stop reading: the thread ends at its next frame (a source that waits on the network, at its time-out)
        and queues End. What is queued already stays there."""
        self.stopping.set()
        with self.condition:
            self.condition.notify_all()

    def drop_waiting(self, reason):
        """Replace every snippet still waiting by a Gap (the second signal: stop at once)."""
        with self.condition:
            self.items = deque(self.merged(snippet_gap(item, reason) if isinstance(item, Snippet) else item
                                           for item in self.items))
            self.waiting = 0

    # -------------------------------------------------------------------------------------- the thread
    def put(self, item):
        with self.condition:
            if isinstance(item, Snippet):
                while not self.live and self.waiting >= self.capacity and not self.stopping.is_set():
                    self.condition.wait(0.1)  # a file or a pipe waits for the network
                self.waiting += 1
            self.items.append(item)
            if self.max_lag is not None:  # the video waiting, and the batch the network is on, within max_lag
                most = math.floor(max(0.0, self.max_lag - self.network_seconds) * self.fps / FRAMES_PER_SNIPPET)
                if self.waiting > max(1, most):
                    self.drop_oldest(self.waiting - max(1, most))
            self.condition.notify_all()

    def drop_oldest(self, n):
        """Replace the n oldest waiting snippets by Gaps ('behind'), merged with the gaps beside them."""
        items = []
        for item in self.items:
            if n and isinstance(item, Snippet):
                item, n = snippet_gap(item, 'behind'), n - 1
                self.waiting -= 1
            items.append(item)
        self.items = deque(self.merged(items))

    @staticmethod
    def merged(items):
        out = []
        for item in items:
            if (out and isinstance(item, Gap) and isinstance(out[-1], Gap) and out[-1].end_frame == item.start_frame
                    and out[-1].reason == item.reason):
                out[-1] = out[-1]._replace(end_frame=item.end_frame, end_clock=item.end_clock)
            else:
                out.append(item)
        return out

    def run(self, container, stream):
        frames, failures, end = 0, 0, None
        try:
            while end is None:
                frames, broke = self.read(container, stream, frames)
                self.container_format = container.format.name
                container.close()
                if self.stopping.is_set():
                    end = End(frames, 'stopped', False)
                elif not broke and not reopenable(self.source, self.input_format):
                    end = End(frames, 'end of stream', False)
                else:
                    lost_from, since, since_clock = frames, time.monotonic(), time.time()
                    container = None
                    if broke and not reopenable(self.source, self.input_format):
                        end = End(frames, self.broken_file(container, frames, broke), True)
                        continue
                    if self.reconnect and self.reconnecting is not None:
                        self.reconnecting()
                    while container is None and failures < self.reconnect and not self.stopping.is_set():
                        self.stopping.wait(backoff_seconds(failures))
                        failures += 1
                        try:
                            container, stream = open_source(self.source, self.input_format)
                        except DataError:
                            pass
                    if container is None:
                        tries = f' and {failures} tr{"y" if failures == 1 else "ies"} to reopen it' if self.reconnect \
                            else ' (no --reconnect)'
                        end = End(frames, f'{self.source}: the stream {broke or "ended"}{tries}', True)
                        continue
                    if self.recorder is not None:  # the new connection's timestamps start anew
                        self.recorder = self.recorder.renewed(stream)
                    lost = math.ceil((time.monotonic() - since) * self.fps)
                    first = lost_from // FRAMES_PER_SNIPPET * FRAMES_PER_SNIPPET
                    frames = -(-(lost_from + lost) // FRAMES_PER_SNIPPET) * FRAMES_PER_SNIPPET
                    self.put(Gap(first, frames, f'reconnected after: {broke or "the stream ended"}',
                                 since_clock - (lost_from - first) / self.fps, time.time()))
                    failures = 0
        except Exception as e:  # a bug, not the source: end the run with what is scored so far
            end = End(frames, f'{self.source}: reading stopped ({e.__class__.__name__}: {e})', True)
        self.put(end)

    def broken_file(self, container, frames, broke):
        """Why a file or a pipe that broke off ended the run."""
        if self.source == '-' and not frames and self.container_format.startswith('mov,'):
            return ('-: an MP4 whose index (moov atom) is at its end cannot be read from a pipe: pass the file '
                    'itself, or remux it to MPEG-TS (ffmpeg -i in.mp4 -c copy -f mpegts -)')
        return f'{self.source}: the stream {broke}'

    def read(self, container, stream, frames):
        """Decode container until it ends, breaks or stop(); returns (frames counted, why it broke or '')."""
        buffer = np.empty((FRAMES_PER_SNIPPET, HEIGHT, WIDTH, 3), np.uint8)
        first, started, started_clock = frames, time.monotonic(), time.time()
        snippet_clock = None  # the clock time of the snippet's first frame
        try:
            for packet in container.demux(stream):
                if self.recorder is not None and packet.size:
                    self.recorder.packet(packet)
                tick = time.monotonic()
                try:
                    decoded = packet.decode()
                except av.FFmpegError:
                    continue  # damaged data: the frames it held are lost, the stream goes on
                for frame in decoded:
                    if self.stopping.is_set():
                        return frames, ''
                    if self.recorder is not None:
                        self.recorder.frame(frames, frame.pts)
                    # a file played in real time: its own clock from the start; else the wall clock at decoding
                    clock = started_clock + (frames - first) / self.fps if self.realtime else time.time()
                    if frames % FRAMES_PER_SNIPPET == 0:
                        snippet_clock = clock
                    buffer[frames % FRAMES_PER_SNIPPET] = resized(frame)
                    frames += 1
                    self.decoded += 1
                    now = time.monotonic()
                    self.busy_seconds += now - tick
                    if frames % FRAMES_PER_SNIPPET == 0:
                        self.put(Snippet(frames // FRAMES_PER_SNIPPET - 1, buffer.copy(), now,
                                         snippet_clock, clock + 1 / self.fps))
                    self.behind = now - started - (frames - first) / self.fps
                    if self.realtime:  # the next frame is due (frames - first) / fps after the first
                        time.sleep(max(0.0, -self.behind))
                    tick = time.monotonic()
        except av.ExitError:  # FFmpeg's reads gave up, at READ_TIMEOUT
            return frames, f'sent nothing for {READ_TIMEOUT:g} s'
        except av.FFmpegError as e:
            return frames, f'broke off ({getattr(e, "strerror", None) or e})'
        return frames, ''
