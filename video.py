"""The video pipeline that extract_features.py, detect.py, live.py and calibrate.py share: find videos, check
them, decode frames (a file, a pipe, a URL or a device, through PyAV), resize them, cut snippets and crops, run
the I3D network on batches of snippets, and give each frame its snippet's score. The protocol is RTFM-style
features': every frame decoded as RGB, resized to 340 x 256 (width x height) by PIL's Lanczos filter and scaled
to x * 2 / 255 - 1; snippets of 16 consecutive frames with stride 16 (the frames after the last full snippet are
dropped); ten 224 x 224 crops of each snippet in torchvision's TenCrop order (--crops 1 keeps the center one); a
crop's feature is the I3D network's layer4 output averaged over time, height and width (i3d.py). No command
line of its own.
"""
import contextlib
import math
import os

import av
import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from backend import BACKENDS, OpenVINONetwork, check_backend
from cli import check_positive, pick_device
from dataset import FEATURE_SUFFIX, FRAMES_PER_SNIPPET, DataError, open_features
from i3d import FEATURE_SIZE, WHERE_FROM

VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mkv', '.mov', '.webm', '.mpg', '.mpeg', '.m4v', '.wmv', '.flv', '.ts',
                    '.m2ts', '.mts', '.3gp', '.ogv', '.asf', '.vob')
WIDTH, HEIGHT, CROP = 340, 256, 224
# (top, left) of the five crops of a 256 x 340 frame, in torchvision's five_crop order
CORNERS = ((0, 0), (0, WIDTH - CROP), (HEIGHT - CROP, 0), (HEIGHT - CROP, WIDTH - CROP),
           ((HEIGHT - CROP) // 2, (WIDTH - CROP) // 2))
CENTER = 4
FEATURE_FILE_FPS = 30  # UCF-Crime's frame rate: the time axis of a feature file without --fps
CLIPS_PER_BATCH = 20  # the default batch: 2 snippets of 10 crops, 20 of 1 (2 CPU cores: 1.1x as fast as 10 clips)


# ---------------------------------------------------------------------------------------------- files
def find_videos(inputs):
    """The files of inputs, sorted: a file as it is, whatever its extension (check_videos says when it is not a
    video), a folder's videos (files with a VIDEO_EXTENSIONS extension, in any case), searched recursively.
    DataError for a path that does not exist or a folder without videos: mistakes in the command, said before
    anything else."""
    videos = set()
    for path in inputs:
        if os.path.isfile(path):
            videos.add(path)
        elif os.path.isdir(path):
            found = [os.path.join(root, name) for root, _, names in os.walk(path) for name in names
                     if is_video_name(name)]
            if not found:
                raise DataError(f'{path}: no videos in it (searched for {" ".join(VIDEO_EXTENSIONS)})')
            videos.update(found)
        else:
            raise DataError(f'{path}: no such file or folder')
    return sorted(videos)


def is_video_name(path):
    return path.lower().endswith(VIDEO_EXTENSIONS)


def find_inputs(inputs):
    """The inputs of detect.py and calibrate.py, which score videos and feature files: ([(path, is a feature
    file)] in the order given, each folder replaced by its videos (sorted), each file once however it is
    written; {path: what is wrong} for each file that is neither a video nor a feature file)."""
    found, problems, seen = [], {}, set()
    for path in inputs:
        if os.path.isfile(path) and path.endswith('.npy'):
            files = [(path, True)]
        elif os.path.isfile(path) and not is_video_name(path):
            problems[path] = f'{path}: neither a video ({" ".join(VIDEO_EXTENSIONS)}) nor a *_i3d.npy feature file'
            continue
        else:  # a video or a folder of videos (find_videos says what is wrong with a missing or empty one)
            files = [(video, False) for video in find_videos([path])]
        for file, is_features in files:
            if os.path.realpath(file) not in seen:
                seen.add(os.path.realpath(file))
                found.append((file, is_features))
    return found, problems


def input_problems(inputs, checkpoint, feature_size, warn):
    """{path: what is wrong} of find_inputs' inputs that cannot be scored by a checkpoint taking features of
    feature_size: videos that do not open or are too short (check_videos), feature files of another form.
    DataError when there are videos and the checkpoint does not take I3D's features."""
    videos = [path for path, is_features in inputs if not is_features]
    if videos and feature_size != FEATURE_SIZE:
        raise DataError(f'{checkpoint}: the checkpoint takes features of size {feature_size}, and I3D\'s are '
                        f'{FEATURE_SIZE}: it cannot score the videos')
    problems = check_videos(videos, warn)
    for path, is_features in inputs:
        if is_features:
            try:
                open_features(path, feature_size)  # its form; its values when it is scored
            except DataError as e:
                problems[path] = str(e)
    return problems


def feature_path(out_dir, video_path):
    """<out_dir>/<video stem>_i3d.npy"""
    return os.path.join(out_dir, os.path.splitext(os.path.basename(video_path))[0] + FEATURE_SUFFIX)


# ---------------------------------------------------------------------------------------------- decoding
def undecodable(video_path, error):
    return DataError(f'{video_path}: cannot be decoded ({getattr(error, "strerror", None) or error})')


def open_video(video_path):
    """(the opened container, its first video stream); DataError naming the file, with FFmpeg's reason, for one
    that FFmpeg cannot open or that has no video stream."""
    try:
        container = av.open(video_path)
    except av.FFmpegError as e:
        raise undecodable(video_path, e)
    if not container.streams.video:
        container.close()
        raise DataError(f'{video_path}: no video stream in it')
    return container, container.streams.video[0]


def check_videos(videos, warn):
    """{video: what makes it unusable} for those of videos that are not videos (by their extension), that FFmpeg
    cannot open, that have no video stream, or that have fewer frames than one snippet: the cheap check, before any
    work, of every file a run will decode, so that one report names every bad one. A video is too short when the
    container states fewer than 16 frames or states none (MPEG-TS, often MKV) and fewer than 16 decode: at most
    16 frames are decoded. A video can still fail later, while decoding. warn(message) is called for each usable
    video whose picture is smaller than the network's crop (small_picture_warning)."""
    problems = {}
    for video in videos:
        if not is_video_name(video):
            problems[video] = f'{video}: not a video, by its extension ({" ".join(VIDEO_EXTENSIONS)})'
            continue
        try:
            container, stream = open_video(video)
        except DataError as e:
            problems[video] = str(e)
            continue
        with container:
            if stream.frames < FRAMES_PER_SNIPPET:  # none stated, or too few: count them
                try:
                    n_frames = sum(1 for _, _ in zip(range(FRAMES_PER_SNIPPET), container.decode(stream)))
                except av.FFmpegError as e:
                    problems[video] = str(undecodable(video, e))
                    continue
                if n_frames < FRAMES_PER_SNIPPET:
                    problems[video] = str(too_short(video, n_frames))
                    continue
            warning = small_picture_warning(video, stream.codec_context.width, stream.codec_context.height)
        if warning:
            warn(warning)
    return problems


def small_picture_warning(source, width, height):
    """The warning for a picture narrower or lower than the network's 224-pixel crop, or None: every frame is
    resized to 340 x 256, which enlarges such a picture into a blur the network never saw in training (320 x 240,
    enlarged less than 1.1x, is not warned about)."""
    if 0 < min(width, height) < CROP:
        return (f'{source}: {width} x {height} pixels, smaller than the network\'s {CROP} x {CROP} crop: its frames '
                f'are enlarged to {WIDTH} x {HEIGHT}, and the scores of so few pixels may mean little')
    return None


def decoded_frames(video_path):
    """Yields (fps, the frame count the container states, 0 if none) once, then every frame of the first video
    stream (av.VideoFrame), in order. fps is the stream's average rate, NaN if it states none."""
    container, stream = open_video(video_path)
    with container:
        stream.thread_type = 'AUTO'  # frame threads too: twice as fast, the same frames
        rate = stream.average_rate or stream.guessed_rate
        yield float(rate) if rate else math.nan, stream.frames
        try:
            yield from container.decode(stream)
        except av.FFmpegError as e:
            raise undecodable(video_path, e)


def probe_video(video_path):
    """(number of decoded frames, frames per second: the stream's average rate, NaN if it states none)."""
    frames = decoded_frames(video_path)
    fps, _ = next(frames)
    return sum(1 for _ in frames), fps


def too_short(video_path, n_frames):
    return DataError(f'{video_path}: {n_frames} frames, fewer than the {FRAMES_PER_SNIPPET} of one snippet')


def frame_scores(snippet_scores, frames):
    """Every snippet's score on its 16 frames; the frames after the last full snippet carry its score."""
    return snippet_scores[np.minimum(np.arange(frames) // FRAMES_PER_SNIPPET, len(snippet_scores) - 1)]


# ---------------------------------------------------------------------------------------------- features
def crop_boxes(crops):
    """(top, left, flipped) of each crop, in the order of the features' crop axis."""
    if crops == 1:
        return [CORNERS[CENTER] + (False,)]
    return [corner + (flipped,) for flipped in (False, True) for corner in CORNERS]


def network_input(frames, crops, device):
    """frames: uint8 [b * 16, 256, 340, 3] -> float32 [b * crops, 3, 16, 224, 224] on device, in [-1, 1], laid out
    channels_last_3d (the frames' own order, time, height, width, channel: each crop is one strided copy)."""
    frames = torch.from_numpy(frames).to(device)
    snippets = frames.unflatten(0, (-1, FRAMES_PER_SNIPPET))
    x = torch.empty((len(snippets), crops, FRAMES_PER_SNIPPET, CROP, CROP, 3), device=device)
    flipped = None
    for k, (top, left, flip) in enumerate(crop_boxes(crops)):
        if flip and flipped is None:
            flipped = snippets.flip(3)  # the whole frame, then its crops
        source = flipped if flip else snippets
        x[:, k] = source[:, :, top:top + CROP, left:left + CROP]
    # (2x - 255) / 255 in float32 is exactly the float32 rounding of x * 2 / 255 - 1 in float64, for every x
    x.mul_(2).sub_(255).div_(255)
    return x.flatten(0, 1).permute(0, 4, 1, 2, 3)


@contextlib.contextmanager
def float32_convolutions():
    """Within it, cuDNN's float32 convolutions are IEEE float32, not the TF32 (10-bit mantissa) they are by
    default on recent GPUs, which moved the features by 1e-4 of their mean size (H100, random weights).
    Nothing changes on the CPU."""
    conv = torch.backends.cudnn.conv
    before, conv.fp32_precision = conv.fp32_precision, 'ieee'
    try:
        yield
    finally:
        conv.fp32_precision = before


def resized(frame):
    """A decoded frame (av.VideoFrame) as the network's frames are: RGB uint8 [256, 340, 3], Lanczos-resized."""
    return np.asarray(frame.to_image().resize((WIDTH, HEIGHT), Image.Resampling.LANCZOS))


class Extractor:
    """The network (backend.load_network's, either backend) on snippets of resized frames: uint8
    [b * 16, 256, 340, 3] -> float32 numpy [b, crops, 2048]. half: float16 autocast (CUDA only)."""

    def __init__(self, network, crops=10, device='cpu', half=False):
        self.network, self.crops, self.device, self.half = network, crops, torch.device(device), half

    def __call__(self, frames):
        with (torch.inference_mode(), float32_convolutions(),
              torch.autocast('cuda', torch.float16, enabled=self.half)):
            y = self.network(network_input(frames, self.crops, self.device))
        return y.float().view(-1, self.crops, FEATURE_SIZE).cpu().numpy()


def live_batch_size(network, crops):
    """The snippets live.py and watch.py run through network (load_network's) at a time when none is set: one on
    OpenVINO, whose CPU runtime takes as long per clip at every batch size (measured on 2 cores: 0.46 to 0.51 s
    per 1-crop clip at 1, 2, 4 and 8 clips) while each clip of a batch holds about 60 MB more and a batch's first
    snippet waits for its last; extract_features.py's CLIPS_PER_BATCH // crops on PyTorch, a GPU's throughput
    growing with the batch."""
    return 1 if isinstance(network, OpenVINONetwork) else max(1, CLIPS_PER_BATCH // crops)


def extract_video(video_path, network, crops=10, batch_size=None, device='cpu', half=False, progress=True):
    """One video's features: (float32 numpy [T, crops, 2048], number of decoded frames, fps).

    Decodes and resizes the frames into a buffer of batch_size snippets (default: CLIPS_PER_BATCH // crops) and
    runs the network on the batch's snippets x crops whenever it is full, so memory does not grow with the
    video. DataError for a video that cannot be decoded or has fewer than 16 frames.
    """
    extract = Extractor(network, crops, device, half)
    batch_size = batch_size or max(1, CLIPS_PER_BATCH // crops)
    buffer = np.empty((batch_size * FRAMES_PER_SNIPPET, HEIGHT, WIDTH, 3), np.uint8)
    frames = decoded_frames(video_path)
    fps, stated = next(frames)
    features, n_frames = [], 0
    bar = tqdm(total=stated // FRAMES_PER_SNIPPET or None, desc=os.path.basename(video_path), unit='snippet',
               disable=None if progress else True, leave=False)

    def forward(n):
        features.append(extract(buffer[:n]))
        bar.update(n // FRAMES_PER_SNIPPET)

    with bar:
        for frame in frames:
            buffer[n_frames % len(buffer)] = resized(frame)
            n_frames += 1
            if n_frames % len(buffer) == 0:
                forward(len(buffer))
        tail = n_frames % len(buffer) // FRAMES_PER_SNIPPET * FRAMES_PER_SNIPPET
        if tail:
            forward(tail)
    if n_frames < FRAMES_PER_SNIPPET:
        raise too_short(video_path, n_frames)
    return np.concatenate(features), n_frames, fps


# ---------------------------------------------------------------------------------------------- flags
def add_extraction_arguments(parser, live=False):
    """The extraction flags, which detect.py and live.py share (each script adds its own --weights); live:
    live.py's batch default (live_batch_size)."""
    parser.add_argument('--crops', type=int, choices=[10, 1], default=10,
                        help='10: TenCrop (RTFM-style); 1: the center crop only, 10x faster (default: %(default)s)')
    parser.add_argument('--batch-size', type=int,
                        help='snippets decoded and run through the network at a time (default: '
                             + ('1 on OpenVINO; on PyTorch ' if live else '') +
                             f'{CLIPS_PER_BATCH // 10} snippets with 10 crops, {CLIPS_PER_BATCH} with 1)')
    parser.add_argument('--half', action='store_true',
                        help='float16 autocast on CUDA: faster, features differ slightly from float32 (README)')
    parser.add_argument('--device', default='auto', choices=['auto', 'cpu', 'cuda'],
                        help='auto: CUDA when present (default: %(default)s)')
    parser.add_argument('--backend', default='auto', choices=BACKENDS,
                        help="the I3D network's runtime; auto: OpenVINO on the CPU, PyTorch on CUDA, both float32 "
                             '(README: The I3D backend) (default: %(default)s)')


def check_weights(path, what='--weights'):
    """The I3D weights file exists, is not empty and can be read: checked before any work, whether or not the
    run needs the network (i3d.load_i3d checks what it holds when it loads it). DataError naming `what` (the flag
    or the key that gave the path)."""
    if not os.path.isfile(path):
        raise DataError(f'{what} {path}: no such file; {WHERE_FROM}')
    try:
        with open(path, 'rb') as f:
            empty = not f.read(1)
    except OSError as e:
        raise DataError(f'{what} {path}: cannot be read ({e.strerror})')
    if empty:
        raise DataError(f'{what} {path}: an empty file (an interrupted download?); {WHERE_FROM}')


def extraction_device(args):
    """The device of --device, after checking the extraction flags (--half and --backend against the device) and,
    when given, --weights (check_weights): the checks every video script makes first."""
    if args.batch_size is not None:
        check_positive(args, 'batch_size')
    device = pick_device(args.device)
    if args.half and device.type != 'cuda':
        raise DataError('--half needs a CUDA device')
    check_backend(args.backend, device)
    if args.weights is not None:
        check_weights(args.weights)
    return device
