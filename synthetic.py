"""Synthetic benchmarks: features in the exact form of the real I3D features, for trying and testing.

    python synthetic.py --out .        # a small UCF-Crime: a few seconds, about 650 MB
    python synthetic.py --full --out bench_data   # the real set's size and counts: about 70 GB
    python synthetic.py --dataset shanghai --out .
    python synthetic.py --dataset xd --out .

writes, named and laid out as each benchmark's real files:

    ucf       features/UCF-Train/<video>_i3d.npy, features/UCF-Test/...   float32 [T, 10, 2048], one row per
              Temporal_Anomaly_Annotation_for_Testing_Videos.txt          16-frame snippet (RTFM's download)
    shanghai  features/SH-Train/<video>_i3d.npy, features/SH-Test/...    float32 [T, 10, 2048] (RTFM's)
              test_frame_mask/<video>.npy: uint8 frame masks of the anomalous test videos, a few frames
              shorter than 16*T (as the real videos, whose last snippet is partly padding)
    xd        features/XD-Train/<video>__<crop>.npy, features/XD-Test/... float32 [T, 1024], one file per crop
              annotations.txt: `<video> s1 e1 s2 e2 ...`, end exclusive, one row per violent test video

with names in each benchmark's style (Abuse028_x264, 01_0014 / 01_001, Movie.2001__#00-01-02_00-03-04_label_B2-G-0),
so that preformer_feature.py, train.py and test.py run on it unchanged. The features are a model of
I3D features, not I3D features: non-negative (post-ReLU), a scene per video, snippets correlated in
time, anomalies as class-specific shifts of varying strength inside the anomalous spans, look-alike
events in normal videos, and crops that are near-copies of each other. Models rank on it roughly as
on real features, but an AUC measured on it says nothing about the real benchmarks.

Each feature folder gets a synthetic.json: the settings and the files written. A run again replaces the files
a former run wrote (the same seed and flags: the same bytes again) and stops at files it did not write, unless
--overwrite. preformer_feature.py does not compare a set that synthetic.py wrote with the official lists.
"""
import argparse
import json
import os
import time
from typing import Callable, NamedTuple

import numpy as np
from tqdm import tqdm

from benchmarks import BENCHMARKS
from cli import HelpFormatter
from dataset import (CROP_SUFFIX, FEATURE_SUFFIX, FRAMES_PER_SNIPPET, SYNTHETIC_MARKER, save_npy, synthetic_files,
                     write_atomic)

# UCF-Crime's anomaly classes with their real (train, test) video counts
CLASSES = {'Abuse': (48, 2), 'Arrest': (45, 5), 'Arson': (41, 9), 'Assault': (47, 3), 'Burglary': (87, 13),
           'Explosion': (29, 21), 'Fighting': (45, 5), 'RoadAccidents': (127, 23), 'Robbery': (145, 5),
           'Shooting': (27, 23), 'Shoplifting': (29, 21), 'Stealing': (95, 5), 'Vandalism': (45, 5)}
# the real set: 810 + 800 train and 140 + 150 test videos, 69,634 test snippets (train: about 493 per video)
FULL = dict(n_train_abnormal=810, n_train_normal=800, n_test_abnormal=140, n_test_normal=150,
            train_snippets=794_000, test_snippets=69_634)
SMALL = dict(n_train_abnormal=81, n_train_normal=80, n_test_abnormal=14, n_test_normal=15,
             train_snippets=5_000, test_snippets=2_900)
ANNOTATION = 'Temporal_Anomaly_Annotation_for_Testing_Videos.txt'
# XD-Violence's labels (B1 fighting, B2 shooting, B4 riot, B5 abuse, B6 car accident, G explosion) with the real
# (train, test) counts of the videos whose first label they are
XD_CLASSES = {'B1': (445, 120), 'B2': (336, 84), 'B4': (381, 101), 'B5': (36, 8), 'B6': (393, 96), 'G': (314, 91)}


class Video(NamedTuple):
    split: str    # 'Train' or 'Test'
    name: str     # Abuse028_x264, Normal_Videos001_x264 (train), Normal_Videos_003_x264 (test)
    cls: str      # an anomaly class (XD-Violence: the first of the name's labels) or 'Normal'
    length: int   # snippets
    spans: list   # anomalous frame spans [(start, end)], inclusive; look-alike spans in a normal video
    index: int    # the video's position in the plan, which seeds its features


class World(NamedTuple):
    """What all videos share: the mean features and the directions events shift them along."""
    mean: np.ndarray           # [F] pre-ReLU mean of every feature
    basis: np.ndarray          # [K, F] the few directions that scenes and their motion vary along
    directions: dict           # class (or 'Normal' for look-alike events) -> unit shift direction [F]
    strength: dict             # class -> typical shift size


# ---------------------------------------------------------------------------------------------- the plan
def apportion(total, weights):
    """Split the integer total in proportion to weights (largest remainders), exactly."""
    quota = total * np.asarray(weights, float) / np.sum(weights)
    counts = np.floor(quota).astype(int)
    counts[np.argsort(counts - quota, kind='stable')[:total - counts.sum()]] += 1
    return counts


def draw_lengths(rng, n, total, sigma=1.0, shortest=2):
    """n lognormal video lengths summing exactly to total: real lengths run from a handful to thousands."""
    if total < shortest * n:
        raise ValueError(f'{total} snippets are too few for {n} videos of at least {shortest}')
    return shortest + apportion(total - shortest * n, rng.lognormal(0.0, sigma, n))


def draw_spans(rng, n_frames, coverage, n_spans):
    """n_spans disjoint frame spans (inclusive, at least a frame apart) covering about coverage of the video."""
    total = int(np.clip(round(coverage * n_frames), FRAMES_PER_SNIPPET * n_spans, n_frames - n_spans + 1))
    least = total // (2 * n_spans)  # no span shorter than half an even share
    lengths = least + apportion(total - least * n_spans, rng.random(n_spans))
    cuts = np.sort(rng.integers(0, n_frames - total - (n_spans - 1) + 1, n_spans))
    starts = cuts + np.concatenate([[0], np.cumsum(lengths)[:-1]]) + np.arange(n_spans)
    return [(int(s), int(s + n - 1)) for s, n in zip(starts, lengths)]


def video_names(rng, prefix, n_train, n_test):
    """Train and test names drawn from one numbering, so the two never share a video."""
    if n_train + n_test > 999:
        raise ValueError(f'{prefix}: at most 999 videos have a 3-digit number')
    numbers = rng.permutation(np.arange(1, n_train + n_test + 1))
    test_prefix = 'Normal_Videos_' if prefix == 'Normal_Videos' else prefix  # the test normals' extra '_'
    return ([f'{prefix}{i:03d}_x264' for i in sorted(numbers[n_test:])],
            [f'{test_prefix}{i:03d}_x264' for i in sorted(numbers[:n_test])])


def shanghai_names(rng, cls, n_train, n_test):
    """ShanghaiTech's style: scene_number, four digits for an anomalous video (01_0014), three for a normal one."""
    if n_train + n_test > 999:
        raise ValueError(f'{cls}: at most 999 videos have a 3-digit number')
    numbers = rng.permutation(np.arange(1, n_train + n_test + 1))
    scenes = rng.integers(1, 14, n_train + n_test)  # the dataset's 13 scenes
    digits = 3 if cls == 'Normal' else 4
    names = [f'{scene:02d}_{number:0{digits}d}' for scene, number in zip(scenes, numbers)]
    return sorted(names[n_test:]), sorted(names[:n_test])


MOVIES = ['Bad.Boys.1995', 'Brave.Heart.1995', 'Deadpool.2016', 'Heat.1995', 'Ip.Man.2008', 'John.Wick.2014',
          'Rush.Hour.1998', 'The.Bourne.Identity.2002', 'v=S-7rRLrxnVQ', 'v=u5SF4SlqNDQ']


def xd_names(rng, cls, n_train, n_test):
    """XD-Violence's style: <movie>__#<start>_<end>_label_<labels>, up to three labels padded with 0
    (Deadpool.2016__#00-12-31_00-13-02_label_B2-G-0); normal videos are _label_A."""
    names = []
    for i in rng.permutation(n_train + n_test):  # the clip's start time numbers it: no two names alike
        start = 60 * int(i) + int(rng.integers(0, 60))
        clip = f'{MOVIES[int(rng.integers(len(MOVIES)))]}__#{start // 3600:02d}-{start // 60 % 60:02d}-{start % 60:02d}'
        end = start + int(rng.integers(20, 200))
        clip += f'_{end // 3600:02d}-{end // 60 % 60:02d}-{end % 60:02d}_label_'
        if cls == 'Normal':
            names.append(clip + 'A')
        else:
            others = [c for c in XD_CLASSES if c != cls]
            labels = [cls] + [others[int(rng.integers(len(others)))]] * int(rng.random() < 0.25)
            names.append(clip + '-'.join(labels + ['0'] * (3 - len(labels))))
    return sorted(names[n_test:]), sorted(names[:n_test])


def plan_videos(rng, n_train_abnormal, n_train_normal, n_test_abnormal, n_test_normal,
                train_snippets, test_snippets, anomalous_share, two_span_share=0.15, lookalike_share=0.5, form=None):
    """Every video's split, name, class, length and spans, in the official list order (anomalous first)."""
    form = form or FORMS['ucf']
    names = {'Train': [], 'Test': []}
    train_counts = apportion(n_train_abnormal, [c[0] for c in form.classes.values()])
    test_counts = apportion(n_test_abnormal, [c[1] for c in form.classes.values()])
    for cls, n_train, n_test in zip(list(form.classes) + ['Normal'], [*train_counts, n_train_normal],
                                    [*test_counts, n_test_normal]):
        train, test = form.names(rng, cls, n_train, n_test)
        names['Train'] += [(name, cls) for name in train]
        names['Test'] += [(name, cls) for name in test]
    videos = []
    for split, total in (('Train', train_snippets), ('Test', test_snippets)):
        names[split].sort(key=lambda nc: (nc[1] == 'Normal', nc[0]))
        lengths = draw_lengths(rng, len(names[split]), total)
        normal = np.array([cls == 'Normal' for _, cls in names[split]])
        # how much of an anomalous video its spans cover varies widely; test spans are scaled so that
        # anomalous_share of the test frames are anomalous (train videos cover the same share on average)
        coverage = rng.beta(1.0, 2.0, len(lengths))
        scale = anomalous_share * total / max(np.sum(coverage * lengths * ~normal), 1e-9)
        coverage = np.minimum(coverage * scale, 0.9)
        for (name, cls), T, c in zip(names[split], lengths, coverage):
            # test anomalies: one or two annotated spans; train anomalies: one span, never written down;
            # normal videos: sometimes an event that partly looks like an anomaly
            if cls == 'Normal':
                n_spans = int(rng.random() < lookalike_share)
            else:
                n_spans = 1 + int(split == 'Test' and rng.random() < two_span_share)
            spans = draw_spans(rng, FRAMES_PER_SNIPPET * T, c, n_spans) if n_spans else []
            videos.append(Video(split, name, cls, int(T), spans, len(videos)))
    return videos


# ---------------------------------------------------------------------------------------------- features
def sparse_direction(rng, feature_size):
    """A non-negative direction on a random eighth of the features, unit length."""
    d = np.zeros(feature_size)
    support = rng.choice(feature_size, max(1, feature_size // 8), replace=False)
    d[support] = rng.uniform(0.5, 1.5, len(support))
    return d / np.linalg.norm(d)


def make_world(rng, feature_size, snr, rank=32, classes=CLASSES):
    """The feature means, the nuisance basis, and each class's shift direction and strength."""
    common = sparse_direction(rng, feature_size)  # what all anomalies (and the look-alikes) share
    directions, strength = {}, {}
    for cls in list(classes) + ['Normal']:
        if cls == 'Normal':  # the look-alike events resemble the anomalies only in part
            d = 0.5 * common + sparse_direction(rng, feature_size)
        else:  # the anomaly classes share most of their direction
            d = common + 0.75 * sparse_direction(rng, feature_size)
        directions[cls] = d / np.linalg.norm(d)
        # at snr 1 an event moves the features it affects by about one noise std; some classes are subtler
        strength[cls] = snr * np.sqrt(feature_size / 8) * rng.uniform(0.6, 1.4)
    return World(mean=rng.normal(-0.3, 0.3, feature_size),
                 basis=rng.normal(0, 1 / np.sqrt(rank), (rank, feature_size)),
                 directions=directions, strength=strength)


def snippet_coverage(spans, T):
    """The share of each snippet's 16 frames that lie inside the spans, [T]."""
    inside = np.zeros(FRAMES_PER_SNIPPET * T)
    for start, end in spans:
        inside[start:end + 1] = 1
    return inside.reshape(T, FRAMES_PER_SNIPPET).mean(1)


def ar1(rng, T, size, rho):
    """Stationary AR(1) noise of unit variance along time, [T, size]: neighbouring snippets look alike."""
    z = rng.standard_normal((T, size))
    for t in range(1, T):
        z[t] = rho * z[t - 1] + np.sqrt(1 - rho ** 2) * z[t]
    return z


def video_features(rng, world, video, crops, scene=0.6, drift=0.5, jitter=0.2, crop_noise=0.15, rho=0.9):
    """float32 [T, crops, F]: ReLU(mean + scene + drift in time + events + small per-crop noise)."""
    T, feature_size = video.length, len(world.mean)
    # I3D features are strongly correlated: the scene and its drift in time live mostly in a few directions
    latent = scene * rng.standard_normal(len(world.basis)) + drift * ar1(rng, T, len(world.basis), rho)
    shared = world.mean + latent @ world.basis + jitter * rng.standard_normal((T, feature_size))
    if video.spans:  # the event's size varies from video to video
        size = world.strength[video.cls] * rng.lognormal(0.0, 0.4)
        shared += size * np.outer(snippet_coverage(video.spans, T), world.directions[video.cls])
    # ten crops of one clip: the same signal, a small offset of their own, a little noise (uniform: cheap)
    x = rng.random((T, crops, feature_size), dtype=np.float32)
    x -= 0.5
    x *= crop_noise * np.sqrt(12)
    x += (shared[:, None, :] + 0.1 * rng.standard_normal((crops, feature_size))).astype(np.float32)
    return np.maximum(x, 0, out=x)


# ---------------------------------------------------------------------------------------------- files
def annotation_row(video):
    spans = [x for span in video.spans for x in span] if video.cls != 'Normal' else []
    fields = spans + [-1] * (4 - len(spans))
    return '  '.join([video.name + '.mp4', video.cls] + [str(x) for x in fields])


def write_ucf_annotation(path, test):
    """UCF-Crime's Temporal_Anomaly_Annotation_for_Testing_Videos.txt: a row per test video, spans inclusive."""
    write_atomic(path, lambda f: f.write(''.join(annotation_row(v) + '\n' for v in test).encode()))


def frame_mask_files(folder, test):
    return [os.path.join(folder, v.name + '.npy') for v in test if v.cls != 'Normal']


def write_frame_masks(folder, test):
    """ShanghaiTech's test_frame_mask/: per anomalous test video its uint8 mask over the video's frames, 0 to 15
    frames fewer than the 16*T its features cover (the last snippet is partly padding)."""
    for v, path in zip([v for v in test if v.cls != 'Normal'], frame_mask_files(folder, test)):
        labels = np.zeros(FRAMES_PER_SNIPPET * v.length, np.uint8)
        for start, end in v.spans:
            labels[start:end + 1] = 1
        save_npy(path, labels[:len(labels) - 7 * v.index % FRAMES_PER_SNIPPET])


def write_xd_annotation(path, test):
    """XD-Violence's annotations.txt: a row `name s1 e1 s2 e2 ...` per violent test video, end exclusive."""
    rows = [' '.join([v.name] + [f'{start} {end + 1}' for start, end in v.spans]) for v in test if v.cls != 'Normal']
    write_atomic(path, lambda f: f.write(''.join(row + '\n' for row in rows).encode()))


def feature_files(folder, video, crops, benchmark):
    """A video's feature files: <video>_i3d.npy, or one <video>__<crop>.npy per crop (XD-Violence)."""
    stem = os.path.join(folder, video.name)
    if benchmark.suffix == FEATURE_SUFFIX:
        return [stem + FEATURE_SUFFIX]
    return [stem + CROP_SUFFIX.format(crop) for crop in range(crops)]


def write_marker(folder, settings, paths, written):
    """SYNTHETIC_MARKER in folder: the settings, and the files synthetic.py writes (relative to folder) with their
    sizes once written."""
    files = {os.path.relpath(path, folder): os.path.getsize(path) if written else None for path in sorted(paths)}
    marker = dict(written_by='synthetic.py', settings=settings, files=files)
    write_atomic(os.path.join(folder, SYNTHETIC_MARKER), lambda f: f.write(json.dumps(marker, indent=1).encode()))


def remove_former_set(folders, annotation, overwrite):
    """Remove the feature files in folders and the annotation that a former run of synthetic.py wrote (its markers
    say which); refuse (FileExistsError) where others are there, unless overwrite, which removes those too."""
    owned = set().union(*map(synthetic_files, folders))
    places = [(folder, [os.path.join(folder, f) for f in sorted(os.listdir(folder)) if f.endswith('.npy')])
              for folder in folders if os.path.isdir(folder)]
    if os.path.isdir(annotation):
        places.append((annotation, [os.path.join(annotation, f) for f in sorted(os.listdir(annotation))
                                    if f.endswith('.npy')]))
    elif os.path.isfile(annotation):
        places.append((os.path.dirname(annotation) or '.', [annotation]))
    for place, paths in places:
        others = [p for p in paths if os.path.normpath(p) not in owned]
        if others and not overwrite:
            raise FileExistsError(f'{place} already holds {len(others)} file(s) that synthetic.py did not write '
                                  f'(e.g. {os.path.basename(others[0])}); pass --overwrite to replace them')
    for _, paths in places:
        for path in paths:
            os.remove(path)


class Form(NamedTuple):
    """How a benchmark's synthetic set is made: its classes, names, sizes and annotation."""
    classes: dict             # anomaly class -> real (train, test) video counts
    names: Callable           # (rng, class or 'Normal', n_train, n_test) -> (train names, test names), each sorted
    small: dict               # plan_videos' sizes: the default set
    full: dict                # the real set's counts
    anomalous_share: float    # of the test frames
    two_span_share: float     # of the anomalous test videos
    annotation: str           # the annotation's default name under OUT
    write_annotation: Callable  # (path, test videos)
    annotation_files: Callable  # (path, test videos) -> the files write_annotation writes


FORMS = {
    'ucf': Form(CLASSES, lambda rng, cls, n_train, n_test: video_names(
        rng, 'Normal_Videos' if cls == 'Normal' else cls, n_train, n_test),
        SMALL, FULL, 0.076, 0.15, ANNOTATION, write_ucf_annotation, lambda path, test: [path]),
    # the real counts of videos; the snippet totals are estimates
    'shanghai': Form({'Anomalous': (63, 44)}, shanghai_names,
                     dict(n_train_abnormal=32, n_train_normal=80, n_test_abnormal=15, n_test_normal=50,
                          train_snippets=5_000, test_snippets=3_000),
                     dict(n_train_abnormal=63, n_train_normal=175, n_test_abnormal=44, n_test_normal=155,
                          train_snippets=17_000, test_snippets=10_000),
                     0.1, 0.15, 'test_frame_mask', write_frame_masks, frame_mask_files),
    'xd': Form(XD_CLASSES, xd_names,
               dict(n_train_abnormal=95, n_train_normal=100, n_test_abnormal=25, n_test_normal=15,
                    train_snippets=6_000, test_snippets=3_000),
               dict(n_train_abnormal=1905, n_train_normal=2049, n_test_abnormal=500, n_test_normal=300,
                    train_snippets=420_000, test_snippets=90_000),
               0.2, 0.4, 'annotations.txt', write_xd_annotation, lambda path, test: [path]),
}


def generate(out_dir, seed=0, crops=None, feature_size=None, snr=1.0, anomalous_share=None,
             annotation=None, overwrite=False, progress=True, dataset='ucf', **sizes):
    """Write a synthetic set of the benchmark (a key of benchmarks.BENCHMARKS) under out_dir and return its
    summary; sizes are plan_videos' (default: the benchmark's small set); crops and feature_size default
    to the benchmark's."""
    benchmark, form = BENCHMARKS[dataset], FORMS[dataset]
    crops, feature_size = crops or benchmark.crops, feature_size or benchmark.feature_size
    sizes = {**form.small, **sizes}
    rng = np.random.default_rng(seed)
    videos = plan_videos(rng, anomalous_share=form.anomalous_share if anomalous_share is None else anomalous_share,
                         two_span_share=form.two_span_share, form=form, **sizes)
    world = make_world(rng, feature_size, snr, classes=form.classes)
    folders = {split: os.path.join(out_dir, benchmark.train_dir if split == 'Train' else benchmark.test_dir)
               for split in ('Train', 'Test')}
    test = [v for v in videos if v.split == 'Test']
    annotation = annotation or os.path.join(out_dir, form.annotation)
    settings = dict(dataset=dataset, seed=seed, crops=crops, feature_size=feature_size, snr=snr,
                    anomalous_share=anomalous_share, **sizes)
    remove_former_set(folders.values(), annotation, overwrite)
    owned = {folder: [path for v in videos if v.split == split for path in feature_files(folder, v, crops, benchmark)]
             for split, folder in folders.items()}
    owned[folders['Test']] += form.annotation_files(annotation, test)
    for folder, paths in owned.items():  # marked before they are written: an interrupted run's files are its own
        write_marker(folder, settings, paths, written=False)

    for video in tqdm(videos, desc='writing synthetic videos', disable=not progress, leave=False):
        x = video_features(np.random.default_rng([seed, video.index]), world, video, crops)
        paths = feature_files(folders[video.split], video, crops, benchmark)
        if len(paths) > 1:  # XD-Violence: one [T, F] file per crop
            for crop, path in enumerate(paths):
                save_npy(path, np.ascontiguousarray(x[:, crop]))
        else:
            save_npy(paths[0], x)
    form.write_annotation(annotation, test)
    for folder, paths in owned.items():
        write_marker(folder, settings, paths, written=True)

    frames = FRAMES_PER_SNIPPET * sum(v.length for v in test)
    anomalous = sum(e - s + 1 for v in test if v.cls != 'Normal' for s, e in v.spans)
    return dict(train_videos=len(videos) - len(test), test_videos=len(test),
                train_snippets=sizes['train_snippets'], test_snippets=sizes['test_snippets'],
                test_frames=frames, anomalous_share=anomalous / frames,
                megabytes=4 * crops * feature_size * sum(v.length for v in videos) / 1e6, annotation=annotation)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument('--dataset', choices=list(BENCHMARKS), default='ucf',
                        help='the benchmark whose form to write: ucf, shanghai, xd')
    parser.add_argument('--out', default='.', help="root folder: the benchmark's feature folders and annotation")
    parser.add_argument('--seed', type=int, default=0, help='the same seed and flags give byte-identical files')
    parser.add_argument('--full', action='store_true', help="the real set's size and counts (UCF-Crime: about "
                                                            '70 GB; the others\' snippet totals are estimates)')
    counted = {'n_train_abnormal': 'anomalous train videos', 'n_train_normal': 'normal train videos',
               'n_test_abnormal': 'anomalous test videos', 'n_test_normal': 'normal test videos',
               'train_snippets': 'train snippets, over all train videos', 'test_snippets': 'test snippets, over all '
                                                                                           'test videos'}
    for key, value in SMALL.items():
        parser.add_argument('--' + key.replace('_', '-'), type=int, metavar='N',
                            help=f"{counted[key]} (default: the benchmark's; UCF-Crime: {value}, with --full "
                                 f'{FULL[key]})')
    parser.add_argument('--crops', type=int, help="crops per snippet (default: the benchmark's, 10; xd: 5)")
    parser.add_argument('--feature-size', type=int, help="features per crop (default: I3D's, 2048; xd: 1024)")
    parser.add_argument('--snr', type=float, default=1.0,
                        help='difficulty: how far anomalies move the features they affect, in noise standard '
                             'deviations (higher is easier; 1: a trained model scores about 0.85-0.95 AUC)')
    parser.add_argument('--anomalous-share', type=float,
                        help='the share of test frames inside anomalous spans, a fraction (default: the real '
                             "UCF-Crime's 0.076; shanghai: 0.1, xd: 0.2)")
    parser.add_argument('--annotation', help=f'where the test annotation goes (default: OUT/{ANNOTATION}, '
                                             'OUT/test_frame_mask, OUT/annotations.txt)')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace files that synthetic.py did not write too (its own, listed in each feature '
                             f"folder's {SYNTHETIC_MARKER}, it replaces without asking)")
    args = parser.parse_args()
    form = FORMS[args.dataset]
    sizes = {k: getattr(args, k) for k in SMALL if getattr(args, k) is not None}
    start = time.time()
    try:
        s = generate(args.out, seed=args.seed, crops=args.crops, feature_size=args.feature_size, snr=args.snr,
                     anomalous_share=args.anomalous_share, annotation=args.annotation, overwrite=args.overwrite,
                     dataset=args.dataset, **{**(form.full if args.full else form.small), **sizes})
    except (ValueError, FileExistsError) as e:
        parser.error(str(e))
    print(f"synthetic {BENCHMARKS[args.dataset].title} in {args.out}: {s['train_videos']} train + "
          f"{s['test_videos']} test videos, {s['train_snippets']:,} + {s['test_snippets']:,} snippets, "
          f"{s['test_frames']:,} test frames ({s['anomalous_share']:.1%} anomalous), {s['megabytes']:,.0f} MB "
          f"in {time.time() - start:.1f} s")


if __name__ == '__main__':
    main()
