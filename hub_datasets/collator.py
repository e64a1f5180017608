"""``hub_datasets.ComPDataCollator``: the collator lives beside the processor it drives
(:mod:`modeling_comp.data_collator`); this name stays importable for existing code."""

from modeling_comp.data_collator import ComPDataCollator


__all__ = ["ComPDataCollator"]
