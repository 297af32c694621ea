"""Message classes for the TensorFlow/Keras protobuf messages tfless's readers need.

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
    # tensorflow/core/protobuf/saved_model.proto, meta_graph.proto. Map fields are declared as
    # repeated key (1) / value (2) entry messages, which is their wire encoding.
    "SavedModel": [("saved_model_schema_version", 1, "int64", False),
                   ("meta_graphs", 2, "MetaGraphDef", True)],
    "MetaGraphDef": [("meta_info_def", 1, "MetaInfoDef", False),
                     ("graph_def", 2, "GraphDef", False),
                     ("signature_def", 5, "SignatureDefEntry", True),
                     ("object_graph_def", 7, "SavedObjectGraph", False)],
    "MetaInfoDef": [("tags", 4, "string", True), ("tensorflow_version", 5, "string", False)],
    "SignatureDefEntry": [("key", 1, "string", False), ("value", 2, "SignatureDef", False)],
    "SignatureDef": [("inputs", 1, "TensorInfoEntry", True),
                     ("outputs", 2, "TensorInfoEntry", True),
                     ("method_name", 3, "string", False)],
    "TensorInfoEntry": [("key", 1, "string", False), ("value", 2, "TensorInfo", False)],
    "TensorInfo": [("name", 1, "string", False), ("dtype", 2, "int32", False),
                   ("tensor_shape", 3, "TensorShapeProto", False),
                   ("coo_sparse", 4, "bytes", False), ("composite_tensor", 5, "bytes", False)],
    # tensorflow/core/framework/graph.proto, node_def.proto, attr_value.proto, tensor.proto
    "GraphDef": [("node", 1, "NodeDef", True), ("library", 2, "FunctionDefLibrary", False)],
    "NodeDef": [("name", 1, "string", False), ("op", 2, "string", False),
                ("input", 3, "string", True), ("device", 4, "string", False),
                ("attr", 5, "AttrEntry", True)],
    "AttrEntry": [("key", 1, "string", False), ("value", 2, "AttrValue", False)],
    "AttrValue": [("list", 1, "ListValue", False), ("s", 2, "bytes", False),
                  ("i", 3, "int64", False), ("f", 4, "float", False), ("b", 5, "bool", False),
                  ("type", 6, "int32", False), ("shape", 7, "TensorShapeProto", False),
                  ("tensor", 8, "TensorProto", False), ("placeholder", 9, "string", False),
                  ("func", 10, "NameAttrList", False)],
    "ListValue": [("s", 2, "bytes", True), ("i", 3, "int64", True), ("f", 4, "float", True),
                  ("b", 5, "bool", True), ("type", 6, "int32", True),
                  ("shape", 7, "TensorShapeProto", True), ("tensor", 8, "TensorProto", True),
                  ("func", 9, "NameAttrList", True)],
    "NameAttrList": [("name", 1, "string", False), ("attr", 2, "AttrEntry", True)],
    "TensorProto": [("dtype", 1, "int32", False), ("tensor_shape", 2, "TensorShapeProto", False),
                    ("tensor_content", 4, "bytes", False), ("float_val", 5, "float", True),
                    ("double_val", 6, "double", True), ("int_val", 7, "int32", True),
                    ("string_val", 8, "bytes", True), ("int64_val", 10, "int64", True),
                    ("bool_val", 11, "bool", True), ("half_val", 13, "int32", True),
                    ("uint32_val", 16, "uint32", True), ("uint64_val", 17, "uint64", True)],
    # tensorflow/core/framework/function.proto, op_def.proto
    "FunctionDefLibrary": [("function", 1, "FunctionDef", True)],
    "FunctionDef": [("signature", 1, "OpDef", False), ("node_def", 3, "NodeDef", True),
                    ("ret", 4, "StringEntry", True), ("attr", 5, "AttrEntry", True)],
    "StringEntry": [("key", 1, "string", False), ("value", 2, "string", False)],
    "OpDef": [("name", 1, "string", False), ("input_arg", 2, "ArgDef", True),
              ("output_arg", 3, "ArgDef", True)],
    "ArgDef": [("name", 1, "string", False), ("type", 3, "int32", False),
               ("type_attr", 4, "string", False), ("number_attr", 5, "string", False),
               ("type_list_attr", 6, "string", False)],
    # tensorflow/core/protobuf/saved_object_graph.proto
    "SavedObjectGraph": [("nodes", 1, "SavedGraphObject", True),
                         ("concrete_functions", 2, "ConcreteFunctionEntry", True)],
    "SavedGraphObject": [("children", 1, "ObjectReference", True),
                         ("user_object", 4, "bytes", False), ("asset", 5, "bytes", False),
                         ("function", 6, "SavedFunction", False),
                         ("variable", 7, "SavedVariable", False),
                         ("bare_concrete_function", 8, "SavedBareConcreteFunction", False),
                         ("constant", 9, "SavedConstant", False),
                         ("resource", 10, "bytes", False),
                         ("captured_tensor", 12, "CapturedTensor", False)],
    "SavedFunction": [("concrete_functions", 1, "string", True)],
    "SavedBareConcreteFunction": [("concrete_function_name", 1, "string", False)],
    "SavedVariable": [("dtype", 1, "int32", False), ("shape", 2, "TensorShapeProto", False),
                      ("name", 6, "string", False)],
    "SavedConstant": [("operation", 1, "string", False)],
    "CapturedTensor": [("name", 1, "string", False), ("concrete_function", 2, "string", False)],
    "ConcreteFunctionEntry": [("key", 1, "string", False),
                              ("value", 2, "SavedConcreteFunction", False)],
    "SavedConcreteFunction": [("bound_inputs", 2, "int32", True)],
}

# message name -> (oneof name, its member fields): which member is set is read with
# WhichOneof (a proto3 scalar outside a oneof cannot tell "0" from "absent").
_ONEOFS: dict[str, tuple[str, frozenset[str]]] = {
    "AttrValue": ("value", frozenset({"list", "s", "i", "f", "b", "type", "shape", "tensor",
                                      "placeholder", "func"})),
    "SavedGraphObject": ("kind", frozenset({"user_object", "asset", "function", "variable",
                                            "bare_concrete_function", "constant", "resource",
                                            "captured_tensor"})),
}


@cache
def _classes() -> dict[str, Any]:
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    scalar = {"int32": F.TYPE_INT32, "int64": F.TYPE_INT64, "fixed32": F.TYPE_FIXED32,
              "uint32": F.TYPE_UINT32, "uint64": F.TYPE_UINT64, "float": F.TYPE_FLOAT,
              "double": F.TYPE_DOUBLE, "bool": F.TYPE_BOOL, "string": F.TYPE_STRING,
              "bytes": F.TYPE_BYTES}
    file = descriptor_pb2.FileDescriptorProto(name="tfless_tf.proto", package=PACKAGE,
                                              syntax="proto3")
    for name, fields in _MESSAGES.items():
        msg = file.message_type.add(name=name)
        oneof_name, members = _ONEOFS.get(name, ("", frozenset()))
        if oneof_name:
            msg.oneof_decl.add(name=oneof_name)
        for field_name, number, kind, repeated in fields:
            field = msg.field.add(name=field_name, number=number,
                                  label=F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL)
            if field_name in members:
                field.oneof_index = 0
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
