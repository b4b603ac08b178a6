"""Pretraining loop (single process on CPU, DDP across GPUs and nodes under torchrun)."""

from foundation.train.trainer import Trainer, TrainResult

__all__ = ["Trainer", "TrainResult"]
