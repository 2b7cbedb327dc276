"""Models: load anything into one ModelHandle (HF / PEFT / TransformerLens bridge / nnsight), the site vocabulary,
and token positions resolved from the attention mask. See the docstrings of handle.py, sites.py, positions.py and
loading.py."""
from mixprobe.models.batch import Batch, tokenize  # noqa: F401
from mixprobe.models.handle import ModelHandle  # noqa: F401
from mixprobe.models.layout import Layout, unwrap  # noqa: F401
from mixprobe.models.loading import SeriesCheckpoint, SeriesManifest, load, load_series, trainer_series  # noqa: F401
from mixprobe.models.positions import position_ids_from_mask, resolve_positions  # noqa: F401
from mixprobe.models.sites import Site, parse_sites  # noqa: F401
