"""Benchmark loaders (BEIR, MIRACL, MKQA, local folders), metrics, the evaluation harness and the MTEB adapter."""
