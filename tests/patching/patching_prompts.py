"""Prompt batches shared by the patching tests (a plain module: ``conftest`` is not importable by name when
several test folders have one)."""
TAG_B = [f"<B> {a} + {b} =" for a, b in [(1, 2), (3, 4), (5, 6), (0, 0)]]
TAG_A = [p.replace("<B>", "<A>") for p in TAG_B]
# ragged: different prompt lengths, so left padding matters
RAGGED_B = ["<B> 1 + 2 =", "<B> 3 =", "<B> 4 + 4 + 1 =", "<B> 2"]
RAGGED_A = [p.replace("<B>", "<A>") for p in RAGGED_B]
