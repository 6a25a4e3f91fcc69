"""Prepare UCF-Crime features: the test list, the train videos pooled to --T segments, the frame ground truth.

    python preformer_feature.py --annotation Temporal_Anomaly_Annotation_for_Testing_Videos.txt
"""
import argparse
import os

from tqdm import tqdm

from cli import run
from dataset import (DataError, FRAMES_PER_SNIPPET, check_finite, ground_truth, open_features, pool,
                     read_annotation, save_npy, scan_features, write_list)


def main(args):
    if args.T <= 0:
        raise DataError(f'--T must be positive, got {args.T}')
    test_paths = scan_features(args.test_dir)
    train_paths = scan_features(args.train_dir)

    write_list(args.test_list, test_paths)
    print(f'{args.test_list}: {len(test_paths)} test videos')

    if args.annotation:
        annotation = read_annotation(args.annotation)
        lengths = [len(open_features(p, args.feature_size)) for p in test_paths]
        gt = ground_truth(test_paths, lengths, annotation)
        save_npy(args.gt, gt)
        print(f'{args.gt}: {gt.size} frame labels ({sum(lengths)} snippets x {FRAMES_PER_SNIPPET}), '
              f'{gt.mean():.2%} anomalous')

    pooled_paths = []
    for path in tqdm(train_paths, desc=f'pooling train videos to {args.T} segments'):
        features = check_finite(path, open_features(path, args.feature_size))
        pooled_path = os.path.join(args.out_dir, os.path.basename(path))
        save_npy(pooled_path, pool(features, args.T))
        pooled_paths.append(pooled_path)
    write_list(args.train_list, pooled_paths)
    print(f'{args.train_list}: {len(pooled_paths)} pooled train videos in {args.out_dir}')


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--train-dir', default='features/UCF-Train', help='raw train features, <video>_i3d.npy')
    parser.add_argument('--test-dir', default='features/UCF-Test', help='raw test features, <video>_i3d.npy')
    parser.add_argument('--out-dir', default='preformer_features', help='where the pooled train features go')
    parser.add_argument('--T', type=int, default=32, help='segments per pooled train video')
    parser.add_argument('--feature-size', type=int, default=2048)
    parser.add_argument('--annotation', help="UCF-Crime's Temporal_Anomaly_Annotation_for_Testing_Videos.txt; "
                                             'without it no ground truth is written')
    parser.add_argument('--test-list', default='list/ucf-i3d-test.list')
    parser.add_argument('--train-list', help='default: list/pre-ucf-i3d-train-{T}.list')
    parser.add_argument('--gt', default='list/gt-ucf.npy')
    args = parser.parse_args()
    args.train_list = args.train_list or f'list/pre-ucf-i3d-train-{args.T}.list'
    run(main, args, 'preformer_feature.py')
