"""Configuration of an adapter fusion (Pfeiffer et al., EACL 2021, https://arxiv.org/abs/2005.00247)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

from adapter_fusion.config import JsonConfig, check_choice, check_positive
from adapter_fusion.fusion.registry import FUSION_METHODS, MethodConfig

M = TypeVar("M", bound=MethodConfig)
DEFAULT_METHOD = "attention"


@dataclasses.dataclass(frozen=True)
class FusionConfig(JsonConfig):
    """A fusion of trained adapters: which adapters, which method, in which layers, and the method's settings.

    Each method owns its settings (a dataclass registered with it, see ``fusion.registry``): they are given as
    keywords, ``FusionConfig(fusion_method="attention", num_attention_heads=8, fusion_dropout=0.1)``, kept in
    ``settings`` and readable as attributes (``config.num_attention_heads``); another method's setting is refused.
    """

    config_type: ClassVar[str] = "fusion"
    nested_fields: ClassVar[tuple[str, ...]] = ("settings",)

    adapter_paths: tuple[str, ...] = ()
    """Directories of saved adapters to load and fuse (named by adapter_names when given, else by their saved
    names)."""
    adapter_names: tuple[str, ...] = ()
    """Names of the adapters to fuse, in order (adapters already in the model, or the names to load
    adapter_paths under)."""
    fusion_method: str = DEFAULT_METHOD
    """How adapters are combined: the name of a registered fusion method (``FUSION_METHODS``; the CLI's --help
    lists them with their settings)."""
    name: str = "fusion"
    """Name of the fusion (used in file names and logs)."""
    fusion_layers: tuple[int, ...] | None = None
    """Indices of the transformer layers that fuse; all layers when unset. In other layers the fused adapters
    are not applied (an empty tuple gives the base model)."""
    temperature: float = 1.0
    """Initial softmax temperature of the fusion weights."""
    temperature_min: float = 1.0
    """Lowest temperature the schedule goes down to."""
    temperature_decay: float = 0.0
    """Amount the trainer lowers the temperature by per optimizer step, down to temperature_min (0: constant)."""
    freeze_adapters_during_fusion: bool = True
    """Keep the fused adapters' weights fixed while the fusion trains."""
    settings: MethodConfig | None = None
    """The method's own settings (its registered ``config_class``); built from the method's keywords when unset."""

    @classmethod
    def option_classes(cls) -> list[tuple[str, type[JsonConfig]]]:
        return [(f"fusion_method={name!r}", method.config_class) for name, method in FUSION_METHODS.items()]

    @classmethod
    def route_keywords(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Gather the method's keywords into ``settings``; refuse another method's, naming the method."""
        kwargs = dict(kwargs)
        every = {name for _, option_class in cls.option_classes() for name in option_class.keyword_names()}
        options = {key: kwargs.pop(key) for key in list(kwargs) if key in every}
        method = kwargs.get("fusion_method", DEFAULT_METHOD)
        if not isinstance(method, str) or method not in FUSION_METHODS.names():
            return kwargs  # __post_init__ refuses the method, listing the registered ones
        refused = cls.inapplicable_options({**options, "fusion_method": method})
        if refused:
            key = next(iter(refused))
            raise ValueError(f"{key}={options[key]!r} does not apply: {refused[key]}")
        config_class = FUSION_METHODS.get(method).config_class
        settings = kwargs.get("settings")
        if isinstance(settings, Mapping):
            settings, options = None, {**settings, **options}
        if settings is None or (type(settings) is not config_class and settings == type(settings)()):
            settings = config_class(**options)  # unset, or the defaults of the method a replace() switched from
        elif type(settings) is not config_class:
            raise ValueError(
                f"settings={settings!r} belong to another method than fusion_method={method!r} "
                f"({config_class.__name__}); give that method's settings or none"
            )
        elif options:
            settings = dataclasses.replace(settings, **config_class.rename_aliases(options))
        kwargs["settings"] = settings
        return kwargs

    @classmethod
    def inapplicable_options(cls, values: dict[str, Any]) -> dict[str, str]:
        method = values.get("fusion_method") or DEFAULT_METHOD
        if not isinstance(method, str) or method not in FUSION_METHODS.names():
            return {}
        own = FUSION_METHODS.get(method).config_class.keyword_names()
        owners = {
            key: name for name, other in FUSION_METHODS.items() for key in other.config_class.keyword_names()
        }
        return {
            key: f"only fusion_method={owners[key]!r} reads it; got fusion_method={method!r}"
            for key in values
            if key in owners and key not in own
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FusionConfig:
        """Also reads configs saved before each method had its own settings: those hold every method's settings
        (at their defaults for the methods not chosen), and only the chosen method's are kept."""
        method = data.get("fusion_method", DEFAULT_METHOD) if isinstance(data, dict) else None
        if isinstance(data, dict) and data.get("library_version") is not None and method in FUSION_METHODS.names():
            own = set(FUSION_METHODS.get(method).config_class.keyword_names())
            others = set(cls.keyword_names()) - {f.name for f in dataclasses.fields(cls)} - own
            data = {key: value for key, value in data.items() if key not in others}
        return super().from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        """Flat, as before methods owned their settings: the common fields and the chosen method's settings."""
        data = super().to_dict()
        data.pop("settings")
        assert self.settings is not None
        settings = self.settings.to_dict()
        data.update({key: value for key, value in settings.items() if key not in ("config_type", "library_version")})
        return data

    def __getattr__(self, name: str) -> Any:
        settings = self.__dict__.get("settings")
        if settings is not None and not name.startswith("_") and name in type(settings).keyword_names():
            return getattr(settings, name)
        for method, registered in FUSION_METHODS.items():
            if not name.startswith("_") and name in registered.config_class.keyword_names():
                raise AttributeError(
                    f"{name} is a setting of fusion_method={method!r}; this config has "
                    f"fusion_method={self.__dict__.get('fusion_method')!r}"
                )
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def settings_of(self, config_class: type[M]) -> M:
        """``settings``, checked to be a ``config_class`` (for a method's builder)."""
        if not isinstance(self.settings, config_class):
            raise TypeError(
                f"{config_class.__name__} needed; this config has fusion_method={self.fusion_method!r} "
                f"({type(self.settings).__name__})"
            )
        return self.settings

    def __post_init__(self) -> None:
        for field in ("adapter_paths", "adapter_names", "fusion_layers"):
            value = getattr(self, field)
            if isinstance(value, list):
                object.__setattr__(self, field, tuple(value))
        for field in ("adapter_paths", "adapter_names"):
            value = getattr(self, field)
            if not isinstance(value, tuple) or not all(isinstance(v, str) and v for v in value):
                raise ValueError(f"{field} must be a sequence of non-empty strings; got {value!r}")
        if self.adapter_paths and self.adapter_names and len(self.adapter_paths) != len(self.adapter_names):
            raise ValueError(
                f"adapter_names ({len(self.adapter_names)} names: {list(self.adapter_names)}) must name every one of "
                f"the {len(self.adapter_paths)} adapter_paths, or be empty"
            )
        if len(set(self.adapter_names)) != len(self.adapter_names):
            raise ValueError(f"adapter_names must be distinct; got {list(self.adapter_names)}")
        check_choice("fusion_method", self.fusion_method, FUSION_METHODS.names())
        if not isinstance(self.name, str) or not self.name or "." in self.name:
            raise ValueError(f"name must be a non-empty string without dots; got {self.name!r}")
        if self.fusion_layers is not None:
            layers = self.fusion_layers
            if not isinstance(layers, tuple) or not all(_is_int(i) and i >= 0 for i in layers):
                raise ValueError(f"fusion_layers must be a sequence of layer indices >= 0, or None; got {layers!r}")
            if len(set(layers)) != len(layers):
                raise ValueError(f"fusion_layers must be distinct; got {list(layers)}")
        check_positive("temperature", self.temperature)
        check_positive("temperature_min", self.temperature_min)
        check_positive("temperature_decay", self.temperature_decay, allow_zero=True)
        if self.temperature_min > self.temperature:
            raise ValueError(
                f"temperature_min must be <= temperature; got temperature_min={self.temperature_min!r} "
                f"and temperature={self.temperature!r}"
            )
        freeze = self.freeze_adapters_during_fusion
        if not isinstance(freeze, bool):
            raise TypeError(f"freeze_adapters_during_fusion must be a bool; got {freeze!r}")
        config_class = FUSION_METHODS.get(self.fusion_method).config_class
        if not isinstance(self.settings, config_class):
            raise TypeError(f"settings must be a {config_class.__name__}; got {self.settings!r}")
        count = len(self.adapter_names) or len(self.adapter_paths)
        if count:
            self.settings.check_adapter_count(count)

    def inapplicable_fields(self) -> dict[str, str]:
        """Settings that only another fusion method reads (each method's ``config_fields``), with why."""
        chosen = FUSION_METHODS.get(self.fusion_method).config_fields
        return {
            field: f"only fusion_method={name!r} reads it; got fusion_method={self.fusion_method!r}"
            for name, method in FUSION_METHODS.items()
            for field in method.config_fields
            if field not in chosen
        }

    def temperature_at(self, step: int) -> float:
        """The scheduled temperature after ``step`` optimizer steps: ``max(temperature - decay * step, min)``."""
        return max(self.temperature - self.temperature_decay * step, self.temperature_min)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
