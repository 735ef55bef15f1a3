"""Everything a stage needs to call models for one run: the router, wired to the run's
settings (as recorded in its effective config), its budget (minus what earlier stages
spent), its telemetry and — for a replay — the original run's recorded answers."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from casm_dagster.contracts.manifest import TemplateManifest
from casm_dagster.contracts.run import CatalogPin, ModelSettings, PricesPin, RunSpec
from casm_dagster.cost.budget import BudgetLedger
from casm_dagster.cost.prices import PriceRegistry, load_prices
from casm_dagster.cost.usage import Usage
from casm_dagster.errors import ConfigError
from casm_dagster.llm.catalog import Catalog, load_catalog
from casm_dagster.llm.providers import Clients, Prompt, ProviderError, Reply, prompt_sha256
from casm_dagster.llm.router import DEFAULT_FALLBACKS, Router, RoutingSettings
from casm_dagster.llm.telemetry import REPLIES_FILE, RunTelemetry, read_jsonl, spent
from casm_dagster.run.journal import Journal

FORCE_OFFLINE_ENV = "CASM_MODEL_PROVIDER"  # "offline": never call a model, keys or not
PRICES_ENV, CATALOG_ENV = "CASM_PRICES", "CASM_MODEL_CATALOG"


def model_settings(
    manifest: TemplateManifest,
    *,
    strategy: str | None = None,
    budget_usd: float | None = None,
    prices_path: str | None = None,
    catalog_path: str | None = None,
    proof_mode: bool | None = None,
    replay_of: dict[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    routing_policy: dict[str, Any] | None = None,
) -> ModelSettings:
    """``routing_policy``: the latest diurnal optimization (``routing_view``); a replay
    reuses the one its original run recorded."""
    env = os.environ if env is None else env
    prices = load_prices(Path(p) if (p := prices_path or env.get(PRICES_ENV)) else None)
    catalog = load_catalog(Path(c) if (c := catalog_path or env.get(CATALOG_ENV)) else None)
    if replay_of is not None:
        available = list(replay_of["available_providers"])
        offline_reason = replay_of["offline_reason"]
    elif env.get(FORCE_OFFLINE_ENV, "").lower() == "offline":
        available, offline_reason = [], "offline_forced"
    elif env.get(FORCE_OFFLINE_ENV):
        raise ConfigError(f"{FORCE_OFFLINE_ENV}={env[FORCE_OFFLINE_ENV]!r}: the only accepted value is 'offline'")
    else:
        available, offline_reason = sorted(catalog.available(env)), "offline_no_provider_key"
    routing = manifest.routing
    budget = routing.budget.max_usd_per_run if budget_usd is None else budget_usd
    return ModelSettings(
        available_providers=available,
        offline_reason=offline_reason,
        strategy=strategy or routing.strategy,
        budget_usd=str(budget),
        max_usd_per_task=str(routing.budget.max_usd_per_task_default or budget),
        quality_floor=routing.quality_floor.min_confidence,
        latency_slo_ms=routing.latency_slo_ms,
        fallbacks={**DEFAULT_FALLBACKS, **{f.on: f.action for f in routing.fallbacks}},
        prices=PricesPin(path=str(prices.path), version=prices.version, sha256=prices.sha256),
        catalog=CatalogPin(path=str(catalog.path), version=catalog.version),
        proof_mode=manifest.telemetry.proof_mode if proof_mode is None else proof_mode,
        replay_of=replay_of["run_id"] if replay_of else None,
        replay_dir=replay_of["run_dir"] if replay_of else None,
        max_parallel=routing.max_parallel,
        routing_policy=replay_of.get("routing_policy") if replay_of else routing_policy,
    )


def routing_settings(spec: RunSpec) -> RoutingSettings:
    """The router's settings as the run recorded them (forecast and stages route alike)."""
    s = spec.models
    return RoutingSettings(
        strategy=s.strategy,
        quality_floor=s.quality_floor,
        latency_slo_ms=s.latency_slo_ms,
        max_usd_per_task=Decimal(s.max_usd_per_task),
        fallbacks=s.fallbacks,
        available=frozenset(s.available_providers),
        offline_reason=s.offline_reason,
        seed=spec.seed,
        policy=s.routing_policy,
    )


class ReplayClients:
    """Serves the original run's answers (and errors) in order, per task, whatever model the
    replay routes to: the same run, so decisions match; prices may differ (counterfactual)."""

    def __init__(self, run_dir: Path) -> None:
        self._replies: dict[str, list[dict[str, Any]]] = {}
        for entry in read_jsonl(run_dir / REPLIES_FILE):
            self._replies.setdefault(entry["prompt_sha256"], []).append(entry)
        self._lock = threading.Lock()

    def get(self, provider: str) -> _ReplayClient:
        return _ReplayClient(self, provider)

    def next(self, prompt: Prompt) -> dict[str, Any]:
        with self._lock:
            queue = self._replies.get(prompt_sha256(prompt))
            if not queue:
                raise ProviderError("bad_request", "replay: the original run sent no such prompt (or no more times)")
            return queue.pop(0)


class _ReplayClient:
    def __init__(self, owner: ReplayClients, provider: str) -> None:
        self.owner = owner
        self.provider = provider

    def complete(self, model: str, prompt: Prompt, timeout: float) -> Reply:
        entry = self.owner.next(prompt)
        if entry["error"]:
            e = entry["error"]
            raise ProviderError(e["kind"], e["message"], e["status"], e["retry_after"])
        return Reply(entry["text"] or "", Usage(**entry["usage"]), model, None)


@dataclass
class ModelSession:
    router: Router
    catalog: Catalog
    prices: PriceRegistry
    settings: ModelSettings
    replay: ReplayClients | None


def open_session(
    spec: RunSpec, journal: Journal, engine: sa.Engine, providers: Mapping[str, str] | None = None
) -> ModelSession:
    """``providers``: the providers' keys and base URLs by their catalog variable names
    (the ``models`` resource); None: the process environment."""
    s = spec.models
    prices = load_prices(Path(s.prices.path))
    if prices.sha256 != s.prices.sha256:
        raise ConfigError(
            f"price registry {s.prices.path} changed during run {spec.run_id} "
            f"(sha256 {prices.sha256[:12]}, recorded {s.prices.sha256[:12]})"
        )
    catalog = load_catalog(Path(s.catalog.path))
    budget = Decimal(s.budget_usd)
    ledger = BudgetLedger(max(Decimal(0), budget - spent(engine, spec.run_id)))
    replay = ReplayClients(Path(s.replay_dir)) if s.replay_dir else None
    settings = routing_settings(spec)
    telemetry = RunTelemetry(journal, engine, prices.version, s.fallbacks)
    clients: Any = replay if replay is not None else Clients(catalog, providers)
    sleep = (lambda _s: None) if replay is not None else None
    router = Router(catalog, prices, settings, clients, ledger, telemetry, **({"sleep": sleep} if sleep else {}))
    return ModelSession(router, catalog, prices, s, replay)
