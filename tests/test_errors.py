"""Every user mistake ends in one line naming the culprit, a non-zero exit and no traceback."""
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import FEATURE_SIZE, REPO, run_script
from dataset import DataError, check_finite
from model import VideoClassifier, save_checkpoint

TEST_LIST = 'list/ucf-i3d-test.list'
TRAIN_LIST = 'list/pre-ucf-i3d-train-32.list'
CKPT = 'ckpt/SelfAttention-da64-r3-T32-seed1111.pth'
F = ['--feature-size', FEATURE_SIZE]


def first_test_video(root):
    return open(root / TEST_LIST).readline().strip()


def overwrite_first_test_video(array):
    return lambda root: np.save(root / first_test_video(root), array)


def write(path, text):
    return lambda root: (root / path).write_text(text)


def keep_train_videos(normal):
    def edit(root):
        lines = open(root / TRAIN_LIST).read().splitlines()
        (root / TRAIN_LIST).write_text(''.join(l + '\n' for l in lines if ('Normal' in l) == normal))
    return edit


def truncate_first_test_video(root):
    path = root / first_test_video(root)
    os.truncate(path, os.path.getsize(path) // 2)


def nth_test_video(root, i):
    return open(root / TEST_LIST).read().split()[i]


def with_value(i, value):
    """Put value into test video i (list order) and, where i > 0, NaN into a later one: the first is named."""
    def edit(root):
        for j, v in ((i, value), (i + 2, np.nan))[:1 + (i > 0)]:
            x = np.load(root / nth_test_video(root, j))
            x[1, 0, 3] = v
            np.save(root / nth_test_video(root, j), x)
    return edit


def with_crops(i, crops):
    def edit(root):
        np.save(root / nth_test_video(root, i), np.ones((40, crops, FEATURE_SIZE), np.float32))
    return edit


def drop_annotation_row(name):
    def edit(root):
        lines = open(root / 'Temporal_Anomaly_Annotation_for_Testing_Videos.txt').read().splitlines()
        (root / 'Temporal_Anomaly_Annotation_for_Testing_Videos.txt').write_text(
            ''.join(l + '\n' for l in lines if not l.startswith(name)))
    return edit


def first_anomalous_test_name(root):
    return os.path.basename(first_test_video(root))[:-len('_i3d.npy')]


CASES = {  # id: (breakage, script, flags, words the message must hold)
    'no features folder': (lambda root: shutil.rmtree(root / 'features'), 'preformer_feature.py', F,
                           ['features/UCF-Test', 'no such folder', 'synthetic.py']),
    'empty features folder': (lambda root: [os.remove(p) for p in (root / 'features' / 'UCF-Test').iterdir()],
                              'preformer_feature.py', F, ['features/UCF-Test', 'no *_i3d.npy']),
    'no test list': (lambda root: os.remove(root / TEST_LIST), 'test.py', F, [TEST_LIST, 'preformer_feature.py']),
    'list names a missing file': (lambda root: open(root / TEST_LIST, 'a').write('features/UCF-Test/Ghost_x264_i3d.npy\n'),
                                  'test.py', F, [TEST_LIST, 'Ghost_x264_i3d.npy', 'does not exist']),
    'truncated feature file': (truncate_first_test_video, 'test.py', F, ['_x264_i3d.npy', 'not a readable .npy']),
    'not an npy file': (lambda root: (root / first_test_video(root)).write_text('<html>quota exceeded</html>'),
                        'test.py', F, ['_i3d.npy', 'not a readable .npy']),
    'no snippets': (overwrite_first_test_video(np.zeros((0, 2, FEATURE_SIZE), np.float32)), 'test.py', F,
                    ['_i3d.npy', '[0, 2, 16]']),
    'NaN features': (with_value(0, np.nan), 'test.py', F, ['_i3d.npy', 'NaN']),
    'Inf features in a later video': (with_value(2, np.inf), 'test.py', F,
                                      [lambda root: nth_test_video(root, 2), 'NaN or Inf']),
    'NaN features, training': (with_value(0, np.nan), 'train.py', F, ['_i3d.npy', 'NaN']),
    'a test video of other crops': (with_crops(1, 3), 'test.py', F,
                                    [lambda root: nth_test_video(root, 1), '[40, 3, 16]', 'does not fit']),
    'wrong feature size': (overwrite_first_test_video(np.ones((40, 2, 8), np.float32)), 'test.py', F,
                           ['_i3d.npy', '[40, 2, 8]', '16']),
    'no crop axis': (overwrite_first_test_video(np.ones((40, FEATURE_SIZE), np.float32)), 'test.py', F,
                     ['_i3d.npy', '[40, 16]', 'crops']),
    'gt of another length': (lambda root: np.save(root / 'list/gt-ucf.npy', np.zeros(160)), 'test.py', F,
                             ['list/gt-ucf.npy', '160', '16 per snippet']),
    'annotation row that does not parse': (write('Temporal_Anomaly_Annotation_for_Testing_Videos.txt',
                                                 'Abuse028_x264.mp4  Abuse  165  240  -1  -1\nArrest001_x264.mp4 Arrest 1185\n'),
                                           'preformer_feature.py', [*F, '--annotation', 'Temporal_Anomaly_Annotation_for_Testing_Videos.txt'],
                                           ['Temporal_Anomaly_Annotation_for_Testing_Videos.txt, line 2', 'Arrest001_x264.mp4 Arrest 1185']),
    'anomalous test video without a row': (lambda root: drop_annotation_row(first_anomalous_test_name(root))(root),
                                           'preformer_feature.py', [*F, '--annotation', 'Temporal_Anomaly_Annotation_for_Testing_Videos.txt'],
                                           ['no row', 'x264']),
    'checkpoint of another setting': (None, 'test.py', [*F, '--ckpt', CKPT, '--da', 128, '--r', 7],
                                      [CKPT, 'da=64, r=3', 'da=128, r=7']),
    'missing checkpoint': (None, 'test.py', [*F, '--seed', 42], ['ckpt/SelfAttention-da64-r3-T32-seed42.pth', 'not found']),
    "missing authors' checkpoint": (None, 'test.py', [*F, '--seed', 9111, '--da', 128, '--r', 7], [
        "ckpt/SelfAttention-da128-r7-T32-seed9111.pth: checkpoint not found: it is one of the authors' released "
        'checkpoints, in save_weight/ of https://github.com/sakurada-cnq/salient_feature_anomaly: copy it to '
        'ckpt/SelfAttention-da128-r7-T32-seed9111.pth']),
    'zero split size': (None, 'test.py', [*F, '--test-split-size', 0], ['--test-split-size', '0']),
    'negative batch size': (None, 'train.py', [*F, '--batch-size', -4], ['--batch-size', '-4']),
    'zero log-every': (None, 'train.py', [*F, '--log-every', 0], ['--log-every', '0']),
    'zero T': (None, 'preformer_feature.py', [*F, '--T', 0], ['--T', '0']),
    'no normal train videos': (keep_train_videos(normal=False), 'train.py', F, [TRAIN_LIST, 'no normal videos']),
    'no anomalous train videos': (keep_train_videos(normal=True), 'train.py', F, [TRAIN_LIST, 'no anomalous videos']),
    'fewer samples than a batch': (None, 'train.py', [*F, '--batch-size', 16], [TRAIN_LIST, '16 normal', '--batch-size 16']),
}


@pytest.mark.parametrize('case', CASES)
def test_bad_input_gets_one_clear_line(workdir, case):
    breakage, script, flags, words = CASES[case]
    save_checkpoint(VideoClassifier(FEATURE_SIZE, 64, 3), str(workdir / CKPT))
    if breakage:
        breakage(workdir)
    device = [] if script == 'preformer_feature.py' else ['--device', 'cpu']
    result = run_script(script, *flags, *device, cwd=workdir, check=False)
    message = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ''
    assert result.returncode == 1, result.stderr
    assert 'Traceback' not in result.stderr
    assert message.startswith(f'{script}: error: ')
    for word in words:
        word = word(workdir) if callable(word) else word
        assert word in message, f'{word!r} not in {message!r}'


@pytest.mark.parametrize('values, finite', [((1, 2), True), ((3e38, 3e38), True), ((1, np.nan), False),
                                            ((1, np.inf), False), ((-np.inf, 1), False), ((np.inf, -np.inf), False)],
                         ids=['finite', 'finite, its sum overflows', 'NaN', '+Inf', '-Inf', '+Inf and -Inf'])
def test_non_finite_features_are_refused(values, finite):
    x = np.zeros((4, 2, 3), np.float32)
    x[1, 0, 2], x[3, 1, 0] = values
    if finite:
        assert check_finite('v_i3d.npy', x) is x
    else:
        with pytest.raises(DataError, match='v_i3d.npy: the features hold NaN or Inf values'):
            check_finite('v_i3d.npy', x)


def help_entries(text):
    """--help's arguments: {invocation: its help text}, from the sections after the usage and description."""
    entries, section = {}, False
    for line in text.splitlines():
        if line in ('options:', 'optional arguments:', 'positional arguments:'):
            section = True
        elif not line.strip():
            section = False
        elif section and line.startswith('  ') and not line.startswith('   '):  # an argument: its text after 2 spaces
            invocation, _, help_text = line.strip().partition('  ')
            entries[invocation] = help_text.strip()
        elif section and entries:
            entries[invocation] += ' ' + line.strip()
    return entries


def test_help_shows_every_flags_text_and_default():
    scripts = ['train.py', 'test.py', 'preformer_feature.py', 'synthetic.py']
    runs = [subprocess.Popen([sys.executable, os.path.join(REPO, s), '--help'], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, 'COLUMNS': '100'}) for s in scripts]
    for script, process in zip(scripts, runs):
        entries = help_entries(process.communicate()[0])
        assert process.returncode == 0 and len(entries) > 10, script
        for invocation, text in entries.items():
            if invocation.startswith('-h'):
                continue
            takes_a_value = ' ' in invocation.split(', ')[-1]  # '--da DA'; a switch is '--plot', off by default
            assert text, f'{script} {invocation}: no help text'
            assert not takes_a_value or re.search(r'\(default:? [^)]', text), f'{script} {invocation}: {text!r}'
        if script in ('train.py', 'test.py'):
            for flag, default in [('--da DA', 64), ('--r R', 3), ('--T T', 32), ('--seed SEED', 1111),
                                  ('--test-split-size TEST_SPLIT_SIZE', 32), ('--ckpt-dir CKPT_DIR', 'ckpt')]:
                assert entries[flag].endswith(f'(default: {default})'), (script, flag, entries[flag])


@pytest.mark.parametrize('name, hint', [('SelfAttention-da64-r3-T32-seed9111.pth', True),
                                        ('SelfAttention-da128-r7-T32-seed9111.pth', True),
                                        ('SelfAttention-da64-r3-T32-seed1111.pth', False), ('mine.pth', False)])
def test_a_missing_checkpoint_of_the_authors_says_where_it_comes_from(tmp_path, name, hint):
    from model import load_checkpoint
    path = str(tmp_path / name)
    with pytest.raises(DataError) as error:
        load_checkpoint(path)
    assert str(error.value) == f'{path}: checkpoint not found' + (
        f": it is one of the authors' released checkpoints, in save_weight/ of "
        f'https://github.com/sakurada-cnq/salient_feature_anomaly: copy it to {path}' if hint else '')
