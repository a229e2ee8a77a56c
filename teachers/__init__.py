"""The PyTorch side of avkd-jax: frozen teachers and their hint extraction (docs/design.md, Data flow; Model and losses).

Never imports jax. Modules:
  extract.py         python -m teachers.extract: TFDS data shards → hint shards
  detr.py            DETR visual hints (decoder cross-attention map, or backbone features)
  panns.py           PANNs Cnn14 audio hints (2048-d embedding)
  synthetic.py       small teachers for the synthetic world, trained here with labels
  convert_resnet.py  torchvision ResNet18 weights → .npz for the JAX student
  torch_resnet.py    torchvision's ResNet18, written out (torchvision is not required)
  torch_avc.py       the authors' AVC student and its train step in PyTorch (a reference)
  data.py common.py  reading prepared TFDS splits; checkpoints, devices, the Teacher record
"""

import os

# OpenMP threads that spin while they wait stall PyTorch as soon as another process holds
# one of the cores, and sleeping costs little on an idle machine. It only takes effect when
# set before torch loads its OpenMP runtime, i.e. in the CLIs.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# TensorFlow only reads and writes files here: its start-up banner is noise.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
