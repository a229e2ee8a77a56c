"""What the tests share that is not a fixture (the fixtures are in tests/conftest.py).

`paths`: the repository; `configs`: the test configs and a random batch; `media`: clips,
sines and grey frames written with PyAV; `real_disks`: small raw Flickr-SoundNet and
VGG-Sound disks; `hints`: fake teacher hint shards; `torch_reference`: PyTorch reference
models with random weights; `main_runs`: `python -m avkd_jax.main` in subprocesses (the
multi-process and preemption tests). `tests/` is on sys.path (pytest.ini's `pythonpath`;
the config files the tests write for subprocesses insert it), so they import as
`helpers.<module>`.
"""
