"""Clips written with PyAV (frame k flat grey `grey(k)`) and the sines they carry."""

import av
import numpy as np

SR = 22050
N3 = 3 * SR


def grey(k):
    """Frame k's grey level: 10 apart, so a decoded frame (±3 after yuv420) names its index."""
    return 10 * k + 5


def sine(rate, seconds, f=440.0, phase=0.3, amp=0.5):
    t = np.arange(round(rate * seconds)) / rate
    return amp * np.sin(2 * np.pi * f * t + phase)


def write_clip(
    path, n_frames=24, fps=12, size=(64, 48), audio=None, vcodec="libx264", acodec="aac"
):
    """A clip whose frame k is flat grey `grey(k)`; `audio` = (float [C, T], rate) or None.

    PCM codecs get int16 samples (round(x * 32767)), the others float planar.
    """
    w, h = size
    with av.open(str(path), "w") as c:
        vs = c.add_stream(vcodec, rate=fps) if n_frames else None
        if vs is not None:
            vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        if audio is not None:
            x, rate = audio
            layout = "stereo" if x.shape[0] == 2 else "mono"
            st = c.add_stream(acodec, rate=rate, layout=layout)
        for k in range(n_frames):
            frame = av.VideoFrame.from_ndarray(np.full((h, w, 3), grey(k), np.uint8), "rgb24")
            for p in vs.encode(frame):
                c.mux(p)
        if vs is not None:
            for p in vs.encode():
                c.mux(p)
        if audio is not None:
            pcm = acodec.startswith("pcm_")
            step = st.codec_context.frame_size or 1024
            for i in range(0, x.shape[1], step):
                chunk = x[:, i : i + step]
                if pcm:
                    data = np.round(chunk * 32767).astype(np.int16).T.reshape(1, -1)
                    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), "s16", layout)
                else:
                    frame = av.AudioFrame.from_ndarray(
                        np.ascontiguousarray(chunk, np.float32), "fltp", layout
                    )
                frame.sample_rate, frame.pts = rate, i
                for p in st.encode(frame):
                    c.mux(p)
            for p in st.encode():
                c.mux(p)
    return path


def centre_sine(n_in, rate, gain=1.0, f=440.0, phase=0.3, amp=0.5):
    """The analytic 22,050 Hz sine at the centre 3 s of a clip of n_in samples at `rate`."""
    n_res = int(np.ceil(n_in * SR / rate))
    k = np.arange(n_res // 2 - N3 // 2, n_res // 2 - N3 // 2 + N3)
    return gain * amp * np.sin(2 * np.pi * f * k / SR + phase) * 32767
