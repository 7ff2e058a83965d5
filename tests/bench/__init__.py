"""queuectl's benchmark suite (issue #5): `python -m tests.bench [--quick] [--only NAME]`.

Not collected by pytest (see conftest.py). Every figure is a median over several runs, checked
against a baseline measured in the same run, so that a busy machine slows both sides alike.
"""
