"""Message classes for the few TensorFlow/Keras protobuf messages a SavedModel reader needs.

The classes are built at first use by the `protobuf` package from descriptors written here
(field names and numbers as in TensorFlow's `.proto` files), so reading a SavedModel needs
neither TensorFlow nor its generated modules. Only the fields tfless reads are declared;
protobuf skips the others. Malformed bytes raise ModelFormatError naming the file.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from ..errors import ModelFormatError

PACKAGE = "tfless_tf"

# message name -> [(field name, number, type, repeated, message type name or None)]
# Kinds: int32, int64, fixed32, bool, string, bytes, or a message name. Enums are read as
# int32 (same wire encoding); repeated sub-messages tfless only counts are read as bytes.
_MESSAGES: dict[str, list[tuple[str, int, str, bool]]] = {
    # tf_keras/protobuf/saved_metadata.proto
    "SavedMetadata": [("nodes", 1, "SavedObject", True)],
    "SavedObject": [("node_id", 2, "int32", False), ("node_path", 3, "string", False),
                    ("identifier", 4, "string", False), ("metadata", 5, "string", False)],
    # tensorflow/core/protobuf/trackable_object_graph.proto
    "TrackableObjectGraph": [("nodes", 1, "TrackableObject", True)],
    "TrackableObject": [("children", 1, "ObjectReference", True),
                        ("attributes", 2, "SerializedTensor", True)],
    "ObjectReference": [("node_id", 1, "int32", False), ("local_name", 2, "string", False)],
    "SerializedTensor": [("name", 1, "string", False), ("full_name", 2, "string", False),
                         ("checkpoint_key", 3, "string", False)],
    # tensorflow/core/protobuf/tensor_bundle.proto
    "BundleHeaderProto": [("num_shards", 1, "int32", False), ("endianness", 2, "int32", False)],
    "BundleEntryProto": [("dtype", 1, "int32", False), ("shape", 2, "TensorShapeProto", False),
                         ("shard_id", 3, "int32", False), ("offset", 4, "int64", False),
                         ("size", 5, "int64", False), ("crc32c", 6, "fixed32", False),
                         ("slices", 7, "bytes", True)],
    # tensorflow/core/framework/tensor_shape.proto
    "TensorShapeProto": [("dim", 2, "Dim", True), ("unknown_rank", 3, "bool", False)],
    "Dim": [("size", 1, "int64", False), ("name", 2, "string", False)],
}


@cache
def _classes() -> dict[str, Any]:
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    scalar = {"int32": F.TYPE_INT32, "int64": F.TYPE_INT64, "fixed32": F.TYPE_FIXED32,
              "bool": F.TYPE_BOOL, "string": F.TYPE_STRING, "bytes": F.TYPE_BYTES}
    file = descriptor_pb2.FileDescriptorProto(name="tfless_tf.proto", package=PACKAGE,
                                              syntax="proto3")
    for name, fields in _MESSAGES.items():
        msg = file.message_type.add(name=name)
        for field_name, number, kind, repeated in fields:
            field = msg.field.add(name=field_name, number=number,
                                  label=F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL)
            if kind in scalar:
                field.type = scalar[kind]
            else:
                field.type = F.TYPE_MESSAGE
                field.type_name = f".{PACKAGE}.{kind}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.{name}"))
            for name in _MESSAGES}


def parse(message: str, data: bytes, where: str) -> Any:
    """Parse `data` as the named message; ModelFormatError (naming `where`) if malformed."""
    from google.protobuf.message import DecodeError

    msg = _classes()[message]()
    try:
        msg.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise ModelFormatError(f"{where}: not a valid {message} protobuf message: {exc}") from exc
    return msg
