"""PyTorch <-> Flax NNX weight conversion; the implementation lives in `sslsr.weights.pytorch`.

Kept as the documented entry point: `from_torch(state_dict or .pth/.safetensors, arch, **kw)`,
`to_torch_state_dict(module, arch)`, `load_state_dict(source)` and `ARCHS`.
"""

from sslsr.weights.pytorch import ARCHS, from_torch, load_state_dict, to_torch_state_dict

__all__ = ["ARCHS", "from_torch", "load_state_dict", "to_torch_state_dict"]
