"""The I3D network of the video pipeline, on one of two backends: PyTorch (i3d.py's network) or OpenVINO, whose
CPU runtime runs the same network faster, in float32 (README: Extraction speed and memory). video.Extractor
calls either the same way: clips [N, 3, 16, 224, 224] laid out channels_last_3d -> features [N, 2048], float32
tensors.

The OpenVINO model is converted once per weights file from the loaded PyTorch network and kept as IR
(.xml/.bin) in the cache (cache_folder()), in a folder named by the weights file's content hash, the input shape
and OpenVINO's version. Its files' SHA-256 digests are recorded beside them and checked on every start: a
damaged or foreign entry is converted again, never used. The IR takes the clips in their channels_last_3d
memory order, [N, 16, 224, 224, 3] (no copy), with a dynamic batch: as fast as a static one, measured
(docs/extraction-speed.md), and one model for every batch size and the last, shorter batch.
"""
import hashlib
import json
import os
import shutil
import sys
import tempfile

import numpy as np
import openvino
import torch

from dataset import FRAMES_PER_SNIPPET, DataError
from i3d import load_i3d

BACKENDS = ('auto', 'torch', 'openvino')
CACHE_VARIABLE = 'ANOMALY_OPENVINO_CACHE'  # the cache folder, when set
CLIPS_SHAPE = (-1, FRAMES_PER_SNIPPET, 224, 224, 3)  # the IR's input: clips in channels_last_3d order, any number
# float32 everywhere: the features must stay the protocol's (no bfloat16 or int8, which a CPU may prefer)
COMPILE_CONFIG = {'INFERENCE_PRECISION_HINT': 'f32'}
IR_FILES = ('i3d.xml', 'i3d.bin')
DIGESTS = 'digests.json'


def check_backend(backend, device):
    """DataError for a backend (BACKENDS) the device (a torch.device) cannot run."""
    if backend == 'openvino' and device.type != 'cpu':
        raise DataError(f'--backend openvino runs on the CPU only, not --device {device.type}: pass --device cpu, '
                        'or --backend torch')


def load_network(weights_path, device, backend='auto'):
    """The I3D network with the weights of weights_path on device (a torch.device) and backend (BACKENDS; auto:
    OpenVINO on the CPU, PyTorch otherwise), ready for video.Extractor."""
    check_backend(backend, device)
    if backend == 'torch' or (backend == 'auto' and device.type != 'cpu'):
        return load_i3d(weights_path, device)
    return OpenVINONetwork(openvino.Core().compile_model(cached_model(weights_path), 'CPU', COMPILE_CONFIG))


class OpenVINONetwork:
    """A compiled OpenVINO I3D called as the PyTorch network is: float32 tensors, clips [N, 3, 16, 224, 224] ->
    features [N, 2048]."""

    def __init__(self, compiled):
        self.request = compiled.create_infer_request()

    def __call__(self, clips):
        # the IR's input order, which is the memory order of the clips video.network_input makes: no copy
        clips = np.ascontiguousarray(clips.permute(0, 2, 3, 4, 1).numpy())
        return torch.from_numpy(self.request.infer([clips], share_inputs=True)[0])  # its outputs copied


class ChannelsLastInput(torch.nn.Module):
    """The network on clips [N, 16, 224, 224, 3]: the form converted, so that the IR takes them as they lie."""

    def __init__(self, network):
        super().__init__()
        self.network = network

    def forward(self, clips):
        return self.network(clips.permute(0, 4, 1, 2, 3))


def convert(network):
    """The openvino.Model of i3d.py's network (load_i3d's, on the CPU), taking CLIPS_SHAPE."""
    example = torch.zeros((1,) + CLIPS_SHAPE[1:])
    return openvino.convert_model(ChannelsLastInput(network), example_input=example,
                                  input=[openvino.PartialShape(CLIPS_SHAPE)])


def cache_folder():
    """$ANOMALY_OPENVINO_CACHE, else $XDG_CACHE_HOME/salient-anomaly/openvino, else ~/.cache/salient-anomaly/openvino"""
    user_cache = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
    return os.environ.get(CACHE_VARIABLE) or os.path.join(user_cache, 'salient-anomaly', 'openvino')


def file_digest(path):
    with open(path, 'rb') as f:
        return hashlib.file_digest(f, 'sha256').hexdigest()


def cache_entry(weights_path):
    """(the cache folder of weights_path's content, the description its digests file must hold)"""
    description = {'weights_sha256': file_digest(weights_path), 'input_shape': list(CLIPS_SHAPE),
                   'openvino': openvino.__version__}
    key = hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:32]
    return os.path.join(cache_folder(), key), description


def read_entry(folder, description):
    """The cached openvino.Model of folder, or None unless its digests file holds description and the digests
    of its IR files as they are now."""
    try:
        with open(os.path.join(folder, DIGESTS)) as f:
            recorded = json.load(f)
        if recorded != {**description, **{name: file_digest(os.path.join(folder, name)) for name in IR_FILES}}:
            return None
        return openvino.Core().read_model(os.path.join(folder, IR_FILES[0]))
    except (OSError, ValueError, RuntimeError):  # missing, unreadable, not JSON, or IR OpenVINO refuses
        return None


def write_entry(folder, description, model):
    """The IR of model and its digests into folder, replacing what is there, through a temporary folder renamed
    into place (a run interrupted while writing leaves no entry)."""
    os.makedirs(os.path.dirname(folder), exist_ok=True)
    tmp = tempfile.mkdtemp(dir=os.path.dirname(folder), prefix='.tmp')
    try:
        openvino.save_model(model, os.path.join(tmp, IR_FILES[0]), compress_to_fp16=False)
        digests = {**description, **{name: file_digest(os.path.join(tmp, name)) for name in IR_FILES}}
        with open(os.path.join(tmp, DIGESTS), 'w') as f:
            json.dump(digests, f, indent=1)
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def cached_model(weights_path):
    """The openvino.Model of weights_path: from the cache when its entry is intact, else converted (about 10 s on
    2 cores) and cached; a cache that cannot be written costs the conversion on every run, and says so on stderr."""
    folder, description = cache_entry(weights_path)
    model = read_entry(folder, description)
    if model is None:
        model = convert(load_i3d(weights_path, 'cpu'))  # silently: the scripts' output is theirs
        try:
            write_entry(folder, description, model)
        except OSError as e:
            print(f'{folder}: the converted network cannot be cached ({e.strerror}); converting on every run',
                  file=sys.stderr)
    return model
