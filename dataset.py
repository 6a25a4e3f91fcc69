"""Features on disk: list order, reading, pooling, frame ground truth, and the in-memory sets.

A video's features are [T, crops, F], one row per 16-frame snippet, in one of two layouts:
`<video>_i3d.npy` holding all crops (RTFM's format: UCF-Crime, ShanghaiTech, and every pooled file),
or one file per crop, `<video>__0.npy`, `<video>__1.npy`, ... each [T, F] (XD-Violence's). A list
names a video by its one file, or by its crop-0 file. The rules of a benchmark (which videos are
normal, how its annotation becomes frame labels) are passed in from benchmarks.py; the defaults
here are UCF-Crime's.
"""
import glob
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


# ---------------------------------------------------------------------------------------------- files
def write_atomic(path, write):
    """Call write(file) on a temporary file beside path, then rename it over path."""
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    tmp = f'{path}.tmp{os.getpid()}'
    with open(tmp, 'wb') as f:
        write(f)
    os.replace(tmp, path)


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
        x = np.load(path, mmap_mode='r')
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

    A float32 file holding all crops is memory-mapped (read-only); a file of another float type is
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


# ---------------------------------------------------------------------------------------------- in memory
def load_stacked(paths, feature_size, desc):
    """Load .npy files that differ only in their first axis into one preallocated array.

    Returns (array [sum of first axes, ...], first-axis lengths). Each file is read straight into
    its place, so nothing is held twice: read() rather than a copy from the memory map, which
    leaves no page of the file mapped into the process. Eight files are read at a time, which keeps
    the disk busy while new memory is touched: the set loads at the speed of a plain read of its files.
    """
    files = [open_features(p, feature_size) for p in paths]
    for path, x in zip(paths, files):
        if x.shape[1:] != files[0].shape[1:]:
            raise DataError(f'{path}: shape {list(x.shape)} does not fit {paths[0]}\'s {list(files[0].shape)}')
    lengths = np.array([len(x) for x in files])
    # torch's allocator rather than numpy's: numpy asks the kernel for huge pages, and compacting memory
    # for them, on a machine whose memory the page cache fills (as after reading a dataset), made
    # touching 5.7 GB take 6.5-8 s instead of 3-3.8 s on bench.py's machine
    stacked = torch.empty((int(lengths.sum()),) + files[0].shape[1:], dtype=torch.float32).numpy()
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])

    def read(i):
        part = stacked[starts[i]:starts[i] + lengths[i]]
        if isinstance(files[i], np.memmap) and files[i].flags.c_contiguous:  # a float32 file: read in place
            with open(paths[i], 'rb') as f:
                if hasattr(os, 'posix_fadvise'):  # Linux: a longer read-ahead, 10-20% faster from a cold disk
                    os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
                f.seek(files[i].offset)
                f.readinto(part)  # all of it: np.load checked that the file holds the whole array
        else:  # a file in Fortran order, or open_features' float32 copy (per-crop files, other float types)
            part[...] = files[i]
        check_finite(paths[i], part)

    with ThreadPoolExecutor(8) as pool:  # reads and numpy release the GIL; errors come in list order
        list(tqdm(pool.map(read, range(len(paths))), total=len(paths), desc=f'loading {desc} features', leave=False))
    return stacked, lengths


class TestSet:
    """All test videos in list order, as one [N, crops, F] tensor (on the device), and their frame labels."""

    def __init__(self, list_path, gt_path, feature_size=2048, device='cpu'):
        self.paths = read_list(list_path)
        features, self.lengths = load_stacked(self.paths, feature_size, 'test')
        self.features = torch.from_numpy(features).to(device)
        self.gt = None
        if gt_path is not None:
            if not os.path.isfile(gt_path):
                raise DataError(f'{gt_path}: ground truth not found (run preformer_feature.py --annotation ...)')
            self.gt = np.load(gt_path)
            frames = FRAMES_PER_SNIPPET * int(self.lengths.sum())
            if self.gt.shape != (frames,):
                raise DataError(f'{gt_path}: holds {self.gt.size} frame labels, but the {len(self.paths)} test '
                                f'videos of {list_path} have {frames} frames (16 per snippet)')

    def chunks(self, split_size):
        """Cut every video into consecutive chunks of split_size snippets (the last one shorter).

        Returns (chunk index of every snippet [N] on the device, number of chunks).
        """
        starts = np.concatenate([[0], np.cumsum(-(-self.lengths // split_size))[:-1]])
        chunk = np.concatenate([start + np.arange(T) // split_size for start, T in zip(starts, self.lengths)])
        return torch.from_numpy(chunk).to(self.features.device), int(chunk[-1]) + 1

    def snippet_scores(self, model, split_size):
        """The paper's test protocol: each chunk's score is the mean over crops of the model's score on it,
        and every snippet of the chunk gets that score. Returns float32 numpy [N]: the original's numbers.

        model.chunk_scores scores all chunks at once, nearer the exact values than the original's float32
        arithmetic; rounded to float32 they are the original's scores but for a few ulps. Those ulps order
        chunks whose scores are closer than that, and such near ties move the AUC's sixth digit: they are
        scored again by the original's own computation, so that every ranking, and the AUC, is the original's.
        """
        chunk, n_chunks = self.chunks(split_size)
        was_training = model.training
        model.eval()
        per_crop = model.chunk_scores(self.features, chunk, n_chunks)
        scores = per_crop.float().mean(1)  # float32 scores, their mean over crops in float32: the original's
        ends = torch.bincount(chunk, minlength=n_chunks).cumsum(0).tolist()

        def original(i):  # the original's score of chunk i: model() on its crops [crops, t, F], mean in float32
            return model(self.features[ends[i - 1] if i else 0:ends[i]].transpose(0, 1)).mean(0)

        with torch.no_grad():
            for i, score in rescore_near_ties(per_crop, original).items():
                scores[i] = score
        model.train(was_training)
        return scores[chunk].cpu().numpy()


def rescore_near_ties(per_crop, original, closer=1e-6):
    """{chunk: original(chunk)} for every chunk whose rank among the others float32 rounding may decide.

    per_crop: the exact scores [chunks, crops] (float64); original(i): chunk i's float32 score as the
    original computed it. A chunk is a near tie when its exact score lies within closer (relative, plus
    float32's smallest normal number, under which float32 has no relative precision) of another's. The
    original's rounding error grows with the model's logits, so closer is calibrated: it is kept at least
    4x the largest relative error seen among the chunks rescored, which start with 9 spread over the
    scores, and the near ties are found again until they are all rescored. Chunks whose every crop scores
    above 1 - 1e-8 are 1.0 in float32 however they are computed, and left as they are.
    """
    exact = per_crop.mean(1)
    ranked, order = exact.sort()
    certain = (per_crop.min(1).values > 1 - 1e-8)[order]
    tiny = torch.finfo(torch.float32).tiny
    rescored = {}
    todo = order[torch.linspace(0, len(order) - 1, 9, device=order.device).long()].unique()
    while len(todo):
        for i in todo.tolist():
            rescored[i] = original(i)
        done = torch.tensor(list(rescored), device=order.device)
        errors = (torch.stack(list(rescored.values())).double() - exact[done]).abs() - tiny
        closer = max(closer, 4 * (errors / exact[done]).max().item())
        close = ranked[1:] - ranked[:-1] <= closer * ranked[1:] + tiny
        near = torch.zeros_like(certain)
        near[1:] |= close
        near[:-1] |= close
        todo = order[near & ~certain]
        todo = todo[~torch.isin(todo, done)]
    return rescored


def load_train_pools(list_path, feature_size, segments, exclude=(), is_normal=is_normal):
    """The pooled train videos (but those in exclude) as two sample pools, [videos * crops, segments, F] each.

    Every crop of every video is one sample; each pool keeps the list order (video by video,
    crop by crop), as the original did.
    """
    paths = [p for p in read_list(list_path) if p not in exclude]
    pools = []
    for normal in (True, False):
        group = [p for p in paths if is_normal(p) == normal]
        if not group:
            raise DataError(f'{list_path}: lists no {"normal" if normal else "anomalous"} videos; '
                            'training needs both (run preformer_feature.py with the same --dataset)')
        pooled, _ = load_stacked(group, feature_size, 'normal train' if normal else 'anomalous train')
        if pooled.shape[1] != segments:
            raise DataError(f'{group[0]}: pooled to {pooled.shape[1]} segments, but --T is {segments}')
        pools.append(pooled)
    return pools[0], pools[1]
