"""Features on disk: list order, reading, pooling, frame ground truth, the mapped test set and the train pools.

A video's features are [T, crops, F], one row per 16-frame snippet, in one of two layouts:
`<video>_i3d.npy` holding all crops (RTFM's format: UCF-Crime, ShanghaiTech, and every pooled file),
or one file per crop, `<video>__0.npy`, `<video>__1.npy`, ... each [T, F] (XD-Violence's). A list
names a video by its one file, or by its crop-0 file. The rules of a benchmark (which videos are
normal, how its annotation becomes frame labels) are passed in from benchmarks.py; the defaults
here are UCF-Crime's.
"""
import csv
import glob
import io
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from tqdm import tqdm

FRAMES_PER_SNIPPET = 16
FEATURE_SUFFIX = '_i3d.npy'
CROP_SUFFIX = '__{}.npy'  # one file per crop: <video>__0.npy, <video>__1.npy, ...
FIRST_CROP = CROP_SUFFIX.format(0)
SYNTHETIC_MARKER = 'synthetic.json'  # in a features folder that synthetic.py wrote: its settings and files
WHERE_FROM = ("UCF-Crime's I3D features are RTFM's public download (see README.md); "
              "`python synthetic.py` writes a small built-in set of the same form")


class DataError(Exception):
    """A problem with the user's files or flags: the scripts report it in one line, without a traceback."""


# ---------------------------------------------------------------------------------------------- names
def video_name(path):
    """features/UCF-Test/Abuse028_x264_i3d.npy -> Abuse028_x264; features/XD-Test/<video>__0.npy -> <video>"""
    name = os.path.basename(path)
    for suffix in (FEATURE_SUFFIX, FIRST_CROP):
        if name.endswith(suffix):
            return name[:-len(suffix)]
    return os.path.splitext(name)[0]


def is_normal(path):
    """UCF-Crime's rule: a video is normal iff its file name starts with Normal."""
    return os.path.basename(path).startswith('Normal')


def video_class(path):
    """The class is the name's prefix before the video number: Abuse028_x264 -> Abuse, Normal_Videos_003 -> Normal."""
    return 'Normal' if is_normal(path) else re.match(r'[A-Za-z]+', video_name(path)).group(0)


def official_order(paths, is_normal=is_normal):
    """The benchmarks' list order: the anomalous videos, then the normal ones, each sorted by video name
    (Python's string order: code points, not the locale's)."""
    return sorted(paths, key=lambda p: (is_normal(p), video_name(p)))


def scan_features(folder, suffix=FEATURE_SUFFIX, is_normal=is_normal, where_from=WHERE_FROM):
    """The feature files <video><suffix> in folder, in official order."""
    if not os.path.isdir(folder):
        raise DataError(f'{folder}: no such folder. {where_from}')
    paths = glob.glob(os.path.join(folder, '*' + suffix))
    if not paths:
        raise DataError(f'{folder}: no *{suffix} files in it. {where_from}')
    return official_order(paths, is_normal)


def synthetic_files(folder):
    """The files that folder's SYNTHETIC_MARKER lists and that are still as synthetic.py wrote them: of the recorded
    size, or of none yet (a run still writing them). Normalised paths; none without a marker."""
    try:
        files = json.load(open(os.path.join(folder, SYNTHETIC_MARKER)))['files']
        paths = {os.path.normpath(os.path.join(folder, name)): size for name, size in files.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return set()
    return {path for path, size in paths.items() if os.path.isfile(path) and size in (None, os.path.getsize(path))}


# ---------------------------------------------------------------------------------------------- files
def write_atomic(path, write):
    """Call write(file) on a temporary file beside path, then rename it over path."""
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    tmp = f'{path}.tmp{os.getpid()}'
    with open(tmp, 'wb') as f:
        write(f)
    os.replace(tmp, path)


def write_csv(path, header, rows):
    def write(f):
        text = io.StringIO()
        csv.writer(text, lineterminator='\n').writerows([header] + rows)
        f.write(text.getvalue().encode())
    write_atomic(path, write)


def save_npy(path, array):
    write_atomic(path, lambda f: np.save(f, array))


def write_list(path, lines):
    write_atomic(path, lambda f: f.write(''.join(line + '\n' for line in lines).encode()))


def read_list(path):
    if not os.path.isfile(path):
        raise DataError(f'{path}: list not found (run preformer_feature.py first)')
    paths = [line.strip() for line in open(path) if line.strip()]
    if not paths:
        raise DataError(f'{path}: the list is empty')
    for p in paths:
        if not os.path.isfile(p):
            raise DataError(f'{path}: lists {p}, which does not exist')
    return paths


def map_npy(path, ndim, feature_size, form):
    """Memory-map one .npy file of floats whose last axis is feature_size, checking its form."""
    try:
        x = np.load(path, mmap_mode='c')  # copy-on-write: never changes the file
    except FileNotFoundError:
        raise DataError(f'{path}: no such file')
    except Exception as e:
        raise DataError(f'{path}: not a readable .npy file ({e})')
    if x.ndim != ndim or x.dtype.kind != 'f' or x.shape[-1] != feature_size or x.shape[0] == 0:
        raise DataError(f'{path}: expected float32 features {form} (float16 and float64 are converted), '
                        f'found {x.dtype} {list(x.shape)}')
    return x


def crop_files(path):
    """A video's per-crop files from its crop-0 file: <video>__0.npy, __1.npy, ... up to the first missing
    one, which must be the last (a later crop file after a gap is an error naming the missing one)."""
    stem = path[:-len(FIRST_CROP)]
    paths = [path]
    while os.path.isfile(stem + CROP_SUFFIX.format(len(paths))):
        paths.append(stem + CROP_SUFFIX.format(len(paths)))
    if os.path.isfile(stem + CROP_SUFFIX.format(len(paths) + 1)):
        raise DataError(f'{stem + CROP_SUFFIX.format(len(paths))}: no such file, but the video has crop files after it')
    return paths


def open_features(path, feature_size):
    """One list entry as float32 [T, crops, F], its form checked (not yet its values).

    A float32 file holding all crops is memory-mapped (copy-on-write: the file never changes); a file of another float type is
    read into a float32 copy, as the original's np.array(..., dtype=np.float32); a crop-0 file
    <video>__0.npy stands for all the video's crop files, each [T, F], stacked into one copy.
    """
    if not os.path.basename(path).endswith(FIRST_CROP):
        x = map_npy(path, 3, feature_size, f'[T>0, crops, {feature_size}] (pooled: [crops, T, {feature_size}])')
        return x if x.dtype == np.float32 else np.array(x, dtype=np.float32)
    paths = crop_files(path)
    crops = [map_npy(p, 2, feature_size, f'[T>0, {feature_size}] (one crop of a video)') for p in paths]
    for p, x in zip(paths[1:], crops[1:]):
        if len(x) != len(crops[0]):
            raise DataError(f'{p}: {len(x)} snippets, but {path} has {len(crops[0])}')
    return np.stack(crops, axis=1).astype(np.float32, copy=False)


def check_finite(path, x):
    # x.sum() is finite when every value is (short of an overflow, which the exact check then rules out):
    # one pass without a temporary, where isfinite(x) writes a boolean array as large as x
    with np.errstate(over='ignore', invalid='ignore'):
        total = x.sum()
    if not np.isfinite(total) and not np.isfinite(x).all():
        raise DataError(f'{path}: the features hold NaN or Inf values')
    return x


# ---------------------------------------------------------------------------------------------- pooling
def pool(features, segments):
    """[T, crops, F] -> [crops, segments, F]: the mean of each of `segments` equal spans of time.

    Boundaries are floor(linspace(0, T, S+1)) as in RTFM's process_feat; a video shorter than S
    snippets has empty spans, which take the row at their start instead. The float32 mean
    reproduces the original per-crop loop bit for bit.
    """
    bounds = np.linspace(0, len(features), segments + 1).astype(int)
    pooled = np.empty((features.shape[1], segments, features.shape[2]), np.float32)
    for i, (start, end) in enumerate(zip(bounds[:-1], bounds[1:])):
        pooled[:, i] = features[start:end].mean(0) if end > start else features[start]
    return pooled


# ---------------------------------------------------------------------------------------------- ground truth
def read_annotation(path):
    """UCF-Crime's Temporal_Anomaly_Annotation_for_Testing_Videos.txt -> {video: [(start, end), ...]}.

    Rows are `name.mp4 Class s1 e1 s2 e2` (frames, inclusive, -1 for no span), separated by any
    mix of spaces and tabs.
    """
    if not os.path.isfile(path):
        raise DataError(f"{path}: annotation not found (UCF-Crime's "
                        "Temporal_Anomaly_Annotation_for_Testing_Videos.txt, from the dataset's page)")
    spans = {}
    for number, line in enumerate(open(path), 1):
        fields = line.split()
        if not fields:
            continue
        try:
            if len(fields) != 6:
                raise ValueError
            s1, e1, s2, e2 = map(int, fields[2:])
        except ValueError:
            raise DataError(f'{path}, line {number}: expected `name.mp4 Class s1 e1 s2 e2`, got {line.strip()!r}')
        spans[os.path.splitext(fields[0])[0]] = [(s, e) for s, e in ((s1, e1), (s2, e2)) if s >= 0]
    return spans


def frame_labels(n_frames, spans):
    labels = np.zeros(n_frames)
    for start, end in spans:
        labels[start:end + 1] = 1.0  # inclusive end; slicing clips to the video
    return labels


def spans(labels):
    """[(start, end)] of the runs of nonzero values in an array of frame labels (or a boolean mask), end exclusive."""
    edges = np.diff(np.concatenate([[0], labels > 0, [0]]).astype(np.int8))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def ground_truth(test_paths, lengths, annotation, is_normal=is_normal, video_labels=frame_labels):
    """Frame labels of the test videos in list order, 16 frames per snippet, concatenated.

    annotation: {video: its entry}; video_labels(n_frames, entry) -> its n_frames labels (an entry
    of [] for a video without one), raising ValueError where the entry does not fit the video.
    """
    labels = []
    for path, T in zip(test_paths, lengths):
        name = video_name(path)
        if name not in annotation and not is_normal(path):
            raise DataError(f'the annotation has no row for the anomalous test video {name}')
        try:
            labels.append(video_labels(FRAMES_PER_SNIPPET * T, annotation.get(name, [])))
        except ValueError as e:
            raise DataError(f'the test video {name} ({T} snippets): {e}')
    return np.concatenate(labels)


# ---------------------------------------------------------------------------------------------- the sets
def open_alike(paths, feature_size):
    """open_features of every path, checking that the arrays differ only in their first axis."""
    files = [open_features(p, feature_size) for p in paths]
    for path, x in zip(paths, files):
        if x.shape[1:] != files[0].shape[1:]:
            raise DataError(f'{path}: shape {list(x.shape)} does not fit {paths[0]}\'s {list(files[0].shape)}')
    return files


def read_ahead(paths):
    """Ask the kernel to read the files into the page cache in the background, in list order (Linux): from a
    cold disk the evaluation then finds most pages there, instead of faulting them in one read-ahead at a time."""
    if hasattr(os, 'posix_fadvise'):
        for path in paths:
            fd = os.open(path, os.O_RDONLY)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
            os.close(fd)


class Pool:
    """Train samples read where they lie: every crop of every pooled video [crops, segments, F] is one sample
    [segments, F], in list order, video by video and crop by crop, as the original laid them out.
    pool[indices] stacks those samples: a batch, the only copy made.
    """

    def __init__(self, paths, feature_size, desc):
        self.files = open_alike(paths, feature_size)
        self.starts = np.cumsum([0] + [len(x) for x in self.files])  # the first sample of each video, and the count
        read_ahead(paths)
        with ThreadPoolExecutor(8) as pool:  # numpy's sums release the GIL; errors come in list order
            list(tqdm(pool.map(check_finite, paths, self.files), total=len(paths), desc=f'checking {desc} features',
                      leave=False))

    def __len__(self):
        return int(self.starts[-1])

    def __getitem__(self, indices):
        videos = np.searchsorted(self.starts, indices, side='right') - 1
        return np.stack([self.files[v][i - self.starts[v]] for v, i in zip(videos, indices)])


class TestSet:
    """The test videos in list order, each [T, crops, F] where it lies, and their frame labels.

    On the CPU each video is its file's memory map: nothing is copied, the page cache holds the set once,
    and an evaluation reads the features straight from it. On a GPU each video is copied once to device memory.
    """

    def __init__(self, list_path, gt_path, feature_size=2048, device='cpu'):
        self.paths = read_list(list_path)
        files = open_alike(self.paths, feature_size)
        self.lengths = np.array([len(x) for x in files])
        self.starts = np.concatenate([[0], np.cumsum(self.lengths)])  # the first snippet of each video, and N
        self.crops, self.device = files[0].shape[1], torch.device(device)
        read_ahead(self.paths)
        self.videos = [torch.from_numpy(x).to(self.device) for x in files]
        self.gt = None
        if gt_path is not None:
            if not os.path.isfile(gt_path):
                raise DataError(f'{gt_path}: ground truth not found (run preformer_feature.py --annotation ...)')
            self.gt = np.load(gt_path)
            frames = FRAMES_PER_SNIPPET * int(self.lengths.sum())
            if self.gt.shape != (frames,):
                raise DataError(f'{gt_path}: holds {self.gt.size} frame labels, but the {len(self.paths)} test '
                                f'videos of {list_path} have {frames} frames (16 per snippet)')

    def blocks(self, size):
        """All snippets in list order as views of at most size snippets each: every video, cut where it is longer."""
        return [block for x in self.videos for block in x.split(size)]

    def snippets(self, start, end):
        """Snippets start:end of the set (within one video) [end - start, crops, F]."""
        video = int(np.searchsorted(self.starts, start, side='right')) - 1
        return self.videos[video][start - self.starts[video]:end - self.starts[video]]

    def check_finite(self, sums):
        """Raise for the first video, in list order, that holds NaN or Inf, given the sum of every snippet's
        features per crop [N, crops]. A NaN or an Inf makes its sum NaN or Inf; a sum that overflowed
        has its video checked value by value."""
        bad = (~torch.isfinite(sums)).any(1).cpu().numpy()
        for i in np.unique(np.searchsorted(self.starts, np.flatnonzero(bad), side='right') - 1):
            check_finite(self.paths[i], self.videos[i].cpu().numpy())


def load_train_pools(list_path, feature_size, segments, exclude=(), is_normal=is_normal):
    """The pooled train videos (but those in exclude) as two Pools of samples [segments, F]: normal, anomalous."""
    paths = [p for p in read_list(list_path) if p not in exclude]
    pools = []
    for normal in (True, False):
        group = [p for p in paths if is_normal(p) == normal]
        if not group:
            raise DataError(f'{list_path}: lists no {"normal" if normal else "anomalous"} videos; '
                            'training needs both (run preformer_feature.py with the same --dataset)')
        pool = Pool(group, feature_size, 'normal train' if normal else 'anomalous train')
        if pool.files[0].shape[1] != segments:
            raise DataError(f'{group[0]}: pooled to {pool.files[0].shape[1]} segments, but --T is {segments}')
        pools.append(pool)
    return pools[0], pools[1]
