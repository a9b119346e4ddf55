"""tDRO: learn task (group) weights with a proxy model against a frozen reference.

`measures` turns per-example losses into one number per task, `group_weights` turns those
numbers into weights (exponentiated gradient ascent), `optimize` runs the whole loop.
"""
