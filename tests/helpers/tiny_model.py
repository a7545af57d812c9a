"""Build a tiny causal language model at test time (no download, a second or two on CPU).

:func:`build_tiny_model` trains a small byte-level BPE tokenizer on a few paragraphs,
wraps it as a ``PreTrainedTokenizerFast`` with a simple chat template, creates a
2-layer Llama model with random weights and saves both with ``save_pretrained``. The
folder loads like any Hugging Face model (``transformers:/that/folder``). The model
writes gibberish: tests assert on types, lengths and token counts, not on meaning.
"""

from __future__ import annotations

from pathlib import Path

CORPUS = [
    "To reset your password, open the sign-in page and click Forgot password.",
    "We email a link that expires after 24 hours. Check your spam folder if it does not arrive.",
    "Orders placed before 2pm ship the same day. Standard shipping takes three to five business days.",
    "Refunds reach your card within five to ten business days after we receive the return.",
    "You can change your plan at any time from the billing page of your account settings.",
    "Our support team is available around the clock by chat and by email.",
    "system: user: assistant: Hello! How can I help you today? Thanks, goodbye.",
]

CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def build_tiny_model(folder: str | Path, *, context: int = 256, chat_template: bool = True, seed: int = 0) -> Path:
    """Save a tiny tokenizer and random Llama model into ``folder`` and return it.

    ``context`` becomes ``max_position_embeddings`` and the tokenizer's
    ``model_max_length``; ``chat_template=False`` leaves the template out (to test the
    plain-transcript fallback).
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    specials = ["<|pad|>", "<|bos|>", "<|eos|>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(CORPUS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<|pad|>", bos_token="<|bos|>", eos_token="<|eos|>",
        model_max_length=context,
    )
    if chat_template:
        fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(folder)

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(fast), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=context,
        pad_token_id=fast.pad_token_id, bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    # Random weights would mostly pick special tokens (which decode to nothing) and stop
    # at EOS: suppress them so every step yields visible text.
    model.generation_config.suppress_tokens = fast.convert_tokens_to_ids(specials)
    model.save_pretrained(folder)
    return folder


__all__ = ["CHAT_TEMPLATE", "CORPUS", "build_tiny_model"]
