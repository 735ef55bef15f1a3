"""Tests of the model layer, and ``llm.fakes``: local servers that speak the providers' wire formats."""
