"""Shared fixtures: a tiny UCF-Crime-shaped set made by synthetic.py and prepared by preformer_feature.py; headless
Chromium and a tab of it for the page tests."""
import os
import re
import shutil
import struct
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OFFICIAL = os.path.join(REPO, 'list', 'official')  # the benchmarks' public lists and test annotations
SHARED = os.path.join(REPO, '..', 'shared')  # the authors' checkpoints and trajectory, beside the checkout (never in it)
needs_shared = pytest.mark.skipif(not os.path.isdir(os.path.join(SHARED, 'reference')),
                                  reason="needs ../shared/reference beside the checkout (the authors' released "
                                         'checkpoints or their training trajectory)')
FEATURE_SIZE = 16   # tiny stand-in for I3D's 2048
CROPS = 2


def run_script(script, *args, cwd, check=True):
    """Run one of the repo's scripts as a user would; returns the CompletedProcess."""
    result = subprocess.run([sys.executable, os.path.join(REPO, script), *map(str, args)],
                            cwd=cwd, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f'{script} {args} failed:\n{result.stdout}\n{result.stderr}')
    return result


@pytest.fixture(scope='session', autouse=True)
def openvino_cache(tmp_path_factory):
    """The OpenVINO cache of this session (backend.py), for its scripts too: never the user's."""
    folder = tmp_path_factory.mktemp('openvino')
    os.environ['ANOMALY_OPENVINO_CACHE'] = str(folder)
    return folder


@pytest.fixture(scope='session')
def prepared_set(tmp_path_factory):
    """A tiny raw set (8 + 8 train, 3 + 3 test videos, 2 crops, F=16) with its lists, pooled features and gt."""
    import synthetic
    root = tmp_path_factory.mktemp('tiny')
    synthetic.generate(str(root), seed=3, snr=4, crops=CROPS, feature_size=FEATURE_SIZE, progress=False,
                       n_train_abnormal=8, n_train_normal=8, n_test_abnormal=3, n_test_normal=3,
                       train_snippets=8 * 60, test_snippets=6 * 50)
    run_script('preformer_feature.py', '--feature-size', FEATURE_SIZE,
               '--annotation', 'Temporal_Anomaly_Annotation_for_Testing_Videos.txt', cwd=root)
    return root


@pytest.fixture
def workdir(prepared_set, tmp_path):
    """A private copy of the prepared set, for a test that writes checkpoints or breaks files."""
    shutil.copytree(prepared_set, tmp_path, dirs_exist_ok=True)
    return tmp_path


@pytest.fixture(scope='session')
def scored_test_run(prepared_set, tmp_path_factory):
    """test.py --plot on a random (untrained) da=8, r=2 model saved as model.pth in a copy of the prepared set.

    Returns (folder, test.py's CompletedProcess); the JSON and figures are in folder/results.
    """
    import torch
    from model import VideoClassifier, save_checkpoint
    root = tmp_path_factory.mktemp('scored')
    shutil.copytree(prepared_set, root, dirs_exist_ok=True)
    torch.manual_seed(0)
    save_checkpoint(VideoClassifier(FEATURE_SIZE, 8, 2), str(root / 'model.pth'))
    result = run_script('test.py', '--feature-size', FEATURE_SIZE, '--da', 8, '--r', 2, '--ckpt', 'model.pth',
                        '--plot', cwd=root)
    return root, result


def assert_png(path):
    """A PNG file by its signature and header, of a sensible size, that decodes to more than one colour."""
    from matplotlib.image import imread
    data = open(path, 'rb').read()
    assert data[:8] == b'\x89PNG\r\n\x1a\n' and data[12:16] == b'IHDR', path
    width, height = struct.unpack('>II', data[16:24])
    assert 200 <= width <= 3000 and 200 <= height <= 3000, (path, width, height)
    pixels = imread(path)
    assert pixels.shape[:2] == (height, width) and pixels.std() > 0.01, path


@pytest.fixture(scope='session')
def chromium():
    """Headless Chromium (browser.py) for the page tests, one per session; they skip without it, but in CI."""
    from browser import launch, missing
    reason = missing()
    if reason:
        if os.environ.get('CI'):
            pytest.fail(f'{reason}: CI runs the browser tests')
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


@pytest.fixture
def tab(chromium):
    """A new page; afterwards, every request it made must have stayed on this machine."""
    context = chromium.new_context(viewport={'width': 1200, 'height': 900})
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    requests, dialogs = [], []
    tab.on('request', lambda request: requests.append(request.url))
    tab.on('dialog', lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    tab.on('pageerror', lambda error: dialogs.append(f'script error: {error}'))
    tab.requests, tab.dialogs = requests, dialogs
    yield tab
    context.close()
    assert all(re.match(r'file://|http://127\.0\.0\.1:\d+/', url) for url in requests), requests
    assert dialogs == []  # no dialog opened, no script error
