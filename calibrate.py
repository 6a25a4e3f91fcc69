"""A threshold for each camera: the lowest threshold at which footage of the camera's normal scene gives at most
--false-alarms-per-hour events an hour, on the scores live.py gives that footage.

    python calibrate.py cam1-normal/ --ckpt ckpt/mine.pth --weights W --crops 1 --hop 1 --out cam1.json
    python calibrate.py mon.mp4 tue.mp4 --ckpt ckpt/mine.pth --weights W --crops 1 --hop 1 --false-alarms-per-hour 0.5
    python calibrate.py results/live/cam1_i3d.npy --ckpt ckpt/mine.pth --hop 1 --fps 25

The head's 0.5 is a threshold for UCF-Crime's test set, not for a given camera: one camera alerts all day,
another never. Record the camera's normal scene (hours of it, with no incident), give the recordings here with
the flags live.py or watch.py will run with (--crops, --test-split-size and --hop: the scores depend on them)
and give the threshold it prints to live.py --threshold, or to watch.py's camera as its threshold.

The scores are live.py's on each input as a finished stream: extract_features.py's features (video.py), then
every --hop snippets the window of the last --test-split-size snippets scored (windows.Windows) and its score
given to the hop snippets' frames, the frames after the last full snippet carrying the last score. A feature
file (*_i3d.npy: extract_features.py's, or those live.py records) is scored as one stream without gaps, 16
frames per snippet at --fps (default 30). Each input is a stream of its own: no event spans two.

The events are live.py's: maximal runs of frames scored >= the threshold (results.find_events). Their number
is not monotonic in the threshold: a higher one can split an event in two. So the threshold is the lowest at
which the footage gives at most R events an hour (R = --false-alarms-per-hour, over the hours the footage
covers), and so does every higher one. Footage shorter than 1/R hours allows no event at all: the threshold is
then just above the highest score seen, and a warning says so (record more of the scene).

Prints, and writes to --out as JSON: threshold, false_alarms_per_hour, events and events_per_hour (at the
threshold), hours, frames, the frame scores' quantiles (50%, 90%, 99%, 99.9%, max), events_at_0.5 (at the
default threshold), checkpoint, test_split_size, hop, and per input its path, frames, fps, snippets, crops and
max_score. The inputs and flags are checked before any work; an input that cannot be used ends the run (all of
them named), as a calibration on part of the footage would be wrong.
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch

from backend import load_network
from cli import check_out_dir, check_window, run
from dataset import FRAMES_PER_SNIPPET, DataError, check_finite, open_features, write_atomic
from model import load_checkpoint
from results import find_events
from video import (FEATURE_FILE_FPS, add_extraction_arguments, extract_video, extraction_device,
                   find_inputs, frame_scores, input_problems)
from windows import Windows

DEFAULT_THRESHOLD = 0.5  # live.py's and detect.py's
QUANTILES = {'50%': 0.5, '90%': 0.9, '99%': 0.99, '99.9%': 0.999, 'max': 1.0}


def stream_scores(model, features, window, hop):
    """live.py's snippet scores of a finished stream without gaps, features [T, crops, F] (a tensor on the model's
    device): every hop snippets, the window's score goes to them; what waits at the end is scored as at the end of
    a stream. float32 numpy [T]."""
    windows, scores = Windows(model, window, hop), np.empty(len(features), np.float32)
    for i, feature in enumerate(features, 1):
        if windows.add(feature) or i == len(features):
            score, n = windows.score()
            scores[i - n:i] = score
    return scores


def event_counts(streams):
    """(thresholds, counts): every distinct frame score of streams (float32 arrays), ascending, and the number of
    events find_events gives at each as the threshold, all at once. Frame i starts an event at threshold t when
    its score >= t > the score of the frame before it (none before a stream's first): t in (before, score]."""
    scores = np.concatenate(streams)
    before = np.concatenate([np.concatenate([[-np.inf], s[:-1]]) for s in streams]).astype(np.float32)
    starts = before < scores  # the frames that start an event at some threshold
    highest, lowest = np.sort(scores[starts]), np.sort(before[starts])
    thresholds = np.unique(scores)
    counts = np.searchsorted(lowest, thresholds) - np.searchsorted(highest, thresholds)  # #{t <= high} - #{t <= low}
    return thresholds, counts


def fit_threshold(streams, allowed):
    """The lowest threshold (a float32's value) at which streams give at most `allowed` events, as every higher
    threshold does: just above the highest score at which they give more; 0 when none does; None when that is
    above 1, where no threshold can be."""
    thresholds, counts = event_counts(streams)
    over = thresholds[counts > allowed]
    if not len(over):
        return 0.0
    threshold = np.nextafter(over[-1], np.float32(np.inf))  # the next float32: the events of any higher score
    return float(threshold) if threshold <= 1 else None


def warn(message):
    print(f'calibrate.py: warning: {message}', file=sys.stderr)


def check_flags(args):
    check_window(args)
    if not 0 < args.false_alarms_per_hour < math.inf:
        raise DataError(f'--false-alarms-per-hour must be a positive number of events an hour, got '
                        f'{args.false_alarms_per_hour}')
    if args.fps is not None and not 0 < args.fps < math.inf:
        raise DataError(f'--fps must be a positive number of frames per second, got {args.fps}')
    if os.path.isdir(args.out):
        raise DataError(f'--out {args.out}: a folder; give the JSON file\'s name')
    check_out_dir(os.path.dirname(args.out) or '.', '--out')


def check_inputs(args, inputs, problems, feature_size):
    """Every input usable, or DataError: one bad input is its line; several are a line each and a last one."""
    videos, total = [path for path, is_features in inputs if not is_features], len(inputs) + len(problems)
    problems.update(input_problems(inputs, args.ckpt, feature_size, warn))
    if len(problems) == 1:
        raise DataError(next(iter(problems.values())))
    if problems:
        for problem in problems.values():
            print(f'calibrate.py: error: {problem}', file=sys.stderr)
        raise DataError(f'{len(problems)} of {total} inputs cannot be used (above): nothing is calibrated')
    if videos and args.weights is None:
        raise DataError(f'{videos[0]}: scoring a video needs --weights i3d_r50_kinetics.pth (where it comes from: '
                        f'README.md, "Your own videos")')
    return videos


def main(args):
    check_flags(args)
    device = extraction_device(args)  # the extraction flags and the --weights file
    inputs, problems = find_inputs(args.inputs)
    model = load_checkpoint(args.ckpt)  # small: reading it is checking it
    feature_size = model.self_anttention[0].in_features
    videos = check_inputs(args, inputs, problems, feature_size)
    model = model.to(device).eval()
    network = load_network(args.weights, device, args.backend) if videos else None

    streams, records = [], []
    for path, is_features in inputs:
        if is_features:
            features = check_finite(path, np.array(open_features(path, feature_size)))
            frames, fps = FRAMES_PER_SNIPPET * len(features), FEATURE_FILE_FPS
        else:
            features, frames, fps = extract_video(path, network, args.crops, args.batch_size, device, args.half)
        fps = args.fps or fps
        if not fps > 0:  # NaN: the video states no frame rate
            raise DataError(f'{path}: the video does not state its frame rate: give it with --fps')
        snippet_scores = stream_scores(model, torch.from_numpy(features).to(device), args.test_split_size, args.hop)
        streams.append(frame_scores(snippet_scores, frames))
        records.append({'path': path, 'frames': frames, 'fps': fps, 'snippets': len(features),
                        'crops': features.shape[1], 'max_score': float(streams[-1].max())})
        print(f'{path}: {frames} frames, {frames / fps:.1f} s at {fps:g} fps, {len(features)} snippets; max score '
              f'{streams[-1].max():.4g}')

    rate = args.false_alarms_per_hour
    hours = sum(record['frames'] / record['fps'] for record in records) / 3600
    if hours < 1 / rate:
        warn(f'the footage covers {hours:.3g} h, less than the {1 / rate:g} h in which {rate:g} events an hour is one '
             f'event: it allows none, and the threshold is just above its highest score; more hours of the normal '
             f'scene give a surer threshold')
    threshold = fit_threshold(streams, rate * hours)
    scores = np.concatenate(streams)
    if threshold is None:
        raise DataError(f'frames of this footage score {scores.max():g}, the highest score there is: no threshold up '
                        f'to 1 gives at most {rate:g} events an hour (the checkpoint does not fit this scene, or the '
                        f'footage is not normal)')
    events = sum(len(find_events(s, threshold)) for s in streams)
    quantiles = dict(zip(QUANTILES, np.quantile(scores, list(QUANTILES.values())).tolist()))
    report = {'threshold': threshold, 'false_alarms_per_hour': rate, 'events': events,
              'events_per_hour': events / hours, 'hours': hours, 'frames': len(scores), 'quantiles': quantiles,
              'events_at_0.5': sum(len(find_events(s, DEFAULT_THRESHOLD)) for s in streams),
              'checkpoint': args.ckpt, 'test_split_size': args.test_split_size, 'hop': args.hop, 'inputs': records}
    write_atomic(args.out, lambda f: f.write(json.dumps(report, indent=2).encode() + b'\n'))

    print(f'{hours:.3g} h of footage ({len(scores)} frames); frame scores: '
          + ', '.join(f'{name} {value:.4g}' for name, value in quantiles.items()))
    print(f'at the default threshold {DEFAULT_THRESHOLD:g}: {report["events_at_0.5"]} events '
          f'({report["events_at_0.5"] / hours:.3g} an hour)')
    print(f'threshold {threshold!r}: {events} events ({events / hours:.3g} an hour), at most {rate:g} an hour on '
          f'this footage, as at every higher threshold; live.py --threshold {threshold!r}')
    print(f'written: {args.out}')


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('inputs', nargs='+', metavar='VIDEO_OR_FOLDER',
                        help="footage of the camera's normal scene: a video, a folder of videos (searched "
                             'recursively) or a *_i3d.npy feature file')
    parser.add_argument('--ckpt', required=True, help="a checkpoint of train.py or the authors' released ones")
    parser.add_argument('--weights', help='I3D ResNet-50 weights (i3d_r50_kinetics.pth, or the Caffe2 .pkl): '
                                          'needed for videos, not for feature files')
    parser.add_argument('--test-split-size', type=int, default=32,
                        help="the window, as live.py's: snippets scored together (default: %(default)s)")
    parser.add_argument('--hop', type=int,
                        help="new snippets each score waits for, as live.py's: 1 to the window (default: the window)")
    parser.add_argument('--false-alarms-per-hour', type=float, default=0.1,
                        help='the most events an hour the normal footage may give at the threshold '
                             '(default: %(default)s)')
    parser.add_argument('--out', default='results/calibration.json',
                        help='the JSON file written (default: %(default)s)')
    parser.add_argument('--fps', type=float, help="frames per second of the time axis (default: the video's own; "
                                                  f"{FEATURE_FILE_FPS} for a feature file)")
    add_extraction_arguments(parser)
    return parser


if __name__ == '__main__':
    run(main, build_parser().parse_args(), 'calibrate.py')
