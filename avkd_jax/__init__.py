"""avkd-jax: Acoustic and Visual Knowledge Distillation for audio-visual localization."""
