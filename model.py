"""The paper's classifier: self-attention over time picks the salient segments of a video.

    A = softmax_t(W2 tanh(W1 x + b1) + b2)      x: [t, F], A: [t, r]   (r attention hops)
    M = x^T A                                   [F, r]
    score = sigmoid(fc2(fc1(vec(M))))           vec is feature-major: index f*r + j
"""
import contextlib
import os

import torch
import torch.nn as nn

from dataset import DataError

MIN_ROWS = 16  # the fewest rows chunk_scores gives a matmul (see there)
# the authors' released UCF-Crime checkpoints, in save_weight/ of their repository
AUTHORS_CHECKPOINTS = ('SelfAttention-da64-r3-T32-seed9111.pth', 'SelfAttention-da128-r7-T32-seed9111.pth')
AUTHORS_REPOSITORY = 'https://github.com/sakurada-cnq/salient_feature_anomaly'


class VideoClassifier(nn.Module):

    def __init__(self, feature_size=2048, da=64, r=3):
        super().__init__()
        # the attribute name keeps the original's spelling so the released checkpoints load as they are
        self.self_anttention = nn.Sequential(nn.Linear(feature_size, da), nn.Tanh(), nn.Linear(da, r))
        self.dropout = nn.Dropout(0.3)  # on the attention weights, training only
        self.fc1 = nn.Linear(feature_size * r, 32)
        self.fc2 = nn.Linear(32, 1)

    def attention(self, x):
        """x [B, t, F] -> attention weights over time [B, t, r]."""
        return torch.softmax(self.self_anttention(x), dim=1)

    def forward(self, x):
        """x [B, t, F] -> anomaly score in (0, 1), [B]."""
        a = self.dropout(self.attention(x))
        m = torch.bmm(x.transpose(1, 2), a)  # [B, F, r]
        return torch.sigmoid(self.fc2(self.fc1(m.flatten(1)))).squeeze(1)

    @torch.no_grad()
    def chunk_scores(self, blocks, chunk, n_chunks, sums=None):
        """Eval-mode scores of many chunks at once, equal to forward() on each chunk of each crop.

        blocks: a list of tensors [n, crops, F] that hold the snippets of all chunks back to back, chunk after
        chunk, cut anywhere (a video's rows where they lie, in its memory map); chunk [N] (int64,
        nondecreasing) says which chunk each snippet belongs to. Returns [n_chunks, crops] scores. sums, if
        given ([N, crops]), receives the sum of every crop's features: a by-product for the finiteness check.

        fc2(fc1(vec(M))) is linear in M, so it folds into one vector u [F, r] and a constant c:
        score = sigmoid(sum_j sum_t A[t, j] (x_t . u_j) + c). Then x is read once, by a single
        matmul x @ [W1^T | u | 1] of 2*N*crops*F*(da + r + 1) FLOPs; the rest is per-snippet work on
        [N, crops, r] numbers, done in float64 so the sums stay accurate.
        """
        w1, w2 = self.self_anttention[0], self.self_anttention[2]
        feature_size, da, r = w1.in_features, w1.out_features, w2.out_features
        u = (self.fc2.weight @ self.fc1.weight).view(feature_size, r)
        c = (self.fc2.weight @ self.fc1.bias + self.fc2.bias).double()
        projection = torch.cat([w1.weight.t(), u, u.new_ones(feature_size, 1)], dim=1)  # [F, da + r + 1]
        bias = torch.cat([w1.bias, w1.bias.new_zeros(r + 1)])
        crops = blocks[0].shape[1]
        logits = torch.empty((len(chunk), crops, r), dtype=torch.float64, device=chunk.device)
        values = torch.empty_like(logits)
        rows_most = max(MIN_ROWS, max(len(x) for x in blocks) * crops)
        buffer = projection.new_empty(rows_most, da + r + 1)  # one for all blocks: no new memory each
        start = 0
        for x in blocks:
            rows = x.flatten(0, 1)
            if len(rows) < MIN_ROWS:
                # BLAS multiplies a matrix of few rows by other kernels, which sum in another order; padded,
                # every row gets the numbers it gets in any larger block, however the snippets are cut
                rows = torch.cat([rows, rows.new_zeros(MIN_ROWS - len(rows), feature_size)])
            # [x W1^T + b1 | x u | x 1] by one matmul, the only read of x (the bias added by it); tanh in place
            y = torch.addmm(bias, rows, projection, out=buffer[:len(rows)])[:len(x) * crops].unflatten(0, (-1, crops))
            end = start + len(x)
            logits[start:end] = w2(y[..., :da].tanh_())
            values[start:end] = y[..., da:da + r]
            if sums is not None:
                sums[start:end] = y[..., -1]
            start = end
        # softmax over the snippets of each chunk, stabilised by the chunk's maximum; the chunks are
        # consecutive runs of snippets, which segment_reduce sums in one pass (scatters are 20x slower)
        lengths = torch.bincount(chunk, minlength=n_chunks)
        peak = torch.segment_reduce(logits, 'max', lengths=lengths)
        weights = torch.exp(logits - peak[chunk])
        total = torch.segment_reduce(weights, 'sum', lengths=lengths)
        weighted = torch.segment_reduce(weights * values, 'sum', lengths=lengths)
        return torch.sigmoid((weighted / total).sum(-1) + c)


@contextlib.contextmanager
def eval_mode(model):
    """Within it the model is in eval mode (no dropout); after it, in the mode it was in before."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def checkpoint_name(da, r, T, seed, tag=''):
    """SelfAttention-da64-r3-T32-seed1111, the original's; a benchmark's tag follows SelfAttention (-shanghai, -xd)."""
    return f'SelfAttention{tag}-da{da}-r{r}-T{T}-seed{seed}'


def save_checkpoint(model, path):
    """Write the state dict (the released checkpoints' format) atomically."""
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save(state, path + '.tmp')
    os.replace(path + '.tmp', path)


def load_checkpoint(path, model=None):
    """Load a checkpoint of this project or the authors' into model, checking every shape first; without a
    model, into one built with the checkpoint's own feature size, da and r (read off its attention's shapes)."""
    if not os.path.isfile(path):
        hint = (f": it is one of the authors' released checkpoints, in save_weight/ of {AUTHORS_REPOSITORY}: copy it "
                f'to {path}' if os.path.basename(path) in AUTHORS_CHECKPOINTS else '')
        raise DataError(f'{path}: checkpoint not found{hint}')
    try:
        state = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:
        raise DataError(f'{path}: not a readable PyTorch checkpoint ({e.__class__.__name__})')
    with torch.device('meta'):  # shapes only: nothing drawn from the global random generator
        keys = sorted(VideoClassifier(1, 1, 1).state_dict())
        if not isinstance(state, dict) or sorted(state) != keys:
            raise DataError(f'{path}: not a SelfAttention checkpoint (its keys are not {keys})')
        built = model is None
        model = VideoClassifier(*setting(state)) if built else model
    expected = model.state_dict()
    if setting(state) != setting(expected):
        raise DataError(f'{path}: checkpoint has {describe(state)}, the model was built with '
                        f'{describe(expected)}: pass --da/--r/--feature-size to match')
    for key, value in expected.items():
        if state[key].shape != value.shape:
            raise DataError(f'{path}: a damaged checkpoint: {key} has shape {list(state[key].shape)}, which does '
                            f'not fit the {describe(state)} of its attention')
    model.load_state_dict(state, assign=built)  # a model built here takes the checkpoint's tensors as they are
    return model


def setting(state):
    """(feature size, da, r) of a SelfAttention state dict."""
    (da, feature_size), r = state['self_anttention.0.weight'].shape, len(state['self_anttention.2.weight'])
    return feature_size, da, r


def describe(state):
    feature_size, da, r = setting(state)
    return f'da={da}, r={r}, feature size {feature_size}'
