"""The classifier against a plain numpy evaluation of the paper's formula, and the optimizer's rule."""
import math
import os

import numpy as np
import pytest
import torch

from conftest import SHARED, needs_shared
from dataset import DataError
from model import VideoClassifier, load_checkpoint, save_checkpoint
from train import official_radam

RELEASED = os.path.join(SHARED, 'reference', 'ckpt')


def formula(state, x):
    """score = sigmoid(fc2(fc1(vec(x^T softmax_t(W2 tanh(W1 x + b1) + b2))))), in float64 numpy."""
    p = {k: v.double().numpy() for k, v in state.items()}
    logits = np.tanh(x @ p['self_anttention.0.weight'].T + p['self_anttention.0.bias']) @ p['self_anttention.2.weight'].T \
        + p['self_anttention.2.bias']
    a = np.exp(logits - logits.max(1, keepdims=True))
    a /= a.sum(1, keepdims=True)                                      # [B, t, r], softmax over time
    m = np.einsum('btf,btj->bfj', x, a).reshape(len(x), -1)          # feature-major: f*r + j
    z = (m @ p['fc1.weight'].T + p['fc1.bias']) @ p['fc2.weight'].T + p['fc2.bias']
    return 1 / (1 + np.exp(-z[:, 0]))


@needs_shared
@pytest.mark.parametrize('name,da,r', [('SelfAttention-da64-r3-T32-seed9111.pth', 64, 3),
                                       ('SelfAttention-da128-r7-T32-seed9111.pth', 128, 7)])
def test_released_checkpoints_give_the_formula(name, da, r):
    model = load_checkpoint(os.path.join(RELEASED, name), VideoClassifier(2048, da, r)).eval()
    x = np.random.default_rng(da).gamma(0.5, 0.6, (5, 28, 2048)).astype(np.float32)  # I3D-like: >= 0
    expected = formula(model.state_dict(), x.astype(np.float64))
    with torch.no_grad():
        np.testing.assert_allclose(model(torch.from_numpy(x)).double().numpy(), expected, rtol=2e-5, atol=1e-6)
    # the fast evaluation: the five videos as chunks of one batch
    chunk = torch.arange(5).repeat_interleave(28)
    fast = model.chunk_scores([torch.from_numpy(x).reshape(-1, 1, 2048)], chunk, 5)[:, 0]
    np.testing.assert_allclose(fast.numpy(), expected, rtol=2e-5, atol=1e-6)


def test_layers_are_created_in_the_original_order():
    torch.manual_seed(0)
    model = VideoClassifier(16, 8, 2)
    torch.manual_seed(0)
    layers = [torch.nn.Linear(16, 8), torch.nn.Linear(8, 2), torch.nn.Linear(32, 32), torch.nn.Linear(32, 1)]
    expected = [t for layer in layers for t in (layer.weight, layer.bias)]
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), expected))
    assert [k for k in model.state_dict()] == ['self_anttention.0.weight', 'self_anttention.0.bias',
                                               'self_anttention.2.weight', 'self_anttention.2.bias',
                                               'fc1.weight', 'fc1.bias', 'fc2.weight', 'fc2.bias']


def test_parameter_counts_of_the_paper():
    assert sum(p.numel() for p in VideoClassifier(2048, 64, 3).parameters()) == 328_004
    assert sum(p.numel() for p in VideoClassifier(2048, 128, 7).parameters()) == 721_992


def test_dropout_acts_on_the_attention_in_training_only():
    torch.manual_seed(1)
    model = VideoClassifier(8, 4, 2)
    x = torch.rand(3, 5, 8)
    model.train()
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))


def test_checkpoints_round_trip_and_misfits_are_refused(tmp_path):
    model = VideoClassifier(2048, 64, 3)
    path = str(tmp_path / 'ckpt' / 'm.pth')
    save_checkpoint(model, path)
    assert os.listdir(tmp_path / 'ckpt') == ['m.pth']  # no temporary left behind
    loaded = load_checkpoint(path, VideoClassifier(2048, 64, 3))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    with pytest.raises(DataError, match=r'da=64, r=3.*da=128, r=7'):
        load_checkpoint(path, VideoClassifier(2048, 128, 7))


def official_radam_by_hand(grads, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):
    """Liu et al.'s RAdam (degenerated_to_sgd=False) in float64 numpy: parameter after each step."""
    p, m, v, out = np.zeros_like(grads[0]), np.zeros_like(grads[0]), np.zeros_like(grads[0]), []
    rho_inf = 2 / (1 - beta2) - 1
    for t, g in enumerate(grads, 1):
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        rho = rho_inf - 2 * t * beta2 ** t / (1 - beta2 ** t)
        if rho >= 5:
            step = math.sqrt((1 - beta2 ** t) * (rho - 4) / (rho_inf - 4) * (rho - 2) / rho
                             * rho_inf / (rho_inf - 2)) / (1 - beta1 ** t)
            p = p - lr * step * m / (np.sqrt(v) + eps)
        out.append(p.copy())
    return out


def test_radam_skips_steps_one_to_five_then_rectifies():
    grads = np.random.default_rng(0).normal(size=(9, 6))
    param = torch.zeros(6, dtype=torch.float64, requires_grad=True)
    optimizer, schedule = official_radam([param], 1e-3)
    expected = official_radam_by_hand(grads)
    for step, g in enumerate(grads, 1):
        param.grad = torch.from_numpy(g)
        optimizer.step()
        schedule.step()
        if step <= 5:
            assert torch.equal(param.detach(), torch.zeros(6, dtype=torch.float64))
        np.testing.assert_allclose(param.detach().numpy(), expected[step - 1], rtol=1e-12, atol=1e-15)
    assert np.abs(expected[-1]).min() > 1e-6  # the rectified steps did move the weights
