"""Reading a .tflite flatbuffer: operators, constant tensors and their sparsity as stored.

Example:

>>> info = inspect_tflite(open("model.tflite", "rb").read())
>>> info["ops"], info["integer_only"]
(['FULLY_CONNECTED', 'SOFTMAX'], True)
"""

import numpy as np
from ai_edge_litert import schema_py_generated as schema  # the TFLite schema, without importing TensorFlow

_OP_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
_TYPE_NAMES = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
_NUMPY_TYPES = {"FLOAT32": np.float32, "FLOAT16": np.float16, "INT8": np.int8, "UINT8": np.uint8,
                "INT16": np.int16, "INT32": np.int32, "INT64": np.int64}
_INTEGER_TYPES = {"INT8", "UINT8", "INT16", "INT32", "INT64", "BOOL"}
TFLITE_IDENTIFIER = b"TFL3"


def is_tflite(content):
    """True if `content` carries the TFLite flatbuffer file identifier."""
    return len(content) >= 8 and content[4:8] == TFLITE_IDENTIFIER


def op_name(code):
    """An operator code's name: "CONV_2D", or "CUSTOM:name"."""
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
    if builtin == schema.BuiltinOperator.CUSTOM:
        return f"CUSTOM:{code.customCode.decode() if code.customCode else '?'}"
    return _OP_NAMES.get(builtin, str(builtin))


def inspect_tflite(content):
    """Ops, per-constant-tensor sparsity and integer-only status of a .tflite model."""
    if not is_tflite(content):
        raise ValueError("Not a TFLite flatbuffer (missing 'TFL3' identifier): the file is corrupt or not a .tflite.")
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(content, 0))
    ops, tensors, float_ops = [], [], set()
    for graph in model.subgraphs:
        for op in graph.operators:
            name = op_name(model.operatorCodes[op.opcodeIndex])
            ops.append(name)
            types = {_TYPE_NAMES.get(graph.tensors[i].type) for i in [*op.inputs, *op.outputs] if i >= 0}
            boundary = name in ("QUANTIZE", "DEQUANTIZE")  # float I/O converts at the edges only
            if not boundary and not types <= _INTEGER_TYPES:
                float_ops.add(name)
        for tensor in graph.tensors:
            data = model.buffers[tensor.buffer].data if tensor.buffer < len(model.buffers) else None
            if data is None or len(data) == 0:
                continue
            tensors.append(_tensor_info(tensor, np.asarray(data, dtype=np.uint8)))
    return {
        "ops": sorted(set(ops)),
        "op_count": len(ops),
        "integer_only": not float_ops,
        "float_ops": sorted(float_ops),
        "tensors": tensors,
    }


def _tensor_info(tensor, raw):
    dtype_name = _TYPE_NAMES.get(tensor.type, str(tensor.type))
    shape = [int(d) for d in (tensor.shape if tensor.shape is not None else [])]
    size = int(np.prod(shape)) if shape else 1
    dtype = _NUMPY_TYPES.get(dtype_name)
    sparse = tensor.sparsity is not None
    if sparse:
        stored = raw.size // np.dtype(dtype).itemsize if dtype else raw.size
        sparsity = 1.0 - stored / size if size else 0.0  # only the kept blocks are stored
    elif dtype is not None and raw.size == size * np.dtype(dtype).itemsize:
        sparsity = float(np.mean(raw.view(dtype) == 0))
    else:
        sparsity = None
    name = tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name)
    return {"name": name, "shape": shape, "dtype": dtype_name, "bytes": int(raw.size),
            "sparse_encoded": sparse, "sparsity": sparsity}
