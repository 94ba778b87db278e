"""octopipe: run multi-step LLM pipelines over many units, in batch or realtime, with a durable ledger."""

__version__ = "0.1.0"
