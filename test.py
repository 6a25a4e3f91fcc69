"""Score a trained model on a benchmark's test set: its headline metric (UCF-Crime and ShanghaiTech: the
frame-level ROC AUC, the paper's Table 3; XD-Violence: the frame-level AP) and the field's other metrics,
all from the same per-snippet scores, printed and written to results/<checkpoint>.json.

    python test.py --da 64 --r 3 --seed 9111 --test-split-size 28
    python test.py --select last --plot --plot-videos Arrest001_x264 Normal_Videos_003_x264
    python test.py --dataset xd --da 64 --r 3

The metrics are defined in metrics.py; --plot draws the ROC curve and, for a few videos, the score over
frames with the annotated spans shaded and the attention weights below it.
"""
import argparse
import json
import os

import numpy as np

from benchmarks import UCF
from cli import (HelpFormatter, add_common_arguments, add_select_arguments, check_positive, pick_device, run, run_name,
                 use_benchmark)
from dataset import FRAMES_PER_SNIPPET, DataError, TestSet, spans, video_name, write_atomic
from metrics import all_metrics
from model import VideoClassifier, load_checkpoint
from protocol import snippet_scores


def print_table(results):
    def row(key, value):
        text = 'undefined' if value is None else f'{value:.6f}' if isinstance(value, float) else str(value)
        print(f'{key:<24}{text:>12}')

    row('metric', 'value')
    for key, value in results.items():
        if key == 'per_class':
            print('per_class')
            for cls, auc in value.items():
                row('  ' + cls, auc)
        else:
            row(key, value)


def chosen_videos(paths, names, is_normal=UCF.is_normal, n_anomalous=3, n_normal=2):
    """The indices of the named test videos, by default the first few anomalous and normal ones."""
    if not names:
        anomalous = [i for i, p in enumerate(paths) if not is_normal(p)]
        normal = [i for i, p in enumerate(paths) if is_normal(p)]
        return anomalous[:n_anomalous] + normal[:n_normal]
    index = {video_name(p): i for i, p in enumerate(paths)}
    missing = [n for n in names if video_name(n) not in index]
    if missing:
        raise DataError(f'--plot-videos: {", ".join(missing)} not among the test videos '
                        f'(e.g. {", ".join(list(index)[:3])})')
    return [index[video_name(n)] for n in names]


def plot(args, stem, model, test_set, scores, auc, videos):
    from plots import plot_roc, plot_scores, video_attention  # matplotlib only when drawing: 0.4 s of start-up

    if auc is not None:  # else the test set lacks anomalous or normal frames: no ROC curve
        roc_path = os.path.join(args.out_dir, f'{stem}-roc.png')
        plot_roc(scores, test_set.gt, auc, roc_path, stem)
        print(f'ROC curve in {roc_path}')
    for i in videos:
        start, end = test_set.starts[i], test_set.starts[i + 1]
        attention = video_attention(model, test_set.videos[i], args.test_split_size)
        path = os.path.join(args.out_dir, f'{stem}-{video_name(test_set.paths[i])}.png')
        gt = test_set.gt[FRAMES_PER_SNIPPET * start:FRAMES_PER_SNIPPET * end]
        plot_scores(f'{video_name(test_set.paths[i])} (shaded: annotated anomaly)',
                    np.repeat(scores[start:end], FRAMES_PER_SNIPPET), spans(gt), attention, args.test_split_size, path)
        print(f'scores and attention in {path}')


def main(args):
    check_positive(args, 'test_split_size', 'T', 'da', 'r', 'feature_size')
    device = pick_device(args.device)
    ckpt = args.ckpt or os.path.join(args.ckpt_dir, run_name(args) + '.pth')
    model = load_checkpoint(ckpt, VideoClassifier(args.feature_size, args.da, args.r)).to(device).eval()
    test_set = TestSet(args.test_rgb_list, args.gt, args.feature_size, device)
    benchmark = args.benchmark
    drawn = args.plot or args.plot_videos
    videos = chosen_videos(test_set.paths, args.plot_videos, is_normal=benchmark.is_normal) if drawn else None
    scores = snippet_scores(model, test_set, args.test_split_size)
    metrics = all_metrics(scores, test_set.gt, test_set.lengths, test_set.paths, benchmark)
    # the original's line, which people's scripts parse (on XD-Violence: ap_score, its headline metric)
    print(f'model : SelfAttention-da{args.da}-r{args.r} , {benchmark.metric}_score : {metrics[benchmark.metric]}')

    results = {**metrics, 'test_split_size': args.test_split_size, 'videos': len(test_set.paths),
               'frames': int(test_set.gt.size), 'checkpoint': ckpt}
    print_table(results)
    stem = os.path.splitext(os.path.basename(ckpt))[0]
    json_path = os.path.join(args.out_dir, stem + '.json')
    write_atomic(json_path, lambda f: f.write(json.dumps(results, indent=2, allow_nan=False).encode() + b'\n'))
    print(f'results in {json_path}')
    if videos is not None:
        plot(args, stem, model, test_set, scores, metrics['auc'], videos)


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    add_common_arguments(parser)
    parser.add_argument('--seed', type=int, default=1111, help='the training seed in the checkpoint\'s name')
    add_select_arguments(parser)
    parser.add_argument('--ckpt', help='checkpoint path (default: the name train.py gives the run with these flags, '
                                       'ckpt/SelfAttention-da{da}-r{r}-T{T}-seed{seed}.pth for --select best, '
                                       'ckpt/SelfAttention-xd-da... on XD-Violence)')
    parser.add_argument('--out-dir', default='results', help='where the JSON (and --plot\'s figures) go')
    parser.add_argument('--plot', action='store_true', help='also draw the ROC curve and a few videos as PNGs')
    parser.add_argument('--plot-videos', nargs='+', metavar='NAME',
                        help='the test videos to draw (implies --plot), e.g. Abuse028_x264 (default: the first '
                             '3 anomalous and the first 2 normal ones)')
    args = parser.parse_args()
    use_benchmark(args)
    run(main, args, 'test.py')
