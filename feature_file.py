"""A feature file written row by row as snippets are scored (live.py's run, watch.py's segments), in the .npy
form extract_features.py writes: the rows grow in '<path>.part' under a header with room for any shape, which
close() rewrites with the final shape before renaming the file into place."""
import os
import struct

import numpy as np

NPY_HEADER = 128          # bytes of the growing feature file's header: room for any shape


def npy_header(shape):
    """A .npy (version 1.0) header of float32 [shape], padded to NPY_HEADER bytes."""
    text = repr({'descr': '<f4', 'fortran_order': False, 'shape': tuple(shape)})
    return b'\x93NUMPY\x01\x00' + struct.pack('<H', NPY_HEADER - 10) + text.ljust(NPY_HEADER - 11).encode() + b'\n'


class FeatureFile:
    """<path> written row by row without holding the rows: <path>.part grows, its header is rewritten with the
    final shape at close(), and it is renamed into place."""

    def __init__(self, path, crops, feature_size):
        self.path, self.tail, self.rows = path, (crops, feature_size), 0
        os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
        self.file = open(path + '.part', 'wb')
        self.file.write(npy_header((0, *self.tail)))

    def append(self, rows):
        self.file.write(np.ascontiguousarray(rows, np.float32).tobytes())
        self.file.flush()  # on the disk as it goes: a hard stop leaves every whole row
        self.rows += len(rows)

    def close(self):
        """The file in place (when it holds a row); its path, or None."""
        self.file.seek(0)
        self.file.write(npy_header((self.rows, *self.tail)))
        self.file.close()
        if not self.rows:
            os.remove(self.path + '.part')
            return None
        os.replace(self.path + '.part', self.path)
        return self.path
