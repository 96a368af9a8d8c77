"""Reflection synthesis (reflections/dataset.py, stage 2): the five steps over a version's documents (one interface in
steps.py, in the forms of grounded.py and llm_json.py, chosen by name), their text rules, the dataset's expectations,
and the held-out probes written by the same forms (probes.py, stage 2b), never trained on."""
