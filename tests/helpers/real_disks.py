"""Small raw Flickr-SoundNet and VGG-Sound disks, in every accepted layout and format,
with every kind of bad input, and configs that build them."""

import json
import xml.etree.ElementTree as ET

import numpy as np
import soundfile as sf
import tensorflow_datasets as tfds
from PIL import Image

from helpers.configs import load_config
from helpers.media import SR, sine, write_clip


def smooth_image(h, w, seed):
    """A smooth RGB image: JPEG round trips stay within a few levels."""
    small = np.random.default_rng(seed).integers(0, 256, size=(5, 5, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC))


def write_frame(root, id_, h=48, w=64, ext="jpg", seed=0):
    path = root / "frames" / f"{id_}.{ext}"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(smooth_image(h, w, seed)).save(path, quality=95)
    return path


def write_audio(root, id_, rate, seconds, channels=1, ext="wav"):
    """A 440 Hz sine (stereo: gains 1 and 0.5) as 16-bit PCM."""
    s = sine(rate, seconds)
    x = np.stack([s, 0.5 * s], axis=1) if channels == 2 else s
    path = root / "audio" / f"{id_}.{ext}"
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x, rate, subtype="PCM_16")
    return path


def write_video(root, id_, ext="mkv", rate=48000, seconds=3.2, n_frames=24, fps=12):
    (root / "video").mkdir(parents=True, exist_ok=True)
    s = sine(rate, seconds)
    codecs = {"mkv": ("mpeg4", "pcm_s16le"), "mp4": ("libx264", "aac")}[ext]
    return write_clip(
        root / "video" / f"{id_}.{ext}",
        n_frames=n_frames,
        fps=fps,
        audio=(np.stack([s, 0.5 * s]), rate),
        vcodec=codecs[0],
        acodec=codecs[1],
    )


def write_xml(root, id_, boxes, by_name=True):
    """A Flickr annotation written with ElementTree: tags by name, or unnamed children."""
    path = root / "Annotations" / f"{id_}.xml"
    path.parent.mkdir(parents=True, exist_ok=True)
    ann = ET.Element("annotation")
    for box in boxes:
        bbox = ET.SubElement(ET.SubElement(ann, "object"), "bbox")
        ET.SubElement(bbox, "type").text = "sounding"
        for tag, v in zip(("xmin", "ymin", "xmax", "ymax"), box):
            ET.SubElement(bbox, tag if by_name else "c").text = str(v)
    ET.ElementTree(ann).write(path)
    return path


def write_lines(path, lines, newline="\n"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(newline.join(lines).encode() + newline.encode())
    return path


FLICKR_BOXES = {
    "2001": [[10, 20, 120, 200], [12, 25, 118, 190], [0, 30, 140, 256]],
    "2002": [[64, 64, 192, 192], [60, 70, 190, 200], [70, 60, 200, 180]],
    # The second box is garbage (100000 px): dropped; the other two are kept.
    "2005": [[30, 40, 90, 100], [10, 20, 100000, 200], [28, 38, 95, 110]],
}


def write_flickr_disk(root):
    """Train and test clips of every layout and format, good and bad."""
    write_frame(root, "1001", seed=1), write_audio(root, "1001", 16000, 3.5, 1, "wav")
    (
        write_frame(root, "1002", 64, 48, "png", seed=2),
        write_audio(root, "1002", 44100, 4.0, 2, "flac"),
    )
    write_video(root, "1003", "mkv", rate=48000, seconds=3.2)
    write_frame(root, "1004", seed=4), write_audio(root, "1004", SR, 1.3, 1, "wav")
    bad_jpeg = write_frame(root, "1005", seed=5)
    bad_jpeg.write_bytes(bad_jpeg.read_bytes()[:300])
    write_audio(root, "1005", SR, 3.0)
    write_frame(root, "1006", seed=6), (root / "audio" / "1006.wav").write_bytes(b"")
    write_frame(root, "1007", seed=7)  # No audio at all.
    write_frame(root, "1008", seed=8)
    sf.write(root / "audio" / "1008.wav", np.zeros(0, np.int16), SR, subtype="PCM_16")
    # Test clips: 2001 is also in the train list.
    write_frame(root, "2001", seed=11), write_audio(root, "2001", SR, 4.0)
    write_xml(root, "2001", FLICKR_BOXES["2001"])
    write_video(root, "2002", "mp4", rate=44100, seconds=4.0)
    write_xml(root, "2002", FLICKR_BOXES["2002"], by_name=False)
    write_frame(root, "2003", seed=13), write_audio(root, "2003", SR, 3.0)
    (root / "Annotations" / "2003.xml").write_bytes(b"<annotation><object><bbox><xmin>1")
    write_frame(root, "2004", seed=14), write_audio(root, "2004", SR, 3.0)  # No XML.
    write_frame(root, "2005", seed=15), write_audio(root, "2005", 48000, 3.3, 2, "flac")
    write_xml(root, "2005", FLICKR_BOXES["2005"])
    train = ["1001.png", "1002", "1003", "1004", "1005", "1006", "1007", "1008", "2001"]
    write_lines(root / "metadata" / "train.txt", train)
    test = ["2001,0", "2002,5", "2003,0", "2004,0", "2005,0", "2006,0"]
    write_lines(root / "metadata" / "test.csv", test, "\r\n")
    # Under its EZ-VSL name too: what another dataset's config evaluates as 'flickr_test'.
    write_lines(root / "metadata" / "flickr_test.csv", test, "\r\n")
    return root


CORRUPT = -2.8823037615171176e16
VGGSS_ENTRIES = [
    {"file": "ccc_000003", "class": "dog barking", "bbox": [[0.1, 0.2, 0.5, 0.9]]},
    # A corrupt max coordinate, as in the public file: that box is dropped.
    {
        "file": "ddd_000004",
        "class": "x",
        "bbox": [[0.3, 0.4, 0.7, CORRUPT], [0.05, 0.1, 0.4, 1.02]],
    },
    {"file": "eee_000005", "class": "x", "bbox": [[0.6, 0.6, CORRUPT, 0.9]]},  # Left with none.
    {"file": "fff_000006", "class": "x", "bbox": [[0.1, 0.2, 0.3]]},  # Malformed: skipped.
    {"class": "no file name", "bbox": [[0.1, 0.1, 0.2, 0.2]]},
    {"file": "ccc_000003", "class": "duplicate", "bbox": [[0, 0, 1, 1]]},
]


def write_vggsound_disk(root):
    write_video(root, "aaa_000001", "mp4", rate=44100, seconds=4.0, n_frames=20, fps=10)
    write_frame(root, "bbb_000002", seed=21), write_audio(root, "bbb_000002", 48000, 3.5, 2, "flac")
    write_frame(root, "ccc_000003", seed=23), write_audio(root, "ccc_000003", SR, 3.5)
    write_video(root, "ddd_000004", "mkv", rate=16000, seconds=3.5)
    write_frame(root, "eee_000005", seed=25), write_audio(root, "eee_000005", SR, 3.0)
    write_frame(root, "fff_000006", seed=26), write_audio(root, "fff_000006", SR, 3.0)
    write_frame(root, "ggg_000007", seed=27), write_audio(root, "ggg_000007", SR, 3.0)
    write_lines(root / "metadata" / "vggss_train.txt", ["aaa_000001", "bbb_000002", "ccc_000003"])
    test = ["ccc_000003", "ddd_000004", "eee_000005", "fff_000006", "ggg_000007"]
    write_lines(root / "metadata" / "vggss_test.csv", test, "\r\n")
    (root / "metadata" / "vggss.json").write_text(json.dumps(VGGSS_ENTRIES))
    return root


def flickr_config(root, data_dir, **overrides):
    c = load_config("flickr10k")
    c.manual_dir, c.data_dir = str(root), str(data_dir)
    c.dataset_kwargs.train_list = "train.txt"
    c.dataset_kwargs.test_list = "test.csv"
    for k, v in overrides.items():
        c[k] = v
    return c


def vggsound_config(root, data_dir, **overrides):
    c = load_config("vggs10k")
    c.manual_dir, c.data_dir = str(root), str(data_dir)
    c.dataset_kwargs.train_list = "vggss_train.txt"
    for k, v in overrides.items():
        c[k] = v
    return c


def records(builder, split):
    ds = builder.as_dataset(split=split)
    return {r["id"].decode(): r for r in tfds.as_numpy(ds)}
