#!/usr/bin/env python3
"""Writes mlp8.pt: a state dict of InfluenceSharp's `mlp --widths 8` (1x28x28 -> 8 -> 10) in the
byte layout torch.save produces (PyTorch >= 1.6 zip format, pickle protocol 2), without PyTorch:
archive/data.pkl holds an OrderedDict (with the `_metadata` attribute every nn.Module.state_dict()
carries) of torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks)
calls whose storages are persistent ids ('storage', torch.FloatStorage, key, 'cpu', numel), each
stored raw (little-endian float32) as archive/data/KEY. Values follow a formula the C# test
recomputes: v = sin(0.37 * (i + 1) * (t + 1)) / (t + 2) for flat index i of the t-th tensor.
Usage: python3 torch_save.py OUT.pt   (numpy not needed; standard library only)"""
import collections, io, math, pickle, struct, sys, types, zipfile

# Stand-ins for the globals torch.save references, so that pickle writes the same GLOBAL opcodes.
torch = types.ModuleType("torch"); utils = types.ModuleType("torch._utils")
class FloatStorage: pass
FloatStorage.__module__ = "torch"; torch.FloatStorage = FloatStorage
def _rebuild_tensor_v2(*args): raise RuntimeError("never called")
_rebuild_tensor_v2.__module__ = "torch._utils"; _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
utils._rebuild_tensor_v2 = _rebuild_tensor_v2; torch._utils = utils
sys.modules["torch"] = torch; sys.modules["torch._utils"] = utils

class Storage:
    def __init__(self, key, values): self.key, self.values = key, values

class Tensor:
    def __init__(self, storage, size):
        self.storage, self.size = storage, size
    def __reduce__(self):
        stride, s = [], 1
        for d in reversed(self.size): stride.insert(0, s); s *= d
        return (_rebuild_tensor_v2, (self.storage, 0, tuple(self.size), tuple(stride), False, collections.OrderedDict()))

class Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", FloatStorage, obj.key, "cpu", len(obj.values))
        return None

shapes = [("fc1.weight", [8, 784]), ("fc1.bias", [8]), ("fc2.weight", [10, 8]), ("fc2.bias", [10])]
state = collections.OrderedDict()
storages = []
for t, (name, size) in enumerate(shapes):
    n = math.prod(size)
    values = [math.sin(0.37 * (i + 1) * (t + 1)) / (t + 2) for i in range(n)]
    st = Storage(str(t), values); storages.append(st)
    state[name] = Tensor(st, size)
# nn.Module.state_dict() attaches per-module version metadata.
state._metadata = collections.OrderedDict([("", {"version": 1}), ("fc1", {"version": 1}), ("fc2", {"version": 1})])

buf = io.BytesIO()
Pickler(buf, protocol=2).dump(state)
out = sys.argv[1]
with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as z:
    z.writestr("mlp8/data.pkl", buf.getvalue())
    z.writestr("mlp8/byteorder", "little")
    for st in storages:
        z.writestr(f"mlp8/data/{st.key}", struct.pack(f"<{len(st.values)}f", *st.values))
    z.writestr("mlp8/version", "3\n")
    z.writestr("mlp8/.data/serialization_id", "0123456789012345678901234567890123456789")
