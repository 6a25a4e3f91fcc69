"""The paper's test protocol: every crop of a video is cut into chunks of split_size snippets, each chunk
is scored by the model, a chunk's score is the mean over crops, and every snippet of the chunk gets it."""
import numpy as np
import torch

from model import eval_mode

BLOCK = 16384  # snippets a matmul reads at most: long videos are cut into blocks of this many


def chunk_score(model, chunk):
    """The score of one chunk [t, crops, F], the original's computation: model() on its crops [crops, t, F], the
    mean over crops. A 0-d tensor; the caller holds no_grad and eval mode."""
    return model(chunk.transpose(0, 1)).mean(0)


@torch.no_grad()
def video_scores(model, features, split_size):
    """One video's snippet scores: features [T, crops, F] (a tensor on the model's device) -> float32 numpy [T],
    each chunk's chunk_score on its snippets."""
    with eval_mode(model):
        scores = [chunk_score(model, chunk).expand(len(chunk)) for chunk in features.split(split_size)]
    return torch.cat(scores).cpu().numpy()


def chunks(lengths, split_size):
    """Cut every video (lengths in snippets) into consecutive chunks of split_size snippets, the last one shorter.

    Returns (the chunk index of every snippet [N], the first snippet of every chunk [n_chunks])."""
    starts = np.concatenate([[0], np.cumsum(-(-lengths // split_size))[:-1]])
    chunk = np.concatenate([start + np.arange(T) // split_size for start, T in zip(starts, lengths)])
    return chunk, np.flatnonzero(np.diff(chunk, prepend=-1))


@torch.no_grad()
def snippet_scores(model, test_set, split_size, block=BLOCK):
    """The test protocol on every video of test_set (dataset.TestSet): float32 numpy [N], the original's numbers.

    model.chunk_scores scores all chunks at once, reading each video where it lies, nearer the exact values
    than the original's float32 arithmetic; rounded to float32 they are the original's scores but for a few
    ulps. Those ulps order chunks whose scores are closer than that, and such near ties move the AUC's sixth
    digit: they are scored again by the original's own computation, so that every ranking, and the AUC, is
    the original's. The matmul also sums every snippet's features, which tells whether a file holds NaN or Inf.
    """
    chunk, chunk_starts = chunks(test_set.lengths, split_size)
    bounds = np.concatenate([chunk_starts, [len(chunk)]]).tolist()  # chunk i is snippets bounds[i]:bounds[i + 1]
    chunk = torch.from_numpy(chunk).to(test_set.device)
    sums = torch.empty(len(chunk), test_set.crops, device=test_set.device)
    with eval_mode(model):
        per_crop = model.chunk_scores(test_set.blocks(block), chunk, len(chunk_starts), sums)
        test_set.check_finite(sums)
        scores = per_crop.float().mean(1)  # float32 scores, their mean over crops in float32: the original's

        def original(i):  # the original's score of chunk i, mean over crops in float32
            return chunk_score(model, test_set.snippets(bounds[i], bounds[i + 1]))

        for i, score in rescore_near_ties(per_crop, original).items():
            scores[i] = score
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
