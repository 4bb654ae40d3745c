"""misalignment-farm: measure how often LLM agents spontaneously act against their deployer."""
