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

The flags and the inputs are checked first, before anything is loaded: a missing input, a folder without
videos, two videos that would write one file, an --out-dir that cannot be written and a missing --weights file
(even when every video is done) each end the run in one line naming it. Then every video to extract is checked
(video.check_videos): each that is not a video (by its extension), that FFmpeg cannot open, that has no video
stream or that has fewer than 16 frames is named in one line, and the others are extracted all the same; a
video smaller than the network's 224-pixel crop gets a warning. The decoding streams: at most --batch-size
snippets of frames are held at a time, whatever the video's length. A video whose output exists is skipped
(unless --overwrite); one that fails while decoding is reported in one line and the others go on. When any
video failed, a last line names them all and the exit status is 1; a single video that cannot be extracted is
its one line.
--shard K/N takes every N-th video from the K-th (0 <= K < N) of the sorted list, so that N jobs split a
dataset without coordination, and together write exactly the files of one run; a shard checks, and names,
only its own videos.

On a GPU the network is IEEE float32 (not the TF32 cuDNN picks by default) unless --half, and the decoding
and resizing, on one CPU core per process, bound the speed (on an H100: about 6 snippets/s of 10 crops per
process, the network alone 55, 200 with --half): run several shards at once on each GPU.
"""
import argparse
import os
import sys
import time

from tqdm import tqdm

from backend import load_network
from cli import check_out_dir, parse_shard, run
from dataset import DataError, save_npy
from video import (VIDEO_EXTENSIONS, add_extraction_arguments, check_videos, extract_video, extraction_device,
                   feature_path, find_videos)


# ---------------------------------------------------------------------------------------------- the script
def main(args):
    device = extraction_device(args)  # the flags and the --weights file
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
    if todo:
        check_out_dir(args.out_dir, '--out-dir')
    problems = check_videos(todo, warn)
    if len(todo) == 1 and problems:  # a single bad input: its one line
        raise DataError(problems[todo[0]])
    for problem in problems.values():  # every bad video named before any work; the others go on
        print(f'extract_features.py: error: {problem}', file=sys.stderr)
    good = [v for v in todo if v not in problems]
    print(f'{len(mine)} videos{f" (shard {args.shard} of {len(videos)})" if shards > 1 else ""}: '
          f'{len(mine) - len(todo)} done before, {len(good)} to extract'
          f'{f", {len(problems)} that cannot be (above)" if problems else ""}')
    if not good:
        if problems:
            raise failure(list(problems), todo)
        return
    network = load_network(args.weights, device, args.backend)

    failed, snippets, start = list(problems), 0, time.perf_counter()
    for video in tqdm(good, desc='videos', unit='video', disable=None if len(good) > 1 else True):
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
        raise failure(failed, todo)


def failure(failed, todo):
    """The run's last line when videos failed: how many, which."""
    others = '; the others are extracted' if len(failed) < len(todo) else ''
    return DataError(f'{len(failed)} of {len(todo)} videos failed (above): {", ".join(sorted(failed))}{others}')


def warn(message):
    print(f'extract_features.py: warning: {message}', file=sys.stderr)


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('inputs', nargs='+', metavar='VIDEO_OR_FOLDER',
                        help=f'a video, or a folder searched recursively for videos ({" ".join(VIDEO_EXTENSIONS)})')
    parser.add_argument('--weights', required=True,
                        help="pytorch-resnet3d's i3d_r50_kinetics.pth, or FAIR's Caffe2 "
                             'i3d_baseline_32x2_IN_pretrain_400k.pkl as it is')
    parser.add_argument('--out-dir', default='features/videos',
                        help='where <video stem>_i3d.npy go (default: %(default)s)')
    add_extraction_arguments(parser)
    parser.add_argument('--shard', default='0/1', metavar='K/N',
                        help='every N-th video from the K-th, 0 <= K < N (default: %(default)s, every video)')
    parser.add_argument('--overwrite', action='store_true', help='extract again videos whose output exists')
    return parser


if __name__ == '__main__':
    run(main, build_parser().parse_args(), 'extract_features.py')
