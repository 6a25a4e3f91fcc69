"""Prepare a benchmark's features: the test list, the train videos pooled to --T segments, the frame ground truth.

    python preformer_feature.py --annotation Temporal_Anomaly_Annotation_for_Testing_Videos.txt
    python preformer_feature.py --dataset shanghai --annotation test_frame_mask
    python preformer_feature.py --dataset xd --annotation annotations.txt

Every input is read and checked before any output is written: the pooled train videos are staged in a
folder beside --out-dir, and only when all of them, the test features and the annotation are good do they
move into place and the lists and ground truth get written. A failed run leaves the previous ones as they were.

A features folder that holds more than half of its split's official videos (list/official/) is taken for a
download of them and compared with them: the official videos it lacks, and those it has that are not official,
are named, and it stops there, since its lists would not be the official ones (and its scores not the
benchmark's), unless --allow-missing. A folder of one's own videos (at most half of the official names) or a set
that synthetic.py wrote is not compared.
"""
import argparse
import os
import shutil
import sys

from tqdm import tqdm

from benchmarks import BENCHMARKS, add_argument
from cli import HelpFormatter, fill_defaults, run
from dataset import (DataError, FEATURE_SUFFIX, FRAMES_PER_SNIPPET, check_finite, open_features, pool, save_npy,
                     synthetic_files, video_name, write_list)


def compare_with_official(official, folder, split, paths):
    """How the folder's videos, and so the list written from them, stand to the official videos of split:
    (a note for the list's line, a sentence naming the differences or ''). A folder that holds at most half of
    the official videos (one's own), or whose every video synthetic.py wrote, is not compared: ('', '')."""
    names = [video_name(p) for p in paths]
    present = set(official) & set(names)
    if set(map(os.path.normpath, paths)) <= synthetic_files(folder) or 2 * len(present) <= len(official):
        return '', ''
    missing = [n for n in official if n not in present]
    extra = [n for n in names if n not in present]
    if not missing and not extra:
        return ', the official list', ''
    problem = f'{folder} holds {len(present)} of the {len(official)} official {split} videos'
    problem += f'; missing: {named(missing)}' if missing else ''
    problem += f'; not official: {named(extra)}' if extra else ''
    return f', not the official {len(official)}: {len(missing)} missing, {len(extra)} not official', problem


def named(names, most=10):
    return ', '.join(names[:most]) + (f' and {len(names) - most} more' if len(names) > most else '')


def main(args):
    if args.T <= 0:
        raise DataError(f'--T must be positive, got {args.T}')
    benchmark = args.benchmark
    test_paths = benchmark.scan(args.test_dir)
    train_paths = benchmark.scan(args.train_dir)
    notes, problems = {}, []
    for split, folder, paths in (('train', args.train_dir, train_paths), ('test', args.test_dir, test_paths)):
        notes[split], problem = compare_with_official(benchmark.official_names(split), folder, split, paths)
        if problem:
            problems.append(problem)
    if problems and not args.allow_missing:
        raise DataError(f'{"; ".join(problems)}. The lists would not be {benchmark.title}\'s official ones, nor the '
                        'scores its own: complete the download, or pass --allow-missing to write them anyway')
    for problem in problems:
        print(f'preformer_feature.py: warning: {problem}', file=sys.stderr)

    annotation = benchmark.read_annotation(args.annotation) if args.annotation else None
    lengths = [len(open_features(p, args.feature_size)) for p in test_paths]
    gt = benchmark.ground_truth(test_paths, lengths, annotation) if annotation is not None else None

    staging = f'{os.path.normpath(args.out_dir)}.tmp{os.getpid()}'
    try:
        pooled_names = []
        for path in tqdm(train_paths, desc=f'pooling train videos to {args.T} segments'):
            features = check_finite(path, open_features(path, args.feature_size))
            pooled_names.append(video_name(path) + FEATURE_SUFFIX)  # one file per video, all its crops
            save_npy(os.path.join(staging, pooled_names[-1]), pool(features, args.T))
        os.makedirs(args.out_dir, exist_ok=True)
        for name in pooled_names:
            os.replace(os.path.join(staging, name), os.path.join(args.out_dir, name))
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    write_list(args.test_list, test_paths)
    print(f'{args.test_list}: {len(test_paths)} {benchmark.title} test videos{notes["test"]}')
    if gt is not None:
        save_npy(args.gt, gt)
        print(f'{args.gt}: {gt.size} frame labels ({sum(lengths)} snippets x {FRAMES_PER_SNIPPET}), '
              f'{gt.mean():.2%} anomalous')
    write_list(args.train_list, [os.path.join(args.out_dir, name) for name in pooled_names])
    print(f'{args.train_list}: {len(pooled_names)} pooled train videos in {args.out_dir}{notes["train"]}')


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    add_argument(parser)
    parser.add_argument('--train-dir', help='raw train features (default: the benchmark\'s, features/UCF-Train, '
                                            'features/SH-Train, features/XD-Train)')
    parser.add_argument('--test-dir', help='raw test features (default: features/UCF-Test, SH-Test, XD-Test)')
    parser.add_argument('--out-dir', help='where the pooled train features go '
                                          '(default: preformer_features, preformer_features-{dataset} for the others)')
    parser.add_argument('--T', type=int, default=32, help='segments per pooled train video')
    parser.add_argument('--feature-size', type=int, help="features per crop (default: the benchmark's, 2048; "
                                                         'xd: 1024)')
    parser.add_argument('--annotation', help="the test annotation: UCF-Crime's "
                                             'Temporal_Anomaly_Annotation_for_Testing_Videos.txt, ShanghaiTech\'s '
                                             "test_frame_mask/ folder, XD-Violence's annotations.txt "
                                             '(default: none, and no ground truth is written)')
    parser.add_argument('--test-list', help='the test list to write (default: list/{dataset}-i3d-test.list)')
    parser.add_argument('--train-list', help='the train list to write (default: list/pre-{dataset}-i3d-train-{T}.list)')
    parser.add_argument('--gt', help='the frame ground truth to write (default: list/gt-{dataset}.npy)')
    parser.add_argument('--allow-missing', action='store_true',
                        help="write the lists of a folder that holds more than half of its split's official videos "
                             'but not all of them, or others besides (they are named either way)')
    args = parser.parse_args()
    args.benchmark = b = BENCHMARKS[args.dataset]
    fill_defaults(args, train_dir=b.train_dir, test_dir=b.test_dir, out_dir=b.pooled_dir, feature_size=b.feature_size,
                  test_list=b.test_list, train_list=b.train_list(args.T), gt=b.gt)
    run(main, args, 'preformer_feature.py')
