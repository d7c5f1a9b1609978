"""``perptrader rl train|eval``: PPO agents on the fused state (``perptrader.rl``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from perptrader.commands.common import (
    console,
    err_console,
    has_perp_bars,
    print_json,
    settings,
    store_session,
)
from perptrader.commands.ml import parse_params, trading_table
from perptrader.ml.pipeline import model_kwargs_for

app = typer.Typer(help="Reinforcement learning: train PPO agents on the fused state and "
                       "evaluate them out of sample beside the baselines.",
                  no_args_is_help=True)


def quick_model_kwargs() -> dict[str, dict[str, Any]]:
    """The --quick settings of the three models an agent's state is built from when no
    --models are named (k=2 for the GBDT ensemble's out-of-fold stack)."""
    return {"gbdt": {**model_kwargs_for("gbdt", quick=True), "k": 2},
            "xlstm-pattern": model_kwargs_for("xlstm-pattern", quick=True),
            "xlstm-indicator": model_kwargs_for("xlstm-indicator", quick=True)}


class _Bars:
    """One Rich bar per trained policy, on stderr (stdout stays clean for --json)."""

    def __init__(self, bar: Progress) -> None:
        self.bar = bar

    def __call__(self, label: str):
        task = self.bar.add_task(label, total=None, info="")

        def report(done: int, total: int, metrics: dict[str, float]) -> None:
            self.bar.update(task, completed=done, total=total,
                            info=f"episode reward {metrics['ep_reward']:.2f}")

        return report


def run_training(store, *, symbol: str, timeframe: str, agent: str, name: str,
                 timesteps: int, start: str | None, end: str | None,
                 models: list[str] | None, reward_preset: str,
                 reward_weights: dict[str, float], settings_overrides: dict[str, Any],
                 overwrite: bool, show_progress: bool, log) -> dict[str, Any]:
    from perptrader.rl.agents import PPOSettings
    from perptrader.rl.reward import RewardConfig
    from perptrader.rl.train import train_agent

    try:
        reward = RewardConfig.from_preset(reward_preset, reward_weights)
        ppo = PPOSettings.from_dict({**PPOSettings().as_dict(), **settings_overrides})
    except (TypeError, ValueError) as exc:
        raise typer.BadParameter(str(exc)) from None
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                  console=err_console, disable=not show_progress, transient=True) as bar:
        return train_agent(store, symbol=symbol, timeframe=timeframe, agent=agent, name=name,
                           timesteps=timesteps, start=start, end=end, models=models,
                           quick_kwargs=quick_model_kwargs(), reward=reward, settings=ppo,
                           overwrite=overwrite, log=log, progress=_Bars(bar))


@app.command("train")
def train(
    symbol: str = typer.Option("BTCUSDT", "--symbol", help="Instrument, e.g. BTCUSDT."),
    timeframe: str = typer.Option("1h", "--timeframe", help="Bar timeframe, e.g. 1h."),
    agent: str = typer.Option("ppo", "--agent", help="ppo (one agent on the fused state) | "
                              "ppo-dual (pattern + indicator agents and a committee)."),
    start: str | None = typer.Option(None, "--start", help="First bar (UTC)."),
    end: str | None = typer.Option(None, "--end", help="End (UTC, exclusive); evaluate on "
                                   "what follows with `rl eval`."),
    timesteps: int = typer.Option(200_000, "--timesteps", min=1, help="PPO environment steps "
                                  "(per agent)."),
    models: str | None = typer.Option(
        None, "--models", help="Registered models for the state, NAME[@VERSION],... (a gbdt "
        "and the two xLSTM experts). Default: quick ones fitted on the first half of the "
        "window and registered as NAME-<kind>."),
    name: str = typer.Option(..., "--name", help="Agent name (folder under data_dir/agents)."),
    reward: str = typer.Option("log_growth", "--reward", help="Reward preset: log_growth "
                               "(default) | weighted (0.7 pnl/0.2 trade sharpe/0.1 drawdown/"
                               "0.1 vsa) | diff_sharpe."),
    reward_weight: list[str] | None = typer.Option(
        None, "--reward-weight", help="term=weight on top of the preset (repeatable); terms: "
        "log_growth, pnl, diff_sharpe, leverage, trade_sharpe, drawdown, vsa, experts."),
    param: list[str] | None = typer.Option(
        None, "--param", help="PPO/env setting key=value (repeatable): n_envs, n_steps, "
        "batch_size, n_epochs, learning_rate, gamma, ent_coef, net_arch, episode_bars, "
        "eval_every, checkpoint_every, seed..."),
    seed: int = typer.Option(0, "--seed", help="Seed of PPO, the environments and torch."),
    seeds: int = typer.Option(1, "--seeds", min=1, help="Policies trained with seeds SEED, "
                              "SEED+1, ...; `rl eval` reports each and their mean and fails "
                              "when any collapsed. The first is the one rl:NAME trades."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an agent of this name."),
    as_json: bool = typer.Option(False, "--json", help="Print the agent's manifest as JSON."),
) -> None:
    """Train a PPO agent (MaskablePPO, invalid actions masked) on the fused state, with
    checkpoints, TensorBoard logs and a validation slice that picks the policy kept."""
    cfg = settings()
    weights = {k: float(v) for k, v in parse_params(reward_weight).items()}
    overrides = {**parse_params(param), "seed": seed, "seeds": seeds}
    out = err_console if as_json else console
    with store_session(cfg) as store:
        manifest = run_training(
            store, symbol=symbol, timeframe=timeframe, agent=agent, name=name,
            timesteps=timesteps, start=start, end=end,
            models=[m.strip() for m in models.split(",") if m.strip()] if models else None,
            reward_preset=reward, reward_weights=weights, settings_overrides=overrides,
            overwrite=overwrite, show_progress=not as_json, log=out.print)
    if as_json:
        print_json(manifest)
        return
    print_verdict(manifest.get("validation", {}).get("verdict"), out,
                  where="validation slice")
    out.print(f"agent [bold]{name}[/bold] saved to {manifest['path']} (TensorBoard: "
              f"tensorboard --logdir {Path(manifest['path']) / 'tensorboard'}); evaluate: "
              f"perptrader rl eval --name {name}")


@app.command("list")
def list_agents(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """The saved agents: kind, symbol, training and validation windows, models."""
    from perptrader.rl.storage import list_agents as saved

    settings()
    agents = saved()
    if as_json:
        print_json(agents)
        return
    if not agents:
        console.print("No agents yet: `perptrader rl train --name NAME ...`")
        return
    t = Table(title="RL agents")
    for col in ("name", "agent", "symbol", "trained on", "validated to", "steps", "models"):
        t.add_column(col)
    for a in agents:
        t.add_row(a["name"], a["agent"], f"{a['symbol']} {a['timeframe']}",
                  f"{a['train'][0][:10]} → {a['train'][1][:10]}", a["valid"][1][:10],
                  f"{a['timesteps']:,}", ", ".join(a["models"].values()))
    console.print(t)


def print_verdict(verdict: str | None, out: Console, *, where: str) -> None:
    """The collapse verdict in one line: green ok, red fail."""
    if verdict is None:
        return
    style = "green" if verdict == "ok" else "bold red"
    out.print(f"verdict ({where}): [{style}]{verdict}[/{style}]")


def print_seeds(payload: dict[str, Any], out: Console) -> None:
    """Each seed's figures and collapse, and their mean (only for several seeds)."""
    rows = payload.get("seeds") or []
    if len(rows) < 2:
        return
    t = Table(title="seeds")
    for col in ("seed", "return", "sharpe", "max DD", "trades", "turnover", "collapse"):
        t.add_column(col)

    def fmt(v: Any, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    for r in [*rows, {"seed": "mean", **payload.get("seed_mean", {})}]:
        t.add_row(str(r["seed"]), fmt(r.get("total_return"), "+.2%"),
                  fmt(r.get("sharpe"), ".2f"), fmt(r.get("max_drawdown"), ".1%"),
                  fmt(r.get("trades"), ".0f"), fmt(r.get("turnover"), ".1f"),
                  r.get("collapse_reason") or ("" if r["seed"] == "mean" else "no"))
    out.print(t)


def print_eval(payload: dict[str, Any], out: Console) -> None:
    rows = [(f"rl:{payload['name']} ({payload['agent']})", payload),
            *payload["baselines"].items()]
    out.print(trading_table(rows, f"{payload['symbol']} {payload['timeframe']} · "
                                  f"{payload['start'][:10]} → {payload['end'][:10]} · "
                                  f"{payload['bars']:,} bars · out of sample"))
    dist = ", ".join(f"{k} {v:.1%}" for k, v in payload["action_distribution"].items() if v)
    out.print(f"actions: {dist}")
    pos = payload["position_shares"]
    out.print(f"time long {pos['long']:.0%}, short {pos['short']:.0%}, flat {pos['flat']:.0%}")
    if payload["collapsed"]:
        out.print(f"[bold red]COLLAPSED: {payload['collapse_reason']}[/bold red]")
    print_seeds(payload, out)
    print_verdict(payload.get("verdict"), out, where="out of sample")
    for w in payload["warnings"]:
        out.print(f"[yellow]warning:[/yellow] {w}")
    if payload.get("report"):
        out.print(f"report: {payload['report']}")


@app.command("evaluate", hidden=True)
@app.command("eval")
def evaluate(
    name: str = typer.Option(..., "--name", help="Agent name."),
    start: str | None = typer.Option(None, "--start", help="First bar (UTC). Default: right "
                                     "after the agent's training and validation data."),
    end: str | None = typer.Option(None, "--end", help="End (UTC, exclusive). Default: the "
                                   "end of the data."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary."),
) -> None:
    """Run the agent out of sample through the backtester beside buy-and-hold, the
    model-threshold strategy, always-flat and random; report collapse."""
    from perptrader.rl.evaluate import evaluate_agent

    cfg = settings()
    with store_session(cfg, read_only=True) as store:
        payload = evaluate_agent(store, name, start, end, save=True)
    if as_json:
        print_json(payload)
        return
    print_eval(payload, console)


# ------------------------------------------------------------------ demo stage

DEMO_WINDOW = ("2023-03-01", "2025-01-01")
DEMO_TIMESTEPS = {"ppo": 200_000, "ppo-dual": 150_000}


def rl_demo_stage(store, out: Console) -> None:
    """``perptrader demo``'s RL stage on BTCUSDT 1h: quick models on 2023-03..2023-12, a
    PPO agent on the fused state and the dual agent trained on 2024 (validation on its
    last 15%), both evaluated out of sample on 2025 beside the baselines."""
    symbol, timeframe = "BTCUSDT", "1h"
    if not has_perp_bars(store, symbol, timeframe):
        out.print(f"[yellow]No {symbol} {timeframe} perpetual bars stored: RL stage "
                  "skipped.[/yellow]")
        return
    t0 = time.perf_counter()
    start, end = DEMO_WINDOW
    runs = [("demo-rl-ppo", "ppo", None),
            ("demo-rl-dual", "ppo-dual", [f"demo-rl-ppo-{k}" for k in
                                          ("gbdt", "xlstm-pattern", "xlstm-indicator")])]
    for name, agent, models in runs:
        t1 = time.perf_counter()
        out.print(f"RL: training {name} ({agent}, {DEMO_TIMESTEPS[agent]:,} steps per policy)")
        run_training(store, symbol=symbol, timeframe=timeframe, agent=agent, name=name,
                     timesteps=DEMO_TIMESTEPS[agent], start=start, end=end, models=models,
                     reward_preset="log_growth", reward_weights={},
                     settings_overrides={"eval_every": 10_000}, overwrite=True,
                     show_progress=True, log=out.print)
        from perptrader.rl.evaluate import evaluate_agent

        payload = evaluate_agent(store, name, end, None, save=True)
        print_eval(payload, out)
        out.print(f"  {name}: {time.perf_counter() - t1:.0f} s")
    out.print(f"RL stage done in {time.perf_counter() - t0:.0f} s (`perptrader rl eval --name "
              f"demo-rl-ppo --json`; `perptrader backtest run --strategy rl:demo-rl-ppo ...`)")
