"""Coverage-guided fuzzing of the imaging engine with atheris (libFuzzer for Python)."""
