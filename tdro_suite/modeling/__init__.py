"""The Encoder (HF backbone + pooling + normalisation + prompts + LoRA), losses and distributed gather."""

from tdro_suite.modeling.encoder import Encoder

__all__ = ["Encoder"]
