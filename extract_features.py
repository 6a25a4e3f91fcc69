"""Extract 10-crop I3D ResNet-50 features from videos, the way RTFM-style features are made.

    python extract_features.py videos/ --weights i3d_r50_kinetics.pth --out-dir features/videos
    python extract_features.py a.mp4 b.avi --weights i3d_baseline_32x2_IN_pretrain_400k.pkl --crops 1
    python extract_features.py videos/ --weights i3d_r50_kinetics.pth --shard $SLURM_ARRAY_TASK_ID/8

Writes <out-dir>/<video stem>_i3d.npy, float32 [T, crops, 2048], one row per 16-frame snippet. The protocol:
every frame decoded by PyAV as RGB, resized to 340 x 256 (width x height) by PIL's Lanczos filter and scaled
to x * 2 / 255 - 1; snippets of 16 consecutive frames with stride 16, T = (n - 16) // 16 + 1 for n >= 16
frames (the frames after the last full snippet are dropped); ten 224 x 224 crops of each snippet in
torchvision's TenCrop order (top-left, top-right, bottom-left, bottom-right, center, then the same five of
the horizontally flipped frames; --crops 1 keeps the center one); a crop's feature is the I3D network's
layer4 output averaged over time, height and width (i3d.py).

The decoding streams: at most --batch-size snippets of frames are held at a time, whatever the video's
length. A video whose output exists is skipped (unless --overwrite); one that cannot be decoded or is
shorter than 16 frames is reported in one line and the others go on; the exit status is 1 if any failed.
--shard K/N takes every N-th video from the K-th (0 <= K < N) of the sorted list, so that N jobs split a
dataset without coordination, and together write exactly the files of one run.

On a GPU the network is IEEE float32 (not the TF32 cuDNN picks by default) unless --half, and the decoding
and resizing, on one CPU core per process, bound the speed (on an H100: about 6 snippets/s of 10 crops per
process, the network alone 55, 200 with --half): run several shards at once on each GPU.
"""
import argparse
import contextlib
import math
import os
import re
import sys
import time

import av
import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from cli import check_positive, pick_device, run
from dataset import FEATURE_SUFFIX, FRAMES_PER_SNIPPET, DataError, save_npy
from i3d import FEATURE_SIZE, load_i3d

VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mkv', '.mov', '.webm', '.mpg', '.mpeg', '.m4v', '.wmv', '.flv', '.ts',
                    '.m2ts', '.mts', '.3gp', '.ogv', '.asf', '.vob')
WIDTH, HEIGHT, CROP = 340, 256, 224
# (top, left) of the five crops of a 256 x 340 frame, in torchvision's five_crop order
CORNERS = ((0, 0), (0, WIDTH - CROP), (HEIGHT - CROP, 0), (HEIGHT - CROP, WIDTH - CROP),
           ((HEIGHT - CROP) // 2, (WIDTH - CROP) // 2))
CENTER = 4
CLIPS_PER_BATCH = 20  # the default batch: 2 snippets of 10 crops, 20 of 1 (2 CPU cores: 1.1x as fast as 10 clips)


# ---------------------------------------------------------------------------------------------- files
def find_videos(inputs):
    """The videos of inputs, sorted: a file is taken as it is, a folder is searched recursively for files
    with a VIDEO_EXTENSIONS extension (in any case)."""
    videos = set()
    for path in inputs:
        if os.path.isfile(path):
            videos.add(path)
        elif os.path.isdir(path):
            found = [os.path.join(root, name) for root, _, names in os.walk(path) for name in names
                     if name.lower().endswith(VIDEO_EXTENSIONS)]
            if not found:
                raise DataError(f'{path}: no videos in it (searched for {" ".join(VIDEO_EXTENSIONS)})')
            videos.update(found)
        else:
            raise DataError(f'{path}: no such file or folder')
    return sorted(videos)


def feature_path(out_dir, video_path):
    """<out_dir>/<video stem>_i3d.npy"""
    return os.path.join(out_dir, os.path.splitext(os.path.basename(video_path))[0] + FEATURE_SUFFIX)


def parse_shard(text):
    """'K/N' -> (K, N) with 0 <= K < N."""
    match = re.fullmatch(r'(\d+)/(\d+)', text)
    if not match or not int(match[1]) < int(match[2]):
        raise DataError(f'--shard {text}: expected K/N with 0 <= K < N, e.g. 0/4, 1/4, 2/4 and 3/4 for four jobs')
    return int(match[1]), int(match[2])


# ---------------------------------------------------------------------------------------------- decoding
def decoded_frames(video_path):
    """Yields (fps, the frame count the container states, 0 if none) once, then every frame of the first video
    stream (av.VideoFrame), in order. fps is the stream's average rate, NaN if it states none."""
    try:
        with av.open(video_path) as container:
            if not container.streams.video:
                raise DataError(f'{video_path}: no video stream in it')
            stream = container.streams.video[0]
            stream.thread_type = 'AUTO'  # frame threads too: twice as fast, the same frames
            rate = stream.average_rate or stream.guessed_rate
            fps = float(rate) if rate else math.nan
            yield fps, stream.frames
            yield from container.decode(stream)
    except av.FFmpegError as e:
        raise DataError(f'{video_path}: cannot be decoded ({getattr(e, "strerror", None) or e})')


def probe_video(video_path):
    """(number of decoded frames, frames per second: the stream's average rate, NaN if it states none)."""
    frames = decoded_frames(video_path)
    fps, _ = next(frames)
    return sum(1 for _ in frames), fps


def too_short(video_path, n_frames):
    return DataError(f'{video_path}: {n_frames} frames, fewer than the {FRAMES_PER_SNIPPET} of one snippet')


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


def extract_video(video_path, network, crops=10, batch_size=None, device='cpu', half=False, progress=True):
    """One video's features: (float32 numpy [T, crops, 2048], number of decoded frames, fps).

    Decodes and resizes the frames into a buffer of batch_size snippets (default: CLIPS_PER_BATCH // crops) and
    runs the network on the batch's snippets x crops whenever it is full, so memory does not grow with the
    video. half: float16 autocast (CUDA only). DataError for a video that cannot be decoded or has fewer than 16 frames.
    """
    device = torch.device(device)
    batch_size = batch_size or max(1, CLIPS_PER_BATCH // crops)
    buffer = np.empty((batch_size * FRAMES_PER_SNIPPET, HEIGHT, WIDTH, 3), np.uint8)
    frames = decoded_frames(video_path)
    fps, stated = next(frames)
    features, n_frames = [], 0
    bar = tqdm(total=stated // FRAMES_PER_SNIPPET or None, desc=os.path.basename(video_path), unit='snippet',
               disable=None if progress else True, leave=False)

    def forward(n):
        with torch.inference_mode(), float32_convolutions(), torch.autocast('cuda', torch.float16, enabled=half):
            y = network(network_input(buffer[:n], crops, device))
        features.append(y.float().view(-1, crops, FEATURE_SIZE).cpu().numpy())
        bar.update(n // FRAMES_PER_SNIPPET)

    with bar:
        for frame in frames:
            image = frame.to_image().resize((WIDTH, HEIGHT), Image.Resampling.LANCZOS)
            buffer[n_frames % len(buffer)] = np.asarray(image)
            n_frames += 1
            if n_frames % len(buffer) == 0:
                forward(len(buffer))
        tail = n_frames % len(buffer) // FRAMES_PER_SNIPPET * FRAMES_PER_SNIPPET
        if tail:
            forward(tail)
    if n_frames < FRAMES_PER_SNIPPET:
        raise too_short(video_path, n_frames)
    return np.concatenate(features), n_frames, fps


# ---------------------------------------------------------------------------------------------- the script
def add_extraction_arguments(parser):
    """The extraction flags, which detect.py shares."""
    parser.add_argument('--crops', type=int, choices=[10, 1], default=10,
                        help='10: TenCrop (RTFM-style); 1: the center crop only, 10x faster')
    parser.add_argument('--batch-size', type=int,
                        help='snippets decoded and run through the network at a time, each as --crops clips '
                             f'(default: {CLIPS_PER_BATCH} clips, {CLIPS_PER_BATCH // 10} snippets of 10 crops)')
    parser.add_argument('--half', action='store_true',
                        help='float16 autocast on CUDA: faster, features differ slightly from float32 (README)')
    parser.add_argument('--device', default='auto', choices=['auto', 'cpu', 'cuda'], help='auto: CUDA when present')


def extraction_device(args):
    """The device of --device, checking the extraction flags against it."""
    if args.batch_size is not None:
        check_positive(args, 'batch_size')
    device = pick_device(args.device)
    if args.half and device.type != 'cuda':
        raise DataError('--half needs a CUDA device')
    return device


def main(args):
    device = extraction_device(args)
    shard, shards = parse_shard(args.shard)
    videos = find_videos(args.inputs)
    outputs = {}
    for video in videos:
        out = feature_path(args.out_dir, video)
        if out in outputs:
            raise DataError(f'{outputs[out]} and {video} would both write {out}: rename one')
        outputs[out] = video
    mine = videos[shard::shards]
    todo = [v for v in mine if args.overwrite or not os.path.exists(feature_path(args.out_dir, v))]
    print(f'{len(mine)} videos{f" (shard {args.shard} of {len(videos)})" if shards > 1 else ""}: '
          f'{len(mine) - len(todo)} done before, {len(todo)} to extract')
    if not todo:
        return
    network = load_i3d(args.weights, device)

    failed, snippets, start = [], 0, time.perf_counter()
    for video in tqdm(todo, desc='videos', unit='video', disable=None if len(todo) > 1 else True):
        try:
            features, n_frames, fps = extract_video(video, network, args.crops, args.batch_size, device, args.half)
        except DataError as e:
            tqdm.write(f'extract_features.py: error: {e}', file=sys.stderr)
            failed.append(video)
            continue
        out = feature_path(args.out_dir, video)
        save_npy(out, features)
        snippets += len(features)
        tqdm.write(f'{out}: {len(features)} snippets x {args.crops} crops ({n_frames} frames, {fps:g} fps)')
    seconds = time.perf_counter() - start
    print(f'{len(todo) - len(failed)} extracted, {len(mine) - len(todo)} skipped, {len(failed)} failed; '
          f'{snippets} snippets in {seconds:.1f} s ({snippets / seconds:.2f} snippets/s)')
    if failed:
        sys.exit(1)


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('inputs', nargs='+', metavar='VIDEO_OR_FOLDER')
    parser.add_argument('--weights', required=True,
                        help="pytorch-resnet3d's i3d_r50_kinetics.pth, or FAIR's Caffe2 "
                             'i3d_baseline_32x2_IN_pretrain_400k.pkl as it is')
    parser.add_argument('--out-dir', default='features/videos', help='where <video stem>_i3d.npy go')
    add_extraction_arguments(parser)
    parser.add_argument('--shard', default='0/1', metavar='K/N', help='every N-th video from the K-th, 0 <= K < N')
    parser.add_argument('--overwrite', action='store_true', help='extract again videos whose output exists')
    args = parser.parse_args()
    run(main, args, 'extract_features.py')
