"""I3D ResNet-50 (Carreira & Zisserman's inflation of ResNet-50, FAIR's Kinetics-400 baseline) as a feature extractor.

The network of pytorch-resnet3d (Tushar-N/pytorch-resnet3d, models/resnet.py, I3Res50 without non-local
blocks), under the key names of its weights file i3d_r50_kinetics.pth. Input [N, 3, 16, 224, 224] -> [N, 2048]:

    conv1 5x7x7 stride 2x2x2 pad 2x3x3, BN, ReLU, max pool 2x3x3 stride 2x2x2      -> 64 x 4 x 55 x 55
    layer1 (3 blocks, 64 -> 256), max pool 2x1x1 stride 2x1x1                       -> 256 x 2 x 55 x 55
    layer2 (4 blocks, -> 512, stride 2), layer3 (6, -> 1024, 2), layer4 (3, -> 2048, 2) -> 2048 x 2 x 7 x 7
    the mean over time, height and width                                             -> 2048

A bottleneck block: conv1 kx1x1 (temporal kernel k = 3, padding 1, where the block is inflated, else 1),
conv2 1x3x3 (the layer's spatial stride in its first block), conv3 1x1x1 to 4x the width, each followed by
BatchNorm (eps 1e-5, running statistics), ReLU after the sum with the shortcut (a strided 1x1x1 conv and
BN in each layer's first block). The classifier fc (Kinetics' 400 classes) is not part of the features:
its keys in a weights file are accepted and left unused.

Weights: the .pth state dict as pytorch-resnet3d's utils/convert_weights.py writes it, or the original
Caffe2 pickle i3d_baseline_32x2_IN_pretrain_400k.pkl, renamed the same way, read by an unpickler that
builds numpy arrays and nothing else (a pickle can otherwise run any code).
"""
import codecs
import os
import pickle
import re

import numpy as np
import torch
import torch.nn as nn

from dataset import DataError

LAYERS = (  # (width, spatial stride, temporal kernel of each block's conv1): the inflation pattern
    (64, 1, (3, 3, 3)),
    (128, 2, (3, 1, 3, 1)),
    (256, 2, (3, 1, 3, 1, 3, 1)),
    (512, 2, (1, 3, 1)),
)
FEATURE_SIZE = 2048
OPTIONAL_KEYS = ('fc.weight', 'fc.bias')  # the classifier: accepted, unused
WHERE_FROM = ("the weights are FAIR's Kinetics-400 I3D baseline: `wget https://dl.fbaipublicfiles.com/video-nonlocal/"
              "i3d_baseline_32x2_IN_pretrain_400k.pkl` and pass that .pkl as it is, or convert it to "
              "i3d_r50_kinetics.pth with pytorch-resnet3d's utils/convert_weights.py (see README.md)")


def batch_norm(channels):
    return nn.BatchNorm3d(channels, eps=1e-5)


class Bottleneck(nn.Module):

    def __init__(self, inplanes, planes, stride, temporal_kernel, downsample):
        super().__init__()
        self.conv1 = nn.Conv3d(inplanes, planes, (temporal_kernel, 1, 1), padding=(temporal_kernel // 2, 0, 0),
                               bias=False)
        self.bn1 = batch_norm(planes)
        self.conv2 = nn.Conv3d(planes, planes, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False)
        self.bn2 = batch_norm(planes)
        self.conv3 = nn.Conv3d(planes, 4 * planes, 1, bias=False)
        self.bn3 = batch_norm(4 * planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if downsample:
            self.downsample = nn.Sequential(nn.Conv3d(inplanes, 4 * planes, 1, stride=(1, stride, stride), bias=False),
                                            batch_norm(4 * planes))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += x if self.downsample is None else self.downsample(x)
        return self.relu(out)


def temporal_max_pool(x):
    """MaxPool3d((2, 1, 1), stride (2, 1, 1)) as the maximum of pairs of frames: the same numbers, 2.5x as fast
    on the CPU."""
    t = x.shape[2] // 2 * 2
    return torch.maximum(x[:, :, 0:t:2], x[:, :, 1:t:2])


class I3DResNet50(nn.Module):
    """x [N, 3, T, 224, 224] in [-1, 1] -> features [N, 2048]: layer4's output averaged over time and space."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv3d(3, 64, (5, 7, 7), stride=2, padding=(2, 3, 3), bias=False)
        self.bn1 = batch_norm(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool1 = nn.MaxPool3d((2, 3, 3), stride=2)
        inplanes = 64
        for i, (planes, stride, kernels) in enumerate(LAYERS, 1):
            blocks = [Bottleneck(inplanes, planes, stride, kernels[0], downsample=True)]
            blocks += [Bottleneck(4 * planes, planes, 1, k, downsample=False) for k in kernels[1:]]
            self.add_module(f'layer{i}', nn.Sequential(*blocks))
            inplanes = 4 * planes

    def forward(self, x):
        x = self.maxpool1(self.relu(self.bn1(self.conv1(x))))
        x = temporal_max_pool(self.layer1(x))
        x = self.layer4(self.layer3(self.layer2(x)))
        return x.mean((2, 3, 4))


# ---------------------------------------------------------------------------------------------- weights
def load_i3d(weights_path, device):
    """The network with the weights of weights_path (.pth state dict or Caffe2 .pkl), ready to extract: in eval
    mode on device, its BatchNorms folded into the convolutions, in the channels_last_3d layout the extractor
    feeds it."""
    network = I3DResNet50()
    network.load_state_dict(read_weights(weights_path), strict=False)  # every key but num_batches_tracked, checked
    fuse_batch_norms(network).requires_grad_(False)
    return network.to(device, memory_format=torch.channels_last_3d).eval()


def read_weights(path):
    """The state dict of path (.pth, or Caffe2 .pkl by its extension), checked: one DataError for any problem."""
    state = read_caffe2(path) if path.endswith('.pkl') else read_state_dict(path)
    with torch.device('meta'):  # the shapes, without computing any weights
        check_state(path, state, I3DResNet50())
    return state


def fuse_batch_norms(network):
    """Fold each eval-mode BatchNorm into the convolution before it, which then has a bias:
    bn(conv(x, w)) = conv(x, w s) + b - m s with s = gamma / sqrt(var + eps), computed in float64. The same
    function up to float32 rounding, without BatchNorm's pass over every activation (a fifth of the CPU time)."""
    for module in list(network.modules()):
        for conv_name, bn_name in (('conv1', 'bn1'), ('conv2', 'bn2'), ('conv3', 'bn3'), ('0', '1')):
            conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
            if isinstance(conv, nn.Conv3d) and isinstance(bn, nn.BatchNorm3d):
                with torch.no_grad():
                    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
                    weight = conv.weight.double() * scale.view(-1, 1, 1, 1, 1)
                    bias = bn.bias.double() - bn.running_mean.double() * scale
                conv.weight = nn.Parameter(weight.to(conv.weight.dtype))
                conv.bias = nn.Parameter(bias.to(conv.weight.dtype))
                setattr(module, bn_name, nn.Identity())
    return network


def read_state_dict(path):
    if not os.path.isfile(path):
        raise DataError(f'{path}: no such file; {WHERE_FROM}')
    try:
        state = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:
        raise DataError(f'{path}: not a readable PyTorch checkpoint ({e.__class__.__name__}); a Caffe2 pickle '
                        'must be named *.pkl')
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(f'{path}: not a state dict of tensors (the form of pytorch-resnet3d\'s i3d_r50_kinetics.pth)')
    return state


def check_state(path, state, network):
    """Every key of the network (but BatchNorm's num_batches_tracked) is in state with its shape, and no other
    (but the unused fc's)."""
    expected = {k: v.shape for k, v in network.state_dict().items() if not k.endswith('num_batches_tracked')}
    given = {k for k in state if k not in OPTIONAL_KEYS and not k.endswith('num_batches_tracked')}
    missing, unexpected = sorted(set(expected) - given, key=list(expected).index), sorted(given - set(expected))
    if missing or unexpected:
        def some(keys):
            return ', '.join(keys[:3]) + (', ...' if len(keys) > 3 else '')
        problems = ([f'{len(missing)} keys missing ({some(missing)})'] if missing else []) + \
                   ([f'{len(unexpected)} unexpected ({some(unexpected)})'] if unexpected else [])
        raise DataError(f'{path}: not the weights of the I3D ResNet-50 of pytorch-resnet3d: {"; ".join(problems)}')
    for key, shape in expected.items():
        if state[key].shape != shape:
            raise DataError(f'{path}: {key} has shape {list(state[key].shape)}, the network\'s is {list(shape)}')


# ---------------------------------------------------------------------------------------------- Caffe2
_BLOCK_BLOB = re.compile(r'res(\d)_(\d+)_branch(1|2a|2b|2c)_(w|bn_s|bn_b|bn_rm|bn_riv)')
_STEM_BLOBS = {'conv1_w': 'conv1.weight', 'res_conv1_bn_s': 'bn1.weight', 'res_conv1_bn_b': 'bn1.bias',
               'res_conv1_bn_rm': 'bn1.running_mean', 'res_conv1_bn_riv': 'bn1.running_var',
               'pred_w': 'fc.weight', 'pred_b': 'fc.bias'}
_SUFFIXES = {'w': 'weight', 'bn_s': 'weight', 'bn_b': 'bias', 'bn_rm': 'running_mean', 'bn_riv': 'running_var'}
_BOOKKEEPING = ('model_iter', 'lr')  # saved beside the parameters by video-nonlocal-net's checkpoints.py


def caffe2_name(blob):
    """pytorch-resnet3d's renaming (utils/convert_weights.py): res{L}_{B}_branch2{a,b,c}_{w,bn_s,bn_b,bn_rm,bn_riv}
    -> layer{L-1}.{B}.{conv,bn}{1,2,3}.{weight,weight,bias,running_mean,running_var}; branch1 (the shortcut)
    -> layer{L-1}.{B}.downsample.{0 (conv), 1 (BN)}.*; conv1_w, res_conv1_bn_*, pred_* -> conv1, bn1, fc.
    None for a blob of another name."""
    if blob in _STEM_BLOBS:
        return _STEM_BLOBS[blob]
    match = _BLOCK_BLOB.fullmatch(str(blob))
    if not match:
        return None
    layer, block, branch, suffix = match.groups()
    prefix = f'layer{int(layer) - 1}.{block}.'
    if branch == '1':
        return prefix + f'downsample.{0 if suffix == "w" else 1}.{_SUFFIXES[suffix]}'
    return prefix + f'{"conv" if suffix == "w" else "bn"}{"abc".index(branch[1]) + 1}.{_SUFFIXES[suffix]}'


def _latin1(text, encoding):  # Python 3's protocol-2 pickles of bytes call _codecs.encode(text, 'latin1')
    if encoding != 'latin1':
        raise pickle.UnpicklingError(f'_codecs.encode with {encoding!r}')
    return codecs.encode(text, 'latin1')


_NUMPY = {  # what a pickle of numpy arrays asks for (numpy 1 wrote numpy.core, numpy 2 writes numpy._core)
    **{(m, '_reconstruct'): np.zeros(1).__reduce__()[0] for m in ('numpy.core.multiarray', 'numpy._core.multiarray')},
    **{(m, 'scalar'): np.float32(0).__reduce__()[0] for m in ('numpy.core.multiarray', 'numpy._core.multiarray')},
    ('numpy', 'ndarray'): np.ndarray,
    ('numpy', 'dtype'): np.dtype,
    ('_codecs', 'encode'): _latin1,
}


class NumpyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays, numbers, strings and containers; any other class or function is refused."""

    def find_class(self, module, name):
        if (module, name) not in _NUMPY:
            raise pickle.UnpicklingError(f'it asks for {module}.{name}')
        return _NUMPY[module, name]

    def persistent_load(self, pid):
        raise pickle.UnpicklingError('it holds persistent references')


def read_caffe2(path):
    """The Caffe2 pickle {'blobs': {name: array}} (Python 2's: strings as latin1) -> a state dict by
    caffe2_name; momentum blobs and the bookkeeping blobs model_iter and lr are dropped."""
    if not os.path.isfile(path):
        raise DataError(f'{path}: no such file; {WHERE_FROM}')
    try:
        with open(path, 'rb') as f:
            content = NumpyUnpickler(f, encoding='latin1').load()
    except Exception as e:
        raise DataError(f'{path}: not a Caffe2 weights pickle of numpy arrays ({e.__class__.__name__}: {e})')
    blobs = content.get('blobs', content) if isinstance(content, dict) else None
    if not isinstance(blobs, dict):
        raise DataError(f"{path}: not a Caffe2 weights pickle (expected a dict {{'blobs': {{name: array}}}})")
    state, unknown = {}, []
    for blob, value in blobs.items():
        if blob in _BOOKKEEPING or str(blob).endswith('_momentum'):
            continue
        name = caffe2_name(blob)
        if name is None:
            unknown.append(str(blob))
        elif not isinstance(value, np.ndarray) or value.dtype.kind != 'f':
            raise DataError(f'{path}: blob {blob} is not an array of floating-point numbers')
        else:
            state[name] = torch.from_numpy(np.ascontiguousarray(value, np.float32))
    if unknown:
        hint = '; non-local models are not supported' if any(b.startswith('nonlocal') for b in unknown) else ''
        raise DataError(f'{path}: {len(unknown)} blobs are not those of the I3D ResNet-50 baseline '
                        f'({", ".join(sorted(unknown)[:3])}{", ..." if len(unknown) > 3 else ""}){hint}')
    return state
