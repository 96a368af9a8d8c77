"""The memory update (memory/update.py, stages 3 and 4): the update strategy and its replay and stop rows
(strategies.py), LoRA or full training in a child process (training.py) with checkpoints mirrored to the bucket
(checkpoints.py), and the candidate built by folding or a mergekit merge (merging.py)."""
