"""Evaluation: the LVS / EZ-VSL protocol (`protocol`), object-guided fusions (`fusion`),
synthetic-world diagnostics (`diagnostics`), the loop (`evaluator`), result files
(`reports`); protocols are chosen by name from `config.evals` (`registry`)."""
