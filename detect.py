"""The anomalous moments of your own videos: per-frame scores, events and figures from a trained checkpoint.

    python detect.py clip.mp4 --ckpt ckpt/SelfAttention-da64-r3-T32-seed9111.pth --weights i3d_r50_kinetics.pth
    python detect.py videos/ --video-out --ckpt ckpt/mine.pth --weights i3d_baseline_32x2_IN_pretrain_400k.pkl
    python detect.py features/UCF-Test/Arrest001_x264_i3d.npy --ckpt ckpt/SelfAttention-da64-r3-T32-seed1111.pth

A video's 10-crop I3D features are extracted as extract_features.py makes them, into --features-dir, where
they are found again: scoring again, with another checkpoint, needs no --weights and no extraction. A feature
file is scored as it is, its frames 16 per snippet at --fps (default 30, UCF-Crime's). The checkpoint's da,
r and feature size are read from its shapes. The scores are the paper's test protocol on the one video: chunks of
--test-split-size snippets, the mean over crops, each snippet's score on its 16 frames; frames after the
last full snippet carry the last snippet's score. An event is a maximal run of frames scored >= --threshold.
Three warnings (on stderr; the run goes on): a video smaller than the network's 224-pixel crop, an input
shorter than one chunk, whose whole length gets one score, and scores all below 1e-6 or above 1 - 1e-6, which
says that the checkpoint and the features do not fit each other (a model trained on the built-in synthetic
features, say, scoring real I3D features).

Written to --out-dir, per input (named after the video):
    <video>.csv          frame,time,score: one row per frame, time in seconds (frame / fps)
    <video>.json         the settings, max_score and the events: start_frame, end_frame (exclusive: the
                         first frame after the event), start_time, end_time (end_frame / fps), peak_score
    <video>.png          the score over time, events shaded; the attention hops below
    <video>-scored.mp4   with --video-out: the video above a strip of its score timeline
    index.html           the review page of every result in the folder (page.py), unless --no-page
The flags, the output folders and the checkpoint are checked first, before anything else is loaded (a missing
--weights file is an error even when no video needs it); a mistake ends the run in one line. Then every input
is checked: each that is neither a video nor a feature file, a video that FFmpeg cannot open, that has no
video stream or fewer than 16 frames, and a feature file of the wrong form is named in one line, and the
others are scored all the same. An input that fails later (a video that fails while decoding, features that
hold NaN) is reported and the others go on. When any input failed, a last line counts them and the exit
status is 1; a single input that fails is its one line.
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch

from backend import load_network
from cli import check_out_dir, check_positive, run
from dataset import FRAMES_PER_SNIPPET, DataError, check_finite, open_features, save_npy, video_name, write_atomic
from i3d import FEATURE_SIZE as I3D_FEATURE_SIZE
from model import load_checkpoint
from page import write_page
from protocol import video_scores
from results import CSV_HEADER, csv_rows, event_record, find_events
from video import (FEATURE_FILE_FPS, add_extraction_arguments, extract_video, extraction_device,
                   feature_path, find_inputs, frame_scores, input_problems, probe_video)

SATURATED = 1e-6  # scores all below this or above 1 - this: the checkpoint does not fit the features


def list_inputs(inputs):
    """video.find_inputs' (inputs, problems), after checking that no two inputs have one name, as their outputs
    would collide."""
    found, problems = find_inputs(inputs)
    named = {}
    for path, _ in found:
        first = named.setdefault(video_name(path), path)
        if first != path:
            raise DataError(f'{first} and {path} are both named {video_name(path)}: their features and results '
                            f'would overwrite each other; rename one')
    return found, problems


def read_features(path, feature_size):
    return check_finite(path, np.array(open_features(path, feature_size)))


def video_features(args, network, device, video):
    """(features [T, crops, 2048], frames, fps, feature file, how they came) of a video: its features in
    --features-dir if there, else extracted and saved there."""
    feature_file = feature_path(args.features_dir, video)
    if not os.path.isfile(feature_file):
        features, frames, fps = extract_video(video, network, args.crops, args.batch_size, device, args.half)
        save_npy(feature_file, features)
        return features, frames, fps, feature_file, f'features extracted to {feature_file}'
    features = read_features(feature_file, I3D_FEATURE_SIZE)
    frames, fps = probe_video(video)
    snippets = (frames - FRAMES_PER_SNIPPET) // FRAMES_PER_SNIPPET + 1
    if len(features) != snippets:
        raise DataError(f'{feature_file}: holds {len(features)} snippets, but the {frames} frames of {video} make '
                        f'{max(snippets, 0)}: the features of another video of that name? Delete the file to '
                        f'extract them again')
    return features, frames, fps, feature_file, f'features found in {feature_file}'


def warn(message):
    print(f'detect.py: warning: {message}', file=sys.stderr)


def detect(args, model, network, device, path, is_features):
    """Score one input, print its events and write its files."""
    if is_features:
        features = read_features(path, model.self_anttention[0].in_features)
        frames, fps, feature_file, how = FRAMES_PER_SNIPPET * len(features), FEATURE_FILE_FPS, path, 'a feature file'
    else:
        features, frames, fps, feature_file, how = video_features(args, network, device, path)
    fps = args.fps or fps
    if not fps > 0:  # NaN: the video states no frame rate
        raise DataError(f'{path}: the video does not state its frame rate: give it with --fps')
    features = torch.from_numpy(features).to(device)
    snippet_scores = video_scores(model, features, args.test_split_size)
    scores = frame_scores(snippet_scores, frames)
    events = find_events(scores, args.threshold)

    print(f'{path}: {frames} frames, {frames / fps:.1f} s at {fps:g} fps, {len(features)} snippets of '
          f'{features.shape[1]}-crop features ({how})')
    print(f'  max score {scores.max():.2f}; events (frames scored >= {args.threshold:g}): {len(events)}')
    for start, end, peak in events:
        print(f'  {start / fps:.1f} s - {end / fps:.1f} s  peak {peak:.2f}')
    if len(features) < args.test_split_size:
        parts = '; a smaller --test-split-size scores it in parts' if len(features) > 1 else ''
        warn(f'{path}: {len(features)} snippets, fewer than one chunk of --test-split-size {args.test_split_size}: '
             f'the whole video gets one score{parts}')
    if np.all((scores < SATURATED) | (scores > 1 - SATURATED)):
        warn(f'{path}: every score is below {SATURATED:g} or above 1 - {SATURATED:g} (from {scores.min():.3g} to '
             f'{scores.max():.3g}): the checkpoint and the features most likely do not fit each other (a '
             f'model trained on synthetic features, as the Quick start\'s, scoring real I3D features?)')

    stem = os.path.join(args.out_dir, video_name(path))
    write_atomic(stem + '.csv', lambda f: f.write((CSV_HEADER + csv_rows(0, scores, fps)).encode()))
    report = {'video': path, 'features': feature_file, 'fps': fps, 'frames': frames, 'snippets': len(features),
              'crops': features.shape[1], 'checkpoint': args.ckpt, 'test_split_size': args.test_split_size,
              'threshold': args.threshold, 'max_score': float(scores.max()),
              'events': [event_record(start, end, peak, fps) for start, end, peak in events], 'cwd': os.getcwd()}
    write_atomic(stem + '.json', lambda f: f.write(json.dumps(report, indent=2).encode() + b'\n'))

    from plots import plot_scores, video_attention  # matplotlib only when drawing: 0.4 s of start-up
    attention = video_attention(model, features, args.test_split_size)
    title = (f'{video_name(path)} (shaded: the events, score ≥ {args.threshold:g})' if events else
             f'{video_name(path)} (no events: no frame scored ≥ {args.threshold:g})')
    plot_scores(title, scores, [(start, end) for start, end, _ in events], attention, args.test_split_size,
                stem + '.png', args.threshold, fps)
    written = [stem + '.csv', stem + '.json', stem + '.png']
    if args.video_out:
        from video_out import write_scored_video
        write_scored_video(path, stem + '-scored.mp4', scores, fps, args.threshold)
        written.append(stem + '-scored.mp4')
    if not args.no_page:
        write_page(args.out_dir)
        written.append(os.path.join(args.out_dir, 'index.html'))
    print(f'  written: {", ".join(written)}')


def main(args):
    check_positive(args, 'test_split_size')
    if not 0 <= args.threshold <= 1:
        raise DataError(f'--threshold must be between 0 and 1, as the scores are, got {args.threshold}')
    if args.fps is not None and not 0 < args.fps < math.inf:
        raise DataError(f'--fps must be a positive number of frames per second, got {args.fps}')
    check_out_dir(args.out_dir, '--out-dir')
    device = extraction_device(args)  # the extraction flags and the --weights file
    inputs, problems = list_inputs(args.inputs)
    total = len(inputs) + len(problems)
    videos = [path for path, is_features in inputs if not is_features]
    if args.video_out and len(videos) < len(inputs):
        feature_file = next(path for path, is_features in inputs if is_features)
        raise DataError(f'--video-out draws on the video, and {feature_file} is a feature file')
    model = load_checkpoint(args.ckpt)  # small: reading it is checking it
    problems.update(input_problems(inputs, args.ckpt, model.self_anttention[0].in_features, warn))
    if total == len(problems) == 1:  # a single bad input: its one line
        raise DataError(next(iter(problems.values())))
    inputs = [(path, is_features) for path, is_features in inputs if path not in problems]
    to_extract = [v for v, is_features in inputs if not is_features
                  and not os.path.isfile(feature_path(args.features_dir, v))]
    if to_extract and args.weights is None:
        raise DataError(f'{to_extract[0]} has no features in {args.features_dir} yet: extracting them needs '
                        f'--weights i3d_r50_kinetics.pth (where it comes from: README.md, "Your own videos")')
    if to_extract:
        check_out_dir(args.features_dir, '--features-dir')
    for problem in problems.values():  # every bad input named before any work; the others go on
        print(f'detect.py: error: {problem}', file=sys.stderr)
    model = model.to(device).eval()
    network = load_network(args.weights, device, args.backend) if to_extract else None
    failed = list(problems)
    for path, is_features in inputs:
        try:
            detect(args, model, network, device, path, is_features)
        except DataError as e:
            if total == 1:
                raise
            print(f'detect.py: error: {e}', file=sys.stderr)  # and the other inputs go on
            failed.append(path)
    if failed:
        others = '; the others are done' if inputs else ''
        raise DataError(f'{len(failed)} of {total} inputs failed (above){others}')


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('inputs', nargs='+', metavar='INPUT',
                        help='a video, a folder of videos (searched recursively) or a *_i3d.npy feature file')
    parser.add_argument('--ckpt', required=True, help="a checkpoint of train.py or the authors' released ones")
    parser.add_argument('--weights', help='I3D ResNet-50 weights (i3d_r50_kinetics.pth, or the Caffe2 .pkl): '
                                          'needed only for videos whose features are not in --features-dir yet')
    parser.add_argument('--test-split-size', type=int, default=32,
                        help='snippets per scored chunk, which gets one score (default: %(default)s)')
    parser.add_argument('--threshold', type=float, default=0.5,
                        help='an event is a run of frames scored >= this (default: %(default)s)')
    parser.add_argument('--out-dir', default='results/videos',
                        help="where each input's CSV, JSON, PNG (and MP4) go (default: %(default)s)")
    parser.add_argument('--features-dir', default='features/videos',
                        help="where videos' features are saved, and found again (default: %(default)s)")
    parser.add_argument('--fps', type=float, help="frames per second of the time axis (default: the video's own; "
                                                  f"{FEATURE_FILE_FPS}, UCF-Crime's, for a feature file)")
    parser.add_argument('--video-out', action='store_true',
                        help='also write <video>-scored.mp4: the video above a strip of its score timeline')
    parser.add_argument('--no-page', action='store_true',
                        help="do not rewrite <out-dir>/index.html, the review page of the folder's results")
    add_extraction_arguments(parser)
    return parser


if __name__ == '__main__':
    run(main, build_parser().parse_args(), 'detect.py')
