"""The paper's three benchmarks, each a small declarative definition: where its features are, how its files
and lists are named, which videos are normal, how its annotation becomes frame labels, its crops, feature
size and headline metric. The scripts select one with --dataset and ask it; they never branch on its name.

    ucf       UCF-Crime (RTFM's 10-crop I3D features)          frame-level ROC AUC
    shanghai  ShanghaiTech, weakly supervised split (RTFM's)   frame-level ROC AUC
    xd        XD-Violence (the dataset's own 5-crop I3D)       frame-level average precision

Every benchmark's lists hold the anomalous videos, then the normal ones, each sorted by video name, one
line per video (for XD-Violence, the video's crop-0 file `<name>__0.npy`, which stands for all five).
"""
import glob
import os
from typing import Callable, NamedTuple

import numpy as np

import dataset
from dataset import DataError, FIRST_CROP, FEATURE_SUFFIX

OFFICIAL = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'list', 'official')  # the benchmarks' public lists


class Benchmark(NamedTuple):
    key: str                  # --dataset's value, and the tag in the names of its lists and ground truth
    title: str
    tag: str                  # in the names of its runs (checkpoints, histories, results): '' for UCF-Crime
    train_dir: str            # default folders of the raw features
    test_dir: str
    suffix: str               # a list entry's file name is <video><suffix>
    crops: int
    feature_size: int
    metric: str               # the headline metric: a key of metrics.all_metrics ('auc' or 'ap')
    is_normal: Callable       # path -> bool
    classes: Callable         # path -> the video's anomaly classes (a tuple; empty for normal videos)
    read_annotation: Callable  # path of --annotation -> {video: entry}
    video_labels: Callable    # (n_frames, entry) -> n_frames frame labels (ValueError where they do not fit)
    annotation_help: str
    where_from: str           # where the features come from, for the error of a missing folder
    official: str             # the folder of its official lists under list/official/

    # ------------------------------------------------------------------------------ file names
    @property
    def test_list(self):
        return f'list/{self.key}-i3d-test.list'

    def train_list(self, segments):
        return f'list/pre-{self.key}-i3d-train-{segments}.list'

    @property
    def gt(self):
        return f'list/gt-{self.key}.npy'

    @property
    def pooled_dir(self):
        return 'preformer_features' + self.tag

    # ------------------------------------------------------------------------------ protocol
    def scan(self, folder):
        """The raw feature files in folder (one entry per video), in official list order."""
        paths = dataset.scan_features(folder, self.suffix, self.is_normal, self.where_from)
        if self.suffix == FIRST_CROP:  # one file per crop: each video has all of them
            for path in paths:
                crop_paths = [path[:-len(FIRST_CROP)] + dataset.CROP_SUFFIX.format(c) for c in range(self.crops)]
                for crop_path in crop_paths:
                    if not os.path.isfile(crop_path):
                        raise DataError(f'{crop_path}: no such file ({self.title} has {self.crops} crop files '
                                        f'per video, {FIRST_CROP} to {dataset.CROP_SUFFIX.format(self.crops - 1)})')
        return paths

    def ground_truth(self, test_paths, lengths, annotation):
        """Frame labels [16 * sum(lengths)] of the test videos in list order, from the read annotation."""
        return dataset.ground_truth(test_paths, lengths, annotation, self.is_normal, self.video_labels)

    def official_names(self, split):
        """The video names of the official 'train' or 'test' list, in list order (list/official/, shipped with the
        code)."""
        path = os.path.join(OFFICIAL, self.official, f'{split}_videos.txt')
        if not os.path.isfile(path):
            raise DataError(f'{path}: no such file (the official lists ship with the repository, in list/official/)')
        return [line.strip() for line in open(path) if line.strip()]

    def stratum(self, path):
        """The class a video counts in for --select val's stratified hold-out: its first anomaly class,
        or Normal (UCF-Crime's video_class); Anomalous where a benchmark has no classes."""
        return self.classes(path)[0] if self.classes(path) else 'Normal' if self.is_normal(path) else 'Anomalous'


# ---------------------------------------------------------------------------------------------- ShanghaiTech
def shanghai_is_normal(path):
    """Normal iff the number after the scene's `_` has three digits: 01_001 normal, 01_0014 anomalous."""
    return len(dataset.video_name(path).split('_')[-1]) == 3


def read_frame_masks(folder):
    """ShanghaiTech's test_frame_mask/: {video: its mask, one 0/1 label per frame of the video}."""
    if not os.path.isdir(folder):
        raise DataError(f"{folder}: no such folder (ShanghaiTech's test_frame_mask/, one <video>.npy per "
                        'anomalous video)')
    masks = {}
    for path in sorted(glob.glob(os.path.join(folder, '*.npy'))):
        try:
            mask = np.load(path)
        except Exception as e:
            raise DataError(f'{path}: not a readable .npy file ({e})')
        if mask.ndim != 1 or not np.isin(mask, (0, 1)).all():
            raise DataError(f'{path}: expected a frame mask of 0/1 labels [frames], '
                            f'found {mask.dtype} {list(mask.shape)}')
        masks[dataset.video_name(path)] = mask
    if not masks:
        raise DataError(f'{folder}: no <video>.npy frame masks in it')
    return masks


def padded_mask(n_frames, mask):
    """RTFM's gt-sh.npy rule: the mask padded with its last label up to the 16*T frames the features cover."""
    mask = np.asarray(mask, dtype=float)
    if len(mask) > n_frames:
        raise ValueError(f'its frame mask has {len(mask)} frames, more than the {n_frames} its features cover')
    return np.concatenate([mask, np.full(n_frames - len(mask), mask[-1] if len(mask) else 0.0)])


# ---------------------------------------------------------------------------------------------- XD-Violence
def xd_is_normal(path):
    return '_label_A' in dataset.video_name(path)


def xd_classes(path):
    """The labels after _label_, without the 0 placeholders: ..._label_G-B2-B6 -> (G, B2, B6); A (normal) -> ()."""
    labels = dataset.video_name(path).rsplit('_label_', 1)[-1].split('-')
    return tuple(label for label in labels if label not in ('0', 'A'))


def read_xd_annotation(path):
    """XD-Violence's annotations.txt -> {video: [(start, end), ...]}: rows `name s1 e1 s2 e2 ...`, end exclusive."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: annotation not found (XD-Violence's annotations.txt, from the dataset's page)")
    spans = {}
    for number, line in enumerate(open(path), 1):
        fields = line.split()
        if not fields:
            continue
        try:
            if len(fields) < 3 or len(fields) % 2 == 0:
                raise ValueError
            bounds = [int(x) for x in fields[1:]]
        except ValueError:
            raise DataError(f'{path}, line {number}: expected `name s1 e1 s2 e2 ...`, got {line.strip()!r}')
        spans[fields[0]] = list(zip(bounds[::2], bounds[1::2]))
    return spans


def span_labels(n_frames, spans):
    """The dataset's make_gt.py rule: 1 on frames s..e-1 of each span (end exclusive), clipped to n_frames."""
    labels = np.zeros(n_frames)
    for start, end in spans:
        labels[start:end] = 1.0
    return labels


# ---------------------------------------------------------------------------------------------- the three
UCF = Benchmark(
    key='ucf', title='UCF-Crime', tag='', train_dir='features/UCF-Train', test_dir='features/UCF-Test',
    suffix=FEATURE_SUFFIX, crops=10, feature_size=2048, metric='auc',
    is_normal=dataset.is_normal,
    classes=lambda path: () if dataset.is_normal(path) else (dataset.video_class(path),),
    read_annotation=dataset.read_annotation, video_labels=dataset.frame_labels,
    annotation_help="UCF-Crime's Temporal_Anomaly_Annotation_for_Testing_Videos.txt",
    where_from=dataset.WHERE_FROM, official='ucf_crime')

SHANGHAI = Benchmark(
    key='shanghai', title='ShanghaiTech', tag='-shanghai', train_dir='features/SH-Train', test_dir='features/SH-Test',
    suffix=FEATURE_SUFFIX, crops=10, feature_size=2048, metric='auc',
    is_normal=shanghai_is_normal, classes=lambda path: (),
    read_annotation=read_frame_masks, video_labels=padded_mask,
    annotation_help="ShanghaiTech's test_frame_mask/ folder (one <video>.npy per anomalous video)",
    where_from="ShanghaiTech's I3D features are RTFM's public download (see README.md); "
               '`python synthetic.py --dataset shanghai` writes a small built-in set of the same form',
    official='shanghaitech')

XD = Benchmark(
    key='xd', title='XD-Violence', tag='-xd', train_dir='features/XD-Train', test_dir='features/XD-Test',
    suffix=FIRST_CROP, crops=5, feature_size=1024, metric='ap',
    is_normal=xd_is_normal, classes=xd_classes,
    read_annotation=read_xd_annotation, video_labels=span_labels,
    annotation_help="XD-Violence's annotations.txt (the official test annotation)",
    where_from="XD-Violence's I3D features are the dataset's own download, one <video>__<crop>.npy per crop "
               '(see README.md); `python synthetic.py --dataset xd` writes a small built-in set of the same form',
    official='xd_violence')

BENCHMARKS = {b.key: b for b in (UCF, SHANGHAI, XD)}


def add_argument(parser):
    parser.add_argument('--dataset', choices=list(BENCHMARKS), default='ucf',
                        help='the benchmark: ucf (UCF-Crime), shanghai (ShanghaiTech), xd (XD-Violence); '
                             'it sets the default folders, lists, ground truth and feature size (default: ucf)')
