"""Reflection synthesis: the five steps over a version's documents (one interface in steps.py, in the forms of
grounded.py and llm_json.py, chosen by name), their text rules, and the dataset's expectations."""
