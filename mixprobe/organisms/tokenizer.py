"""An offline word-level tokenizer for model organisms.

Problem: organisms must train and load with no network, so no tokenizer can come from a hub.
Mechanism: a ``tokenizers`` WordLevel model over the organism's closed vocabulary, split on whitespace, with
``[PAD] [BOS] [EOS] [UNK]`` specials; a template post-processor prepends ``[BOS]``. It is wrapped as a
``transformers.PreTrainedTokenizerFast`` so ``save_pretrained``/``from_pretrained`` and trl work unchanged.
Padding is on the left (generation and last-token reads need it).

Example:
    >>> tok = build_word_tokenizer(["<A>", "1", "+", "="])
    >>> tok("<A> 1 + 1 =")["input_ids"][0] == tok.bos_token_id
    True
    >>> tok.decode(tok("<A> 1")["input_ids"], skip_special_tokens=True)
    '<A> 1'

Constraints: every word the organism emits must be in the vocabulary; unknown words map to ``[UNK]``.
"""
from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from mixprobe._check import checked

SPECIAL_TOKENS = ("[PAD]", "[BOS]", "[EOS]", "[UNK]")


@checked
def build_word_tokenizer(words: Iterable[str]) -> PreTrainedTokenizerFast:
    """Build a whitespace word-level fast tokenizer over ``words`` (order kept, duplicates dropped)."""
    vocab: dict[str, int] = {}
    for w in (*SPECIAL_TOKENS, *words):
        if w not in vocab:
            vocab[w] = len(vocab)
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.post_processor = processors.TemplateProcessing(
        single="[BOS] $A", pair="[BOS] $A $B", special_tokens=[("[BOS]", vocab["[BOS]"])]
    )
    core.add_special_tokens(list(SPECIAL_TOKENS))
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="[BOS]",
        eos_token="[EOS]",
        pad_token="[PAD]",
        unk_token="[UNK]",
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )
    return tok
