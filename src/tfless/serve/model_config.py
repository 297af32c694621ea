"""What to serve: one model file, a TF Serving base directory, or a model_config_list file.

A base directory holds one subdirectory per integer version (`<base>/<version>/<model
file>`), as TF Serving lays them out. A config file is TF Serving's ModelServerConfig in
protobuf text format (`model_config_list { config { name: ... base_path: ... } }`) or the
same message in protobuf's JSON mapping; both are parsed by `protobuf` against the fields
tfless uses (name, base_path, model_platform, model_version_policy, version_labels), and
fields TF Serving knows but tfless does not use (logging_config, ...) are ignored.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import ModelFormatError

MODEL_SUFFIXES = (".keras", ".h5", ".hdf5", ".tflite", ".pb")  # .pb: frozen GraphDef
SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")


@dataclass(frozen=True)
class VersionPolicy:
    """TF Serving's ServableVersionPolicy: the latest N versions, all, or specific ones."""

    kind: str = "latest"
    num_versions: int = 1
    versions: tuple[int, ...] = ()

    def select(self, on_disk: Iterable[int]) -> list[int]:
        found = sorted(set(on_disk), reverse=True)
        if self.kind == "all":
            return found
        if self.kind == "specific":
            return [v for v in found if v in self.versions]
        return found[: max(1, self.num_versions)]


@dataclass(frozen=True)
class ModelSource:
    """One served model. `single` means base_path is the model itself, served as version 1."""

    name: str
    base_path: Path
    policy: VersionPolicy = VersionPolicy()
    labels: dict[str, int] = field(default_factory=dict)
    single: bool = False


def is_single_model(path: Path) -> bool:
    """A model file or a SavedModel directory (as opposed to a base directory of versions)."""
    if path.is_file():
        return True
    return any((path / name).exists() for name in SAVED_MODEL_FILES)


def version_dirs(base: Path) -> dict[int, Path]:
    """Integer-named subdirectories; others (e.g. a '.tmp' copy in progress) are ignored."""
    try:
        entries = list(base.iterdir())
    except OSError as exc:
        raise ModelFormatError(f"{base}: cannot list the model base directory: {exc}") from exc
    return {int(p.name): p for p in entries
            if p.name.isascii() and p.name.isdigit() and p.is_dir()}


def model_file_in(version_dir: Path) -> tuple[Path, Path | None]:
    """The model to load from a version directory: (model path, weights path or None)."""
    if is_single_model(version_dir):
        return version_dir, None
    files = sorted(p for p in version_dir.iterdir() if p.is_file() and not p.name.startswith("."))
    jsons = [p for p in files if p.suffix.lower() == ".json"]
    models = [p for p in files if p.suffix.lower() in MODEL_SUFFIXES]
    if len(jsons) == 1 and len(models) == 1 and models[0].suffix.lower() in (".h5", ".hdf5"):
        return jsons[0], models[0]
    if len(models) == 1 and not jsons:
        return models[0], None
    names = [p.name for p in files] or "nothing"
    raise ModelFormatError(
        f"{version_dir}: expected one model file ({', '.join(MODEL_SUFFIXES)}), an architecture "
        f".json with one weights .h5, or a SavedModel; found {names}"
    )


def sources_from_path(path: str | Path, name: str = "default") -> list[ModelSource]:
    """PATH from the command line: one model file (version 1) or a base directory."""
    p = Path(path).expanduser().resolve()
    if not p.exists():
        raise ModelFormatError(f"{path}: no such file or directory")
    if is_single_model(p):
        return [ModelSource(name, p, single=True)]
    if not version_dirs(p):
        raise ModelFormatError(
            f"{path}: is neither a model file nor a base directory with integer version "
            f"subdirectories (<base>/1/model.keras, <base>/2/model.keras, ...)"
        )
    return [ModelSource(name, p)]


def read_model_config_file(path: str | Path) -> list[ModelSource]:
    """Models from a ModelServerConfig file (protobuf text format or its JSON mapping)."""
    from google.protobuf import json_format, text_format

    p = Path(path)
    try:
        text = p.read_text(encoding="utf8")
    except OSError as exc:
        raise ModelFormatError(f"{path}: cannot read the model config file: {exc}") from exc
    message = _config_message_class()()
    try:
        if text.lstrip().startswith("{"):
            json_format.Parse(text, message, ignore_unknown_fields=True)
        else:
            text_format.Parse(text, message, allow_unknown_field=True)
    except (text_format.ParseError, json_format.ParseError) as exc:
        raise ModelFormatError(f"{path}: not a valid model_config_list: {exc}") from exc
    configs = list(message.model_config_list.config)
    if not configs:
        raise ModelFormatError(f"{path}: model_config_list has no config entries")
    sources = [_source_from_config(c, p.parent, path) for c in configs]
    names = [s.name for s in sources]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ModelFormatError(f"{path}: model names must be unique; repeated: {duplicates}")
    return sources


def _source_from_config(config: Any, here: Path, where: str | Path) -> ModelSource:
    if not config.name:
        raise ModelFormatError(f"{where}: a config entry has no name")
    if not config.base_path:
        raise ModelFormatError(f"{where}: model '{config.name}' has no base_path")
    if config.model_platform not in ("", "tensorflow", "keras", "tfless"):
        raise ModelFormatError(
            f"{where}: model '{config.name}': model_platform '{config.model_platform}' is not "
            "served by tfless; use 'tensorflow' or leave it out"
        )
    base = Path(config.base_path).expanduser()
    base = (here / base if not base.is_absolute() else base).resolve()
    if not base.exists():
        raise ModelFormatError(f"{where}: model '{config.name}': base_path {base} does not exist")
    policy_msg = config.model_version_policy
    choice = policy_msg.WhichOneof("policy_choice")
    if choice == "all":
        policy = VersionPolicy("all")
    elif choice == "specific":
        if not policy_msg.specific.versions:
            raise ModelFormatError(
                f"{where}: model '{config.name}': specific version policy lists no versions")
        policy = VersionPolicy("specific", versions=tuple(int(v) for v in policy_msg.specific.versions))
    else:
        n = policy_msg.latest.num_versions if choice == "latest" else 1
        policy = VersionPolicy("latest", num_versions=max(1, int(n)))
    labels = {str(k): int(v) for k, v in config.version_labels.items()}
    return ModelSource(config.name, base, policy, labels, single=is_single_model(base))


@lru_cache(maxsize=1)
def _config_message_class() -> Any:
    """The ModelServerConfig message class, built from a descriptor of the fields we read
    (names and numbers as in tensorflow_serving/config/model_server_config.proto)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    pkg = "tensorflow.serving"
    file = descriptor_pb2.FileDescriptorProto(
        name="tfless_model_server_config.proto", package=pkg, syntax="proto3")

    def add(msg: Any, name: str, number: int, kind: int, repeated: bool = False,
            type_name: str = "", oneof: int | None = None) -> None:
        f = msg.field.add(name=name, number=number, type=kind,
                          label=F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL)
        if type_name:
            f.type_name = f".{pkg}.{type_name}"
        if oneof is not None:
            f.oneof_index = oneof

    policy = file.message_type.add(name="ServableVersionPolicy")
    add(policy.nested_type.add(name="Latest"), "num_versions", 1, F.TYPE_UINT32)
    policy.nested_type.add(name="All")
    add(policy.nested_type.add(name="Specific"), "versions", 1, F.TYPE_INT64, repeated=True)
    policy.oneof_decl.add(name="policy_choice")
    for number, choice in ((100, "Latest"), (101, "All"), (102, "Specific")):
        add(policy, choice.lower(), number, F.TYPE_MESSAGE,
            type_name=f"ServableVersionPolicy.{choice}", oneof=0)

    config = file.message_type.add(name="ModelConfig")
    add(config, "name", 1, F.TYPE_STRING)
    add(config, "base_path", 2, F.TYPE_STRING)
    add(config, "model_platform", 4, F.TYPE_STRING)
    add(config, "model_version_policy", 7, F.TYPE_MESSAGE, type_name="ServableVersionPolicy")
    entry = config.nested_type.add(name="VersionLabelsEntry")
    entry.options.map_entry = True
    add(entry, "key", 1, F.TYPE_STRING)
    add(entry, "value", 2, F.TYPE_INT64)
    add(config, "version_labels", 8, F.TYPE_MESSAGE, repeated=True,
        type_name="ModelConfig.VersionLabelsEntry")

    add(file.message_type.add(name="ModelConfigList"), "config", 1, F.TYPE_MESSAGE,
        repeated=True, type_name="ModelConfig")
    add(file.message_type.add(name="ModelServerConfig"), "model_config_list", 1,
        F.TYPE_MESSAGE, type_name="ModelConfigList")

    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{pkg}.ModelServerConfig"))
