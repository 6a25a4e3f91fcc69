"""detect.py's scored video: the input video with a strip below it that shows the score timeline and a cursor
at the current frame, green below the threshold and red above, encoded by PyAV one frame at a time."""
from fractions import Fraction

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from dataset import write_atomic

GREEN, RED = (40, 190, 70), (230, 45, 45)
BACKGROUND, LINE, CURSOR = (24, 24, 24), (150, 150, 150), (255, 255, 255)
DIM = 0.45  # the bars' shade of their colour, under the brighter top and cursor


def timeline(scores, threshold, width, height):
    """The strip's picture, uint8 [height, width, 3]: each column a bar as high as the highest score of the
    frames it covers, green below the threshold and red above, its top brighter; the threshold dashed.
    Returns (picture, the first frame of each column [width])."""
    starts = np.arange(width) * len(scores) // width
    column = np.maximum.reduceat(scores, starts)  # a column with no frame of its own takes its start's score
    color = np.where((column >= threshold)[:, None], RED, GREEN)
    tops = height - 1 - np.round(column * (height - 1)).astype(int)
    bars = np.arange(height)[:, None] >= tops
    picture = np.where(bars[..., None], np.multiply(color, DIM), BACKGROUND).astype(np.uint8)
    picture[tops, np.arange(width)] = color
    picture[height - 1 - round(threshold * (height - 1)), np.arange(width) // 4 % 2 == 0] = LINE
    return picture, starts


def h264_stream(container, rate, width, height):
    """An H.264 video stream in container: libx264 (preset veryfast: 1.5x the default's speed here) where this
    FFmpeg has it, else mpeg4 at 4 bits per pixel per second (its default, 200 kb/s, blurs); yuv420p, the size
    rounded up to even."""
    codec = 'libx264' if 'libx264' in av.codecs_available else 'mpeg4'
    stream = container.add_stream(codec, rate=rate, options={'preset': 'veryfast'} if codec == 'libx264' else {})
    stream.width, stream.height, stream.pix_fmt = width + width % 2, height + height % 2, 'yuv420p'
    if codec == 'mpeg4':
        stream.bit_rate = 4 * stream.width * stream.height
    return stream


def write_scored_video(video_path, path, scores, fps, threshold):
    """Write video_path with its score strip below to path (MP4, atomically) at fps frames per second:
    libx264 where this FFmpeg has it, else mpeg4; padded to even sizes. Frame i shows scores[i] (a frame
    past the scores' end, the last one); frames are decoded, drawn and encoded one at a time."""

    def write(f):
        with av.open(video_path) as source, av.open(f, 'w', format='mp4') as target:
            decoder = source.streams.video[0]
            decoder.thread_type = 'AUTO'
            width, height = decoder.codec_context.width, decoder.codec_context.height
            strip_height = max(32, height // 5 + height // 5 % 2)
            picture, starts = timeline(scores, threshold, width + width % 2, strip_height)
            strip = Image.fromarray(picture)
            canvas = Image.new('RGB', (width + width % 2, height + height % 2 + strip_height))
            top = canvas.height - strip_height
            font = ImageFont.load_default(size=max(10, strip_height // 4))
            encoder = h264_stream(target, Fraction(fps).limit_denominator(1001), canvas.width, canvas.height)
            for i, frame in enumerate(source.decode(decoder)):
                score = float(scores[min(i, len(scores) - 1)])
                color = RED if score >= threshold else GREEN
                canvas.paste(frame.to_image(), (0, 0))
                canvas.paste(strip, (0, top))
                draw = ImageDraw.Draw(canvas)
                x = np.searchsorted(starts, i, side='right') - 1  # the column that shows frame i
                draw.rectangle((x - 2, top, x + 2, canvas.height - 1), fill=color, outline=CURSOR)
                draw.text((4, top + 2), f'{i / fps:.1f} s  {score:.2f}', fill=color, font=font,
                          stroke_width=2, stroke_fill=BACKGROUND)
                out = av.VideoFrame.from_image(canvas)
                out.pts = i
                target.mux(encoder.encode(out))
            target.mux(encoder.encode(None))

    write_atomic(path, write)
