"""The config stage: `config.toml` parsed once into frozen dataclasses (`schema`)."""

from .parse import load_config, parse_config
from .schema import (
    BatchConfig,
    Config,
    DatasetConfig,
    ImageSpec,
    LogConfig,
    MetadataConfig,
    MetricsConfig,
    PublishConfig,
    SourcesConfig,
    Storage,
    WatchConfig,
    WorkersConfig,
)

__all__ = [
    "BatchConfig",
    "Config",
    "DatasetConfig",
    "ImageSpec",
    "LogConfig",
    "MetadataConfig",
    "MetricsConfig",
    "PublishConfig",
    "SourcesConfig",
    "Storage",
    "WatchConfig",
    "WorkersConfig",
    "load_config",
    "parse_config",
]
