"""The model catalog: providers (how to reach them), models (assumed quality and latency)
and profiles (ranked candidates). Bundled as ``catalog.yaml``; a user file replaces it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from casm_dagster.contracts.yaml12 import load_config

BUNDLED = Path(__file__).resolve().parent / "catalog.yaml"
PROFILES: tuple[str, ...] = ("cheap", "code_mid", "reasoning_low", "reasoning_high")  # weakest first
OFFLINE_PROVIDER, OFFLINE_MODEL = "offline", "deterministic"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProviderInfo(_Strict):
    sdk: Literal["openai", "anthropic"]
    key_env: Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_]*$")]
    base_url_env: Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_]*$")]
    default_base_url: str | None = None  # None: the SDK's own default


class ModelInfo(_Strict):
    quality: Annotated[float, Field(ge=0, le=1)]
    latency_ms: Annotated[int, Field(ge=0)]


class CatalogModel(_Strict):
    catalog_version: Annotated[str, Field(min_length=1)]
    providers: dict[str, ProviderInfo]
    models: dict[Annotated[str, Field(pattern=r"^[a-z0-9-]+/.+$")], ModelInfo]
    profiles: dict[Literal["cheap", "code_mid", "reasoning_low", "reasoning_high"], list[str]]

    @model_validator(mode="after")
    def _consistent(self) -> CatalogModel:
        for name in PROFILES:
            if name not in self.profiles:
                raise ValueError(f"profile {name} is missing")
        for profile, keys in self.profiles.items():
            for key in keys:
                if key not in self.models:
                    raise ValueError(f"profile {profile} lists {key}, which is not in models")
        for key in self.models:
            provider = key.split("/", 1)[0]
            if provider not in self.providers:
                raise ValueError(f"model {key}: provider {provider} is not in providers")
        return self


@dataclass(frozen=True)
class Candidate:
    provider: str
    model: str
    profile: str
    rank: int  # position in the profile's list (0 = first choice)
    quality: float
    latency_ms: int

    @property
    def key(self) -> str:
        return f"{self.provider}/{self.model}"


@dataclass(frozen=True)
class Catalog:
    model: CatalogModel
    path: Path

    @property
    def version(self) -> str:
        return self.model.catalog_version

    def candidates(self, profile: str) -> list[Candidate]:
        out = []
        for rank, key in enumerate(self.model.profiles[profile]):  # type: ignore[index]
            provider, model = key.split("/", 1)
            info = self.model.models[key]
            out.append(Candidate(provider, model, profile, rank, info.quality, info.latency_ms))
        return out

    def available(self, env: Mapping[str, str] | None = None) -> set[str]:
        """Providers whose API key is set (a key is what makes a provider usable)."""
        env = os.environ if env is None else env
        return {name for name, p in self.model.providers.items() if env.get(p.key_env)}


def lower_profile(profile: str) -> str | None:
    i = PROFILES.index(profile)
    return PROFILES[i - 1] if i > 0 else None


def higher_profile(profile: str) -> str:
    i = PROFILES.index(profile)
    return PROFILES[min(i + 1, len(PROFILES) - 1)]


def load_catalog(path: Path | None = None) -> Catalog:
    path = path or BUNDLED
    return Catalog(load_config(path, CatalogModel, "model catalog")[0], path)
