"""Command-line plumbing shared by the scripts: common flags, the run's name, the device, one-line errors."""
import argparse
import os
import re
import sys
import tempfile

import torch

import benchmarks
from dataset import DataError
from model import checkpoint_name


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """--help as the scripts show it: the docstring as written, and every flag's default after its text
    (a flag whose default depends on others, None, says its default in its own text; a switch is off)."""

    def _get_help_string(self, action):
        text = action.help or ''
        if action.default is None or action.default is argparse.SUPPRESS or isinstance(action.default, bool) \
                or '(default' in text:
            return text
        return text + ' (default: %(default)s)'


def add_common_arguments(parser):
    """The flags train.py and test.py share, with the original's names and defaults (use_benchmark fills those
    that depend on --dataset)."""
    benchmarks.add_argument(parser)
    parser.add_argument('--da', type=int, default=64, help="the attention's hidden size")
    parser.add_argument('--r', type=int, default=3, help='attention hops: weightings over time')
    parser.add_argument('--T', type=int, default=32, help='segments per pooled train video')
    parser.add_argument('--feature-size', type=int, help="features per crop (default: the benchmark's, 2048; "
                                                         'xd: 1024)')
    parser.add_argument('--test-rgb-list', help='the test videos, one feature file a line '
                                                '(default: list/{dataset}-i3d-test.list)')
    parser.add_argument('--gt', help='the test frame labels (default: list/gt-{dataset}.npy)')
    parser.add_argument('--test-split-size', type=int, default=32, help='snippets per scored test chunk')
    parser.add_argument('--ckpt-dir', default='ckpt', help='the folder of the checkpoints, and of train.py\'s '
                                                           'history and state')
    parser.add_argument('--device', default='auto', choices=['auto', 'cpu', 'cuda'],
                        help='auto: CUDA when present')


def add_select_arguments(parser):
    """The model selection flags, which train.py and test.py share (they are part of the run's name)."""
    parser.add_argument('--select', choices=['best', 'last', 'val'], default='best',
                        help='which model to keep: best: the best test AUC (the paper\'s); last: the final one; '
                             'val: the best video-level AUC on held-out train videos')
    parser.add_argument('--val-fraction', type=float, default=0.1,
                        help='with --select val: the class-stratified share of train videos held out, a fraction')


def use_benchmark(args):
    """Set args.benchmark from --dataset and give the common flags left unset the benchmark's defaults."""
    args.benchmark = b = benchmarks.BENCHMARKS[args.dataset]
    fill_defaults(args, test_rgb_list=b.test_list, gt=b.gt, feature_size=b.feature_size)
    return b


def fill_defaults(args, **defaults):
    """Give each flag of defaults that was left unset (None) its default."""
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)


def run_name(args):
    """The run's file name: checkpoint_name with the benchmark's tag, marked when the selection is not the paper's."""
    suffix = {'best': '', 'last': '-last', 'val': f'-val{args.val_fraction:g}'}[args.select]
    return checkpoint_name(args.da, args.r, args.T, args.seed, args.benchmark.tag) + suffix


def check_positive(args, *names):
    for name in names:
        if getattr(args, name) <= 0:
            raise DataError(f'--{name.replace("_", "-")} must be positive, got {getattr(args, name)}')


def check_window(args):
    """--test-split-size (the window) and --hop (default: the window) of the scripts that score streams."""
    check_positive(args, 'test_split_size')
    if args.hop is None:
        args.hop = args.test_split_size
    if not 0 < args.hop <= args.test_split_size:
        raise DataError(f'--hop must be from 1 to the window (--test-split-size {args.test_split_size}), '
                        f'got {args.hop}')


def parse_shard(text):
    """'K/N' -> (K, N) with 0 <= K < N."""
    match = re.fullmatch(r'(\d+)/(\d+)', text)
    if not match or not int(match[1]) < int(match[2]):
        raise DataError(f'--shard {text}: expected K/N with 0 <= K < N, e.g. 0/4, 1/4, 2/4 and 3/4 for four jobs')
    return int(match[1]), int(match[2])


def check_out_dir(path, what):
    """A folder that outputs can go to: it exists, or can be created, and files can be made in it. Checked before
    any work by making and removing an empty folder in the nearest existing one (as root, permission bits say
    nothing: /proc or a read-only mount say no only when tried). DataError naming `what` (the flag or the key
    that gave the path) and why."""
    parent = os.path.abspath(path)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise DataError(f'{what} {path}: {parent} is a file, not a folder')
    try:
        os.rmdir(tempfile.mkdtemp(prefix='.check-', dir=parent))
    except OSError as e:
        raise DataError(f'{what} {path}: ' + ('not writable' if parent == os.path.abspath(path) else
                                              f'cannot be created in {parent}') + f' ({e.strerror})')


def pick_device(name):
    if name == 'auto':
        name = 'cuda' if torch.cuda.is_available() else 'cpu'
    if name == 'cuda' and not torch.cuda.is_available():
        raise DataError('--device cuda: this PyTorch sees no CUDA device')
    return torch.device(name)


def run(main, args, script):
    """Run main(args); a user's mistake (DataError) becomes one line on stderr and exit status 1."""
    try:
        main(args)
    except DataError as e:
        sys.exit(f'{script}: error: {e}')
