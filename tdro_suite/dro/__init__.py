"""tDRO (`tdro-suite optimize`): learn task (group) weights with a proxy model against a frozen reference.

`batches` draws mixed batches, `measures` turns per-example losses into one number per task,
`group_weights` turns those numbers into weights (exponentiated gradient ascent), `step` is one
optimizer step, `optimize` runs it on the shared training core (`tdro_suite.runtime`) and `outputs`
writes the weights files, selections and trajectory.
"""
