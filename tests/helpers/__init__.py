"""What the tests share that is not a fixture (the fixtures are in tests/conftest.py).

`paths`: the repository; `configs`: the test configs and a random batch; `media`: clips,
sines and grey frames written with PyAV; `real_disks`: small raw Flickr-SoundNet and
VGG-Sound disks; `hints`: fake teacher hint shards; `torch_reference`: PyTorch reference
models with random weights. `tests/` is on sys.path (pytest puts the rootdir conftest's
folder there; subprocess config files insert it), so they import as `helpers.<module>`.
"""
