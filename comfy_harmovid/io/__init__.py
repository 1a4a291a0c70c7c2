"""Video in and out: read clips into IMAGE/MASK tensors, stream them in chunks, write them back.

Sources (``read_video``, ``iter_video_chunks``, ``read_mask``, ``iter_mask_chunks``, ``probe_video``):

- any video PyAV can decode (the display rotation of phone videos is applied; 10/12-bit video is
  read at full precision);
- a folder of images (png, jpg, jpeg, webp, tif, tiff, bmp; natural sort, so ``frame2`` comes before
  ``frame10``; hidden files ignored), played at the ``fps`` argument (default 24);
- a single image, as a one-frame clip.

Outputs (``VideoWriter``, ``write_video``), chosen by the path:

- ``.mp4`` / ``.mov``: H.264 (libx264), yuv420p, BT.709, quality by ``crf``. yuv420p needs an even
  width and height: an odd size is padded by one row/column repeating the edge pixels, so the file
  is up to one pixel larger than the frames.
- ``.mkv``: FFV1 lossless in 8-bit RGB, so 8-bit frames read back exactly.
- a path ending in ``/`` or without a suffix: a folder of PNGs ``000000.png``, ``000001.png``, ...

Audio: ``read_video`` names the file a clip's sound can be taken from (``Video.audio_path``);
``VideoWriter(audio_from=...)`` muxes it in, cut to the video's length: AAC/MP3/AC-3 (and in mkv
Opus/Vorbis) packets are copied, other codecs re-encoded (AAC in mp4/mov, FLAC in mkv). PNG folders
hold no audio.

Writes go to a hidden temporary next to the target that is renamed into place only when the output is
complete; after an error the temporary is removed and the target is as it was. An existing output is
refused unless ``overwrite=True``, and even then it is replaced only once the new one is complete.
"""

from .media import IMAGE_EXTENSIONS
from .reading import (
    Video,
    VideoInfo,
    iter_frame_arrays,
    iter_mask_chunks,
    iter_video_chunks,
    probe_video,
    read_mask,
    read_video,
    stack_frames,
)
from .sources import DEFAULT_IMAGE_FPS
from .writing import VIDEO_EXTENSIONS, X264_PRESETS, VideoWriter, uint8_frames, write_video
