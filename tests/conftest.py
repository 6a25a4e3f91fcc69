"""Shared fixtures: a tiny UCF-Crime-shaped set made by synthetic.py and prepared by preformer_feature.py."""
import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FEATURE_SIZE = 16   # tiny stand-in for I3D's 2048
CROPS = 2


def run_script(script, *args, cwd, check=True):
    """Run one of the repo's scripts as a user would; returns the CompletedProcess."""
    result = subprocess.run([sys.executable, os.path.join(REPO, script), *map(str, args)],
                            cwd=cwd, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f'{script} {args} failed:\n{result.stdout}\n{result.stderr}')
    return result


@pytest.fixture(scope='session')
def prepared_set(tmp_path_factory):
    """A tiny raw set (8 + 8 train, 3 + 3 test videos, 2 crops, F=16) with its lists, pooled features and gt."""
    import synthetic
    root = tmp_path_factory.mktemp('tiny')
    synthetic.generate(str(root), seed=3, crops=CROPS, feature_size=FEATURE_SIZE, progress=False,
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
