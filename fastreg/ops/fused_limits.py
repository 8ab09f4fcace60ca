"""What the fused Triton disc step serves (DESIGN.md §3.1): the one owner of its limits, read
by the dispatch (``disc_step.fused_serves``) and by the launcher (``disc_step_triton``)."""

MAX_FUSED_INPUT = 1024   # D's input width (sm_90 shared memory for [rows, D] tiles; AOT-checked)
MAX_FUSED_HIDDEN = 3     # hidden layers
