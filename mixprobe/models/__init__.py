"""Models: the one stack under every analysis: load anything into one ModelHandle (HF / PEFT / TransformerLens
bridge / nnsight); the layout table (layout.py), the site vocabulary (sites.py), positions resolved from the
attention mask (positions.py), batches (batch.py) and hooks (backends/). See each module's docstring."""
from mixprobe.models.batch import Batch, tokenize  # noqa: F401
from mixprobe.models.handle import ModelHandle  # noqa: F401
from mixprobe.models.layout import Layout, unwrap  # noqa: F401
from mixprobe.models.loading import SeriesCheckpoint, SeriesManifest, load, load_series, trainer_series  # noqa: F401
from mixprobe.models.positions import position_ids_from_mask, position_mask, resolve_positions  # noqa: F401
from mixprobe.models.sites import Site, parse_sites, split_heads  # noqa: F401
