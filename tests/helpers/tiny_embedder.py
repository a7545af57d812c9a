"""Build a tiny sentence-transformers model at test time (no download, about a second).

:func:`build_tiny_embedder` trains a small WordPiece tokenizer on a few sentences, wraps it
as a ``BertTokenizerFast``, creates a 2-layer BERT encoder with random weights and saves
encoder + mean pooling + normalise as a sentence-transformers folder. The folder loads like
any local embedding model (``knowledge.embedding_model: /that/folder``). Its vectors mean
nothing: tests compare runtimes and devices with each other, not with meaning.
"""

from __future__ import annotations

from pathlib import Path

from tests.helpers.tiny_model import CORPUS


def build_tiny_embedder(folder: str | Path, *, max_length: int = 64, seed: int = 0) -> Path:
    """Save a tiny BERT sentence-transformers model into ``folder`` and return it."""
    import torch
    from sentence_transformers import SentenceTransformer, models
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors, trainers
    from tokenizers.models import WordPiece
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = Path(folder)
    encoder_folder = folder.parent / f"{folder.name}-encoder"
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer = Tokenizer(WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.train_from_iterator(CORPUS * 4, trainer=trainers.WordPieceTrainer(
        vocab_size=300, special_tokens=specials, show_progress=False))
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tokenizer.token_to_id("[CLS]")), ("[SEP]", tokenizer.token_to_id("[SEP]"))],
    )
    fast = BertTokenizerFast(tokenizer_object=tokenizer, model_max_length=max_length)
    fast.save_pretrained(encoder_folder)

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=4, max_position_embeddings=max(128, max_length),
                        pad_token_id=fast.pad_token_id)
    BertModel(config).save_pretrained(encoder_folder)

    transformer = models.Transformer(str(encoder_folder), max_seq_length=max_length)
    model = SentenceTransformer(modules=[transformer, models.Pooling(32, pooling_mode="mean"), models.Normalize()],
                                device="cpu")
    model.save(str(folder))
    return folder


__all__ = ["build_tiny_embedder"]
