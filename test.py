"""Frame-level ROC AUC of a trained model on the UCF-Crime test set (the paper's Table 3).

    python test.py --da 64 --r 3 --seed 9111 --test-split-size 28
"""
import argparse
import os

from cli import add_common_arguments, check_positive, pick_device, run
from dataset import TestSet
from metrics import frame_auc
from model import VideoClassifier, checkpoint_name, load_checkpoint


def main(args):
    check_positive(args, 'test_split_size', 'T', 'da', 'r', 'feature_size')
    device = pick_device(args.device)
    ckpt = args.ckpt or os.path.join(args.ckpt_dir, checkpoint_name(args.da, args.r, args.T, args.seed) + '.pth')
    model = load_checkpoint(ckpt, VideoClassifier(args.feature_size, args.da, args.r)).to(device)
    test_set = TestSet(args.test_rgb_list, args.gt, args.feature_size, device)
    auc = frame_auc(test_set.snippet_scores(model, args.test_split_size), test_set.gt)
    # the original's line, which people's scripts parse
    print(f'model : SelfAttention-da{args.da}-r{args.r} , auc_score : {auc}')


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument('--seed', type=int, default=1111, help='seed in the checkpoint name')
    parser.add_argument('--ckpt', help='checkpoint path (default: ckpt/SelfAttention-da{da}-r{r}-T{T}-seed{seed}.pth)')
    args = parser.parse_args()
    run(main, args, 'test.py')
