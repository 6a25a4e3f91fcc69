"""Write the I3D network, with the weights of a file, as OpenVINO IR and as ONNX: for OpenVINO's other devices
(Intel GPU, NPU; not tested here) or another runtime.

    python export.py i3d_r50_kinetics.pth --out export/
    python export.py i3d_baseline_32x2_IN_pretrain_400k.pkl --crops 10 --out export/

Writes <out>/i3d.xml with i3d.bin (OpenVINO IR) and <out>/i3d.onnx, both float32, of a fixed shape (NPUs need
one): one snippet's crops, clips float32 [crops, 16, 224, 224, 3] (time, height, width, RGB: the protocol's
frames, resized, scaled to x * 2 / 255 - 1 and cropped as extract_features.py says, in their own memory order)
-> features float32 [crops, 2048]. The IR is the one the OpenVINO backend runs (backend.py, from its cache),
with a fixed batch. Before anything is written, OpenVINO reads both files back and runs them on random clips
beside the PyTorch network: their features must equal PyTorch's within 1e-5 of the largest feature.
"""
import argparse
import os
import shutil
import tempfile
import warnings

import openvino
import torch

from backend import COMPILE_CONFIG, ChannelsLastInput, cached_model
from cli import HelpFormatter, check_out_dir, run
from dataset import FRAMES_PER_SNIPPET, DataError
from i3d import load_i3d

TOLERANCE = 1e-5  # of the largest feature
IR, WEIGHTS, ONNX = 'i3d.xml', 'i3d.bin', 'i3d.onnx'


def write_onnx(network, clips, path):
    with warnings.catch_warnings():  # the TorchScript exporter, the one that needs no other package, is deprecated
        warnings.simplefilter('ignore', DeprecationWarning)
        torch.onnx.export(network, (clips,), path, dynamo=False, input_names=['clips'], output_names=['features'])


def largest_difference(path, clips, expected):
    """max |features of the model file at path, by OpenVINO on the CPU - expected| / max |expected|"""
    features = openvino.Core().compile_model(path, 'CPU', COMPILE_CONFIG)(clips.numpy())[0]
    return float(abs(torch.from_numpy(features) - expected).max() / expected.abs().max())


def main(args):
    check_out_dir(args.out, '--out')
    network = ChannelsLastInput(load_i3d(args.weights, 'cpu'))  # checks the weights file
    clips = torch.rand((args.crops, FRAMES_PER_SNIPPET, 224, 224, 3), generator=torch.Generator().manual_seed(0))
    clips = clips * 2 - 1
    with torch.inference_mode():
        expected = network(clips)
    model = cached_model(args.weights)
    model.reshape(list(clips.shape))
    os.makedirs(args.out, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=args.out, prefix='.export-')
    try:
        openvino.save_model(model, os.path.join(tmp, IR), compress_to_fp16=False)
        write_onnx(network, clips, os.path.join(tmp, ONNX))
        for name in (IR, ONNX):
            difference = largest_difference(os.path.join(tmp, name), clips, expected)
            print(f'{name}: read back by OpenVINO, features within {difference:.1e} of the largest of PyTorch\'s')
            if not difference <= TOLERANCE:
                raise DataError(f'{name}: its features differ from PyTorch\'s by {difference:.1e} of the largest, '
                                f'more than {TOLERANCE:g}: nothing written')
        for name in (WEIGHTS, IR, ONNX):  # the .xml after its .bin: an IR is never read with another's weights
            os.replace(os.path.join(tmp, name), os.path.join(args.out, name))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f'wrote {os.path.join(args.out, IR)} (+ {WEIGHTS}) and {os.path.join(args.out, ONNX)}: clips float32 '
          f'[{args.crops}, 16, 224, 224, 3] -> features [{args.crops}, 2048]')


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument('weights', help="pytorch-resnet3d's i3d_r50_kinetics.pth, or FAIR's Caffe2 "
                                        'i3d_baseline_32x2_IN_pretrain_400k.pkl as it is')
    parser.add_argument('--crops', type=int, choices=[1, 10], default=1,
                        help='the clips of one run: a snippet\'s crops (extract_features.py --crops)')
    parser.add_argument('--out', required=True, help='the folder the files go to')
    return parser


if __name__ == '__main__':
    run(main, build_parser().parse_args(), 'export.py')
