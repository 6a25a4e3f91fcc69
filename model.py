"""The paper's classifier: self-attention over time picks the salient segments of a video.

    A = softmax_t(W2 tanh(W1 x + b1) + b2)      x: [t, F], A: [t, r]   (r attention hops)
    M = x^T A                                   [F, r]
    score = sigmoid(fc2(fc1(vec(M))))           vec is feature-major: index f*r + j
"""
import os

import torch
import torch.nn as nn

from dataset import DataError


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
    def chunk_scores(self, x, chunk, n_chunks, block=16384):
        """Eval-mode scores of many chunks at once, equal to forward() on each chunk of each crop.

        x [N, crops, F] holds the snippets of all chunks back to back, chunk after chunk; chunk [N]
        (int64, nondecreasing) says which chunk each snippet belongs to. Returns [n_chunks, crops] scores.

        fc2(fc1(vec(M))) is linear in M, so it folds into one vector u [F, r] and a constant c:
        score = sigmoid(sum_j sum_t A[t, j] (x_t . u_j) + c). Then x is read once, by a single
        matmul x @ [W1^T | u] of 2*N*crops*F*(da + r) FLOPs; the rest is per-snippet work on
        [N, crops, r] numbers, done in float64 so the sums stay accurate.
        """
        w1, w2 = self.self_anttention[0], self.self_anttention[2]
        feature_size, da, r = x.shape[-1], w1.out_features, w2.out_features
        u = (self.fc2.weight @ self.fc1.weight).view(feature_size, r)
        c = (self.fc2.weight @ self.fc1.bias + self.fc2.bias).double()
        projection = torch.cat([w1.weight.t(), u], dim=1).to(x.dtype)  # [F, da + r]
        bias = torch.cat([w1.bias, w1.bias.new_zeros(r)]).to(x.dtype)
        logits = torch.empty(x.shape[:2] + (r,), dtype=torch.float64, device=x.device)
        values = torch.empty_like(logits)
        buffer = x.new_empty(min(block, len(x)) * x.shape[1], da + r)  # one for all blocks: no new memory each
        for start in range(0, len(x), block):
            # [x W1^T + b1 | x u] by one matmul, the only read of x (the bias added by it); tanh in place
            rows = x[start:start + block].flatten(0, 1)
            y = torch.addmm(bias, rows, projection, out=buffer[:len(rows)]).unflatten(0, (-1, x.shape[1]))
            logits[start:start + block] = w2(y[..., :da].tanh_())
            values[start:start + block] = y[..., da:]
        # softmax over the snippets of each chunk, stabilised by the chunk's maximum; the chunks are
        # consecutive runs of snippets, which segment_reduce sums in one pass (scatters are 20x slower)
        lengths = torch.bincount(chunk, minlength=n_chunks)
        peak = torch.segment_reduce(logits, 'max', lengths=lengths)
        weights = torch.exp(logits - peak[chunk])
        total = torch.segment_reduce(weights, 'sum', lengths=lengths)
        weighted = torch.segment_reduce(weights * values, 'sum', lengths=lengths)
        return torch.sigmoid((weighted / total).sum(-1) + c)


def checkpoint_name(da, r, T, seed, tag=''):
    """SelfAttention-da64-r3-T32-seed1111, the original's; a benchmark's tag follows SelfAttention (-shanghai, -xd)."""
    return f'SelfAttention{tag}-da{da}-r{r}-T{T}-seed{seed}'


def save_checkpoint(model, path):
    """Write the state dict (the released checkpoints' format) atomically."""
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save(state, path + '.tmp')
    os.replace(path + '.tmp', path)


def load_checkpoint(path, model):
    """Load a checkpoint of this project or the authors' into model, checking every shape first."""
    if not os.path.isfile(path):
        raise DataError(f'{path}: checkpoint not found')
    try:
        state = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:
        raise DataError(f'{path}: not a readable PyTorch checkpoint ({e.__class__.__name__})')
    expected = model.state_dict()
    if not isinstance(state, dict) or set(state) != set(expected):
        raise DataError(f'{path}: not a SelfAttention checkpoint (its keys are not {sorted(expected)})')
    if any(state[k].shape != v.shape for k, v in expected.items()):
        raise DataError(f'{path}: checkpoint has {_setting(state)}, the model was built with '
                        f'{_setting(expected)}: pass --da/--r/--feature-size to match')
    model.load_state_dict(state)
    return model


def _setting(state):
    (da, feature_size), r = state['self_anttention.0.weight'].shape, len(state['self_anttention.2.weight'])
    return f'da={da}, r={r}, feature size {feature_size}'
