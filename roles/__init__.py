"""Roles: what LMMem and LLMRec do, with their offline (deterministic) implementations."""
