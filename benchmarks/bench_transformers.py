"""Local generation speed of the transformers backend, CPU and (when present) GPU.

Builds a random Llama of a given size with the test helper's tokenizer (no download),
then streams replies through :class:`~botkit.backends.transformers_backend.TransformersBackend`
on each device: time to first token and tokens per second, median over ``--runs``.
Random weights say nothing about answer quality; this measures the backend's plumbing
(loading, chat template, streamer thread, deadline check per token) and the device.

    python benchmarks/bench_transformers.py --hidden 1024 --layers 12 --tokens 128
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from _util import machine  # importing _util also puts the repo on sys.path

from botkit.backends.base import ChatMessage, Done, Prompt, TextDelta
from botkit.backends.transformers_backend import TransformersBackend
from botkit.config import BotConfig


def build_model(folder: Path, hidden: int, layers: int) -> Path:
    """The tiny test tokenizer with a Llama of ``hidden`` width and ``layers`` layers."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from tests.helpers.tiny_model import build_tiny_model

    build_tiny_model(folder, context=2048)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 4,
                         num_hidden_layers=layers, num_attention_heads=max(1, hidden // 64),
                         num_key_value_heads=max(1, hidden // 64), max_position_embeddings=2048,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id)
    model = LlamaForCausalLM(config)
    model.generation_config.suppress_tokens = tokenizer.all_special_ids
    model.save_pretrained(folder)
    return folder


async def measure(folder: Path, device: str, tokens: int, runs: int) -> dict[str, Any]:
    config = BotConfig.model_validate({"transformers": {"device": device, "max_new_tokens": tokens}})
    backend = TransformersBackend(model=str(folder), config=config)
    started = time.monotonic()
    await backend.load()
    load_s = time.monotonic() - started
    prompt = Prompt([ChatMessage("system", "You are the support assistant."),
                     ChatMessage("user", "How do I reset my password?")], "How do I reset my password?", [])
    firsts, rates = [], []
    for index in range(runs + 1):  # the first run warms up kernels and caches
        started = time.monotonic()
        first = None
        async for event in backend.stream(prompt, timeout=600):
            if first is None and isinstance(event, TextDelta):
                first = time.monotonic() - started
            if isinstance(event, Done):
                generated = event.completion.usage.completion_tokens
        elapsed = time.monotonic() - started
        if index:
            firsts.append(first or elapsed)
            rates.append(generated / elapsed)
    loaded = backend._loaded
    assert loaded is not None
    params = sum(p.numel() for p in loaded.model.parameters())
    return {"device": device, "params_m": round(params / 1e6, 1), "load_s": round(load_s, 2),
            "first_token_ms": round(statistics.median(firsts) * 1000, 1),
            "tokens_per_s": round(statistics.median(rates), 1), "tokens": tokens, "runs": runs,
            "raw_generate_tokens_per_s": raw_generate(loaded, tokens, runs)}


def raw_generate(loaded: Any, tokens: int, runs: int) -> dict[str, float]:
    """The peer: ``model.generate`` called directly, plain and with each of the backend's
    additions (a streamer, a per-token stopping criterion), tokens per second."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

    class Never(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            return torch.full((input_ids.shape[0],), False, dtype=torch.bool, device=input_ids.device)

    class Sink(TextIteratorStreamer):
        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            pass

    ids = loaded.tokenizer("How do I reset my password?", return_tensors="pt").input_ids.to(loaded.device)
    variants = {"plain": (False, False), "streamer": (True, False), "stopping": (False, True)}
    results = {}
    for name, (streamer, stopping) in variants.items():
        rates = []
        for index in range(runs + 1):
            kwargs: dict[str, Any] = {}
            if streamer:
                kwargs["streamer"] = Sink(loaded.tokenizer, skip_prompt=True)
            if stopping:
                kwargs["stopping_criteria"] = StoppingCriteriaList([Never()])
            started = time.monotonic()
            with torch.inference_mode():
                out = loaded.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=tokens,
                                            do_sample=False, pad_token_id=loaded.tokenizer.pad_token_id, **kwargs)
            if loaded.device.startswith("cuda"):
                torch.cuda.synchronize()
            if index:
                rates.append((out.shape[1] - ids.shape[1]) / (time.monotonic() - started))
        results[name] = round(statistics.median(rates), 1)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=64, help="new tokens per reply")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--devices", default="auto", help="comma-separated, or auto: cpu plus cuda when present")
    args = parser.parse_args()
    import torch

    devices = args.devices.split(",") if args.devices != "auto" else \
        ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_model(Path(tmp) / "model", args.hidden, args.layers)
        results = [asyncio.run(measure(folder, device, args.tokens, args.runs)) for device in devices]
    print(json.dumps({"machine": machine(), "results": results}, indent=2))
    for r in results:
        print(f"{r['device']:>5}: {r['params_m']} M params, load {r['load_s']} s, first token "
              f"{r['first_token_ms']} ms, {r['tokens_per_s']} tokens/s over {r['tokens']} tokens; "
              f"model.generate directly: {r['raw_generate_tokens_per_s']}")


if __name__ == "__main__":
    main()
