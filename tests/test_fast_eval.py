"""The fast evaluation (one matmul over the mapped test files) against the authors' plain per-video loop: the
same float32 scores to a few ulps, the same ranking of every pair of snippets, ties included, so the same AUC;
and against the same evaluation of the set stacked in memory: the same numbers, bit for bit."""
import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

import dataset  # as a module: pytest would take a TestSet in this namespace for a test class
from dataset import FRAMES_PER_SNIPPET, Pool
from protocol import chunks, rescore_near_ties, snippet_scores
from metrics import frame_auc
from model import VideoClassifier

F, CROPS = 2048, 5  # I3D's feature size: BLAS picks its kernels by the shapes
# uneven lengths: a single snippet, a few, exact multiples of 7, 16 and 32, and others; the last two videos
# are one video twice, the second copy changed by a few float32 ulps: chunks that float32 rounding ranks
LENGTHS = [1, 5, 16, 32, 37, 7, 14, 100, 31, 33, 2, 64, 40, 40]


def plain_scores(model, videos, split_size):
    """The authors' loop: per video, per chunk of split_size snippets, model() on the crops, mean over crops."""
    scores = []
    with torch.no_grad():
        for x in videos:
            for chunk in torch.split(torch.from_numpy(x).permute(1, 0, 2), split_size, dim=1):
                scores.append(model(chunk).mean(0).repeat(chunk.shape[1]))
    return torch.cat(scores).numpy()


@pytest.fixture(scope='module')
def test_files(tmp_path_factory):
    """Random non-negative videos written as feature files (one in Fortran order), their list and frame labels."""
    root = tmp_path_factory.mktemp('fast_eval')
    rng = np.random.default_rng(0)
    videos, paths, gt = [], [], []
    for i, T in enumerate(LENGTHS):
        x = rng.gamma(0.5, 1.0, (T, CROPS, F)).astype(np.float32)  # I3D-like: non-negative, skewed
        if i == len(LENGTHS) - 1:
            x = videos[-1] * (1 + 3e-7 * rng.standard_normal(x.shape)).astype(np.float32)
        path = root / f'{"Normal_Videos_" if i % 3 == 0 else "Abuse"}{i:03d}_x264_i3d.npy'
        np.save(path, np.asfortranarray(x) if i == 4 else x)
        videos.append(x)
        paths.append(str(path))
        labels = np.zeros(FRAMES_PER_SNIPPET * T)
        if i % 3:  # an anomalous span that starts and ends inside snippets
            start = rng.integers(0, len(labels))
            labels[start:start + rng.integers(1, 40)] = 1
        gt.append(labels)
    (root / 'test.list').write_text(''.join(p + '\n' for p in paths))
    np.save(root / 'gt.npy', np.concatenate(gt))
    return root, videos


def make_model(kind):
    """A random model; sharp: attention logits in the thousands, far beyond exp's range without the max shift;
    saturated: scores so far from 0.5 that many are 1.0 in float32, ties the original's AUC counts as ties."""
    torch.manual_seed(1)
    model = VideoClassifier(F, da=8, r=3).eval()
    with torch.no_grad():
        if kind == 'sharp':
            model.self_anttention[2].weight.mul_(3000)
        if kind == 'saturated':
            model.fc2.weight.mul_(300)
    return model


def test_a_pool_stacks_the_samples_it_is_asked_for(test_files):
    """A Pool of files [first axis, ...] gives the samples of their concatenation (one file in Fortran order)."""
    root, videos = test_files
    pool = Pool((root / 'test.list').read_text().split(), F, 'test')
    stacked = np.concatenate(videos)
    assert len(pool) == len(stacked) == sum(LENGTHS)
    indices = np.random.default_rng(3).permutation(len(stacked))[:90]
    indices[:4] = [0, len(stacked) - 1, LENGTHS[0], LENGTHS[0] - 1]  # the first and last, a file's edges
    np.testing.assert_array_equal(pool[indices], stacked[indices])


@pytest.mark.parametrize('kind', ['random', 'sharp', 'saturated'])
@pytest.mark.parametrize('split_size', [1, 7, 16, 32, 200])
def test_fast_scores_and_auc_equal_the_plain_loop(test_files, kind, split_size):
    root, videos = test_files
    test_set = dataset.TestSet(str(root / 'test.list'), str(root / 'gt.npy'), F)
    model = make_model(kind).train()  # snippet_scores evaluates in eval mode and restores the mode
    fast = snippet_scores(model, test_set, split_size)
    assert model.training
    expected = plain_scores(model.eval(), videos, split_size)
    assert fast.dtype == expected.dtype == np.float32
    np.testing.assert_allclose(fast, expected, rtol=1e-5, atol=0)  # float32 noise, large where logits are

    # every pair of snippets in the same order, ties included: what the AUC sees
    a, b = np.triu_indices(len(expected), 1)
    np.testing.assert_array_equal(np.sign(fast[a] - fast[b]), np.sign(expected[a] - expected[b]))
    plain_auc = roc_auc_score(test_set.gt, np.repeat(expected, FRAMES_PER_SNIPPET))
    assert frame_auc(fast, test_set.gt) == pytest.approx(plain_auc, abs=1e-12)


@pytest.mark.parametrize('error, near_ties', [(0, {2, 3}), (5e-6, {2, 3, 11, 12})], ids=['float32', 'coarse'])
def test_rescored_chunks_are_the_near_ties(error, near_ties):
    exact = 0.1 + 0.02 * torch.arange(41, dtype=torch.float64)
    exact[3] = exact[2] * (1 + 5e-7)  # a near tie for any float32 computation
    exact[12] = exact[11] * (1 + 1e-5)  # one only for a computation whose error is above 2.5e-6
    exact[38:] = torch.tensor([1 - 2e-9, 1 - 1.5e-9, 1 - 1e-9])  # ties, but 1.0 in float32 however computed
    per_crop = torch.stack([exact, exact], 1)

    def original(i):  # the exact score with the given relative error, rounded to float32
        return (exact[i] * (1 + error)).float()

    rescored = rescore_near_ties(per_crop, original)
    spread = {0, 5, 10, 15, 20, 25, 30, 35, 40}  # the 9 chunks spread over the scores that calibrate
    assert set(rescored) == spread | near_ties
    assert all(rescored[i] == original(i) for i in rescored)


@pytest.mark.parametrize('kind', ['random', 'sharp'])
def test_mapped_files_score_as_the_set_stacked_in_memory(test_files, kind):
    """Every video read where it lies, cut into blocks of 1, 3, 5 or 16384 snippets (blocks across which the
    chunks run, blocks of fewer rows than BLAS's large-matrix kernels take), equals one matmul over the
    whole set stacked in memory, bit for bit where the BLAS sums each row in one order (seen on AMD), else to
    float32's rounding: the scores, and the sum of every snippet's features."""
    root, videos = test_files
    test_set = dataset.TestSet(str(root / 'test.list'), None, F)
    mapped = open('/proc/self/maps').read()
    assert all(p in mapped for p in test_set.paths)  # read where they lie: the files are mapped, not copied
    chunk, chunk_starts = chunks(test_set.lengths, 16)
    chunk = torch.from_numpy(chunk)
    model = make_model(kind)
    stacked = torch.from_numpy(np.concatenate(videos))
    whole_sums = torch.empty(len(chunk), CROPS)
    whole = model.chunk_scores([stacked], chunk, len(chunk_starts), whole_sums)
    torch.testing.assert_close(whole_sums, stacked.sum(2), rtol=1e-5, atol=1e-4)
    for block in (1, 3, 5, 16384):
        sums = torch.empty(len(chunk), CROPS)
        scores = model.chunk_scores(test_set.blocks(block), chunk, len(chunk_starts), sums)
        if torch.equal(sums, whole_sums):  # a BLAS that sums every row in one order whatever the block
            assert torch.equal(scores, whole)
        else:  # one that orders its sums by the product's shape (seen on an Intel Xeon): float32 ulps,
            # which protocol.snippet_scores's rescoring of near ties keeps from the ranking
            torch.testing.assert_close(sums, whole_sums, rtol=2e-6, atol=0)
            torch.testing.assert_close(scores, whole, rtol=5e-5, atol=0)  # a sharp softmax magnifies them


def test_frame_auc_equals_sklearn_on_frames_with_ties():
    rng = np.random.default_rng(2)
    scores = rng.integers(0, 6, 500) / 5  # few distinct values: many ties, within and across labels
    gt = (rng.random(500 * FRAMES_PER_SNIPPET) < 0.3).astype(float)
    assert frame_auc(scores, gt) == pytest.approx(roc_auc_score(gt, np.repeat(scores, FRAMES_PER_SNIPPET)), abs=1e-12)
