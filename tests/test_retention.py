"""retention.py on pre-made recordings: by age and by size the oldest whole segments go first (every file of
each, its day's events.jsonl with the day's last one), the active segments stay, file times and files that are
not recordings are ignored; one log line per deletion."""
import os

from results import utc_seconds
from retention import enforce

NOW = utc_seconds('2026-12-05T12:00:00.000Z')


def make(out, files):
    """Write files {path under out: size}, each with the file time of NOW, or of a year before for the newest
    days (so that a rule by file time would pick the wrong ones)."""
    for name, size in files.items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b'x' * size)
        mtime = NOW - 365 * 86400 if '2026-12' in name else NOW
        os.utime(path, (mtime, mtime))


def tree(out):
    """Every file and folder (with a / after it) under out."""
    return sorted(os.path.relpath(os.path.join(folder, name), out) + end
                  for folder, dirs, names in os.walk(out)
                  for name, end in [(name, '') for name in names] + [(name, '/') for name in dirs])


def segment(camera_day_stem, size=10):
    """The files of one segment: report, scores, features and an event's clip."""
    return {f'{camera_day_stem}.json': size, f'{camera_day_stem}.csv': size, f'{camera_day_stem}_i3d.npy': size,
            f'{camera_day_stem}-{camera_day_stem[-8:]}.500.mp4': size}


FOREIGN = {'index.html': 5, 'Backups/2026-11-01/10-00-00.json': 5, 'front_door/old/10-00-00.json': 5,
           'front_door/2026-11-26/notes.txt': 5, 'front_door/2026-02-30/10-00-00.json': 5,
           'front_door/2026-11-26/1-00-00.json': 5}


def test_by_age_the_old_segments_go_whole_and_the_active_ones_stay(tmp_path):
    out = tmp_path / 'watch'
    make(out, {**segment('front_door/2026-11-25/10-00-00'), **segment('front_door/2026-11-25/11-00-00'),
               'front_door/2026-11-25/11-00-00.json.tmp123': 3, 'front_door/2026-11-25/events.jsonl': 10,
               **segment('front_door/2026-11-26/10-00-00'), 'front_door/2026-11-26/events.jsonl': 10,
               **segment('front_door/2026-11-28/11-59-59'), **segment('front_door/2026-11-28/12-00-01'),
               'front_door/2026-11-28/events.jsonl': 10,
               **segment('front_door/2026-12-05/11-00-00'), 'front_door/2026-12-05/events.jsonl': 10,
               **segment('garage/2026-11-20/08-00-00'), **segment('garage/2026-11-20/23-59-59'),
               'garage/2026-11-20/events.jsonl': 10, 'garage/2026-11-27/events.jsonl': 10, **FOREIGN})
    lines = []
    active = {str(out / 'garage/2026-11-20/23-59-59'), str(out / 'front_door/2026-12-05/11-00-00')}
    deleted = enforce(str(out), 7, None, active, NOW, lines.append)
    gone = ['garage/2026-11-20/08-00-00', 'front_door/2026-11-25/10-00-00', 'front_door/2026-11-25/11-00-00',
            'front_door/2026-11-26/10-00-00', 'front_door/2026-11-28/11-59-59']
    assert deleted == [str(out / stem) for stem in gone]
    assert lines == [
        'retention: deleted garage/2026-11-20/08-00-00 (4 files, 0.0 MB): older than 7 days',
        'retention: deleted front_door/2026-11-25/10-00-00 (4 files, 0.0 MB): older than 7 days',
        "retention: deleted front_door/2026-11-25/11-00-00 (5 files, 0.0 MB; the day's last segment: events.jsonl "
        'and the folder too): older than 7 days',
        "retention: deleted front_door/2026-11-26/10-00-00 (4 files, 0.0 MB; the day's last segment: events.jsonl "
        'too): older than 7 days',
        'retention: deleted front_door/2026-11-28/11-59-59 (4 files, 0.0 MB): older than 7 days']
    kept = {**segment('front_door/2026-11-28/12-00-01'), 'front_door/2026-11-28/events.jsonl': 0,
            **segment('front_door/2026-12-05/11-00-00'), 'front_door/2026-12-05/events.jsonl': 0,
            **segment('garage/2026-11-20/23-59-59'), 'garage/2026-11-20/events.jsonl': 0,
            'garage/2026-11-27/events.jsonl': 0, **FOREIGN}
    folders = {os.path.dirname(name) + '/' for name in kept if '/' in name} | {'front_door/', 'garage/', 'Backups/'}
    assert tree(out) == sorted(set(kept) | folders)
    assert enforce(str(out), 7, None, active, NOW, lines.append) == [] and len(lines) == 5


def test_by_size_the_oldest_go_first_over_every_camera_until_the_recordings_fit(tmp_path):
    out = tmp_path / 'watch'
    make(out, {**segment('cam1/2026-12-01/08-00-00', 125), **segment('cam1/2026-12-01/09-00-00', 75),
               'cam1/2026-12-01/events.jsonl': 100, **segment('cam2/2026-12-01/08-30-00', 75),
               **segment('cam2/2026-12-02/10-00-00', 75), **segment('cam2/2026-12-02/10-00-01', 75),
               'cam2/big.mkv': 10_000, 'index.html': 10_000})
    # counted: 500 + 300 + 100 + 300 + 300 + 300 = 1800 bytes (the big files are not recordings)
    lines = []
    active = {f'{out}/cam1/2026-12-01/08-00-00'}
    deleted = enforce(str(out), 1000, 1200e-9, active, NOW, lines.append)
    assert deleted == [f'{out}/cam2/2026-12-01/08-30-00', f'{out}/cam1/2026-12-01/09-00-00']
    assert lines == [
        "retention: deleted cam2/2026-12-01/08-30-00 (4 files, 0.0 MB; the day's last segment: the folder too): "
        'the recordings took 1.8e-06 GB, over keep_gb 1.2e-06',
        'retention: deleted cam1/2026-12-01/09-00-00 (4 files, 0.0 MB): the recordings took 1.5e-06 GB, over '
        'keep_gb 1.2e-06']
    kept = {**segment('cam1/2026-12-01/08-00-00'), 'cam1/2026-12-01/events.jsonl': 0,
            **segment('cam2/2026-12-02/10-00-00'), **segment('cam2/2026-12-02/10-00-01'), 'cam2/big.mkv': 0,
            'index.html': 0}
    assert tree(out) == sorted(set(kept) | {'cam1/', 'cam1/2026-12-01/', 'cam2/', 'cam2/2026-12-02/'})
    deleted = enforce(str(out), 1000, 1e-9, active, NOW, lines.append)
    assert deleted == [f'{out}/cam2/2026-12-02/10-00-00', f'{out}/cam2/2026-12-02/10-00-01']  # the active one stays
    assert tree(out) == sorted([*segment('cam1/2026-12-01/08-00-00'), 'cam1/2026-12-01/events.jsonl',
                                'cam2/big.mkv', 'index.html', 'cam1/', 'cam1/2026-12-01/', 'cam2/'])


def test_nothing_recorded_yet(tmp_path):
    assert enforce(str(tmp_path / 'watch'), 7, 1, set(), NOW, print) == []
