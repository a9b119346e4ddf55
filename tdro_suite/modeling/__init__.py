"""The Encoder (HF backbone + pooling + normalisation + prompts + LoRA), losses and distributed gather.

`Encoder` loads on first use, so reading `tdro_suite.modeling.config` (as `--help` does) imports no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tdro_suite.common.lazy import lazy_exports

if TYPE_CHECKING:
    from tdro_suite.modeling.encoder import Encoder

__all__ = ["Encoder"]
__getattr__ = lazy_exports(__name__, {"Encoder": "tdro_suite.modeling.encoder"})
